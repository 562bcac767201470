//! Times the phases of one distillation training step (data, forward, backward, update) for
//! a small Fashion-MNIST student, to find where the time goes.
//!
//!   cargo run --release -p funmatch-distill --example step_bench -- [batch] [steps] [device]

use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::Tensor;
use funmatch_distill::config::OptimConfig;
use funmatch_distill::loss::distill_loss;
use funmatch_distill::optim::{Adam, Schedule};
use funmatch_models::{init_params, param_specs, trainable, BitConfig, StemKind};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let batch: usize = args.get(1).map_or(Ok(128), |s| s.parse())?;
    let steps: usize = args.get(2).map_or(Ok(10), |s| s.parse())?;
    let device = funmatch_distill::parse_device(args.get(3).map_or("cpu", |s| s.as_str()))?;

    let mut cfg = BitConfig::bit(&[1, 1, 1], 1, 10);
    cfg.channels = vec![64, 128, 256];
    cfg.stem_width = 32;
    cfg.stem = StemKind::Small;
    cfg.groups = 16;
    let params = init_params(&cfg, 0, &device)?;
    let (model, vars) = trainable(&cfg, &params)?;
    let kinds: BTreeMap<_, _> = param_specs(&cfg).into_iter().map(|s| (s.name, s.kind)).collect();
    let mut adam =
        Adam::new(&vars, &kinds, &OptimConfig::default(), Schedule { warmup: 0, total: 100 })?;

    let x = Tensor::randn(0f32, 1.0, (batch, 3, 28, 28), &device)?;
    let t = Tensor::randn(0f32, 1.0, (batch, 10), &device)?;
    let (mut fwd, mut bwd, mut upd) = (0.0, 0.0, 0.0);
    for i in 0..steps + 1 {
        let a = Instant::now();
        let loss = distill_loss(&model.forward(&x)?, &t, 1.0)?;
        let _ = loss.to_scalar::<f32>()?;
        let b = Instant::now();
        let grads = loss.backward()?;
        let b2 = Instant::now();
        let stats = adam.step(&grads)?;
        let _ = stats.grad_norm.to_scalar::<f32>()?;
        let c = Instant::now();
        if i > 0 {
            fwd += (b - a).as_secs_f64();
            bwd += (b2 - b).as_secs_f64();
            upd += (c - b2).as_secs_f64();
        }
    }
    let n = steps as f64;
    println!(
        "batch {batch}: forward {:.1} ms, backward {:.1} ms, update {:.1} ms; {:.2} steps/s, {:.0} img/s",
        1e3 * fwd / n,
        1e3 * bwd / n,
        1e3 * upd / n,
        n / (fwd + bwd + upd),
        n * batch as f64 / (fwd + bwd + upd)
    );
    Ok(())
}
