//! Quick timing of forward and forward+backward (for profiling while developing).
//! `cargo run --release -p funmatch-models --example step -- ARCH BATCH SIZE`
use candle_core::{Device, Tensor};
use funmatch_models::*;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arch = args.get(1).map(String::as_str).unwrap_or("resnetv2_50x1_bit");
    let batch: usize = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(16);
    let size: usize = args.get(3).map(|s| s.parse().unwrap()).unwrap_or(224);
    let cfg = if arch == "small" {
        let mut c = BitConfig::bit(&[1, 1, 1], 1, 10);
        c.channels = vec![128, 256, 512];
        c.stem_width = 32;
        c.stem = StemKind::Small;
        c
    } else {
        find_arch(arch).unwrap().config(1000)
    };
    let params = init_params(&cfg, 0, &Device::Cpu)?;
    let x = Tensor::randn(0f32, 1., (batch, 3, size, size), &Device::Cpu)?;
    let frozen = ResNetV2::new(&cfg, &params, Mode::Frozen)?;
    for i in 0..3 {
        let t = Instant::now();
        let y = frozen.forward(&x)?;
        y.sum_all()?.to_scalar::<f32>()?;
        let dt = t.elapsed().as_secs_f64();
        println!("forward {i}: {:.3}s  {:.1} img/s", dt, batch as f64 / dt);
    }
    let (model, vars) = trainable(&cfg, &params)?;
    for i in 0..3 {
        let t = Instant::now();
        let y = model.forward(&x)?;
        let t1 = t.elapsed().as_secs_f64();
        let grads = y.sqr()?.mean_all()?.backward()?;
        let n = vars.values().filter(|v| grads.get(v).is_some()).count();
        let dt = t.elapsed().as_secs_f64();
        println!(
            "train {i}: fwd {t1:.3}s total {dt:.3}s  {:.1} img/s ({n} grads)",
            batch as f64 / dt
        );
    }
    Ok(())
}
