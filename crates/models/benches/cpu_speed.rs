//! CPU throughput: images/s, achieved GFLOP/s, fraction of the measured GEMM peak and peak
//! resident memory for inference, training and distillation steps.
//!
//! `cargo bench -p funmatch-models --bench cpu_speed [-- CASE...]`; with no case it runs every
//! case, each in its own process so that each peak-memory figure (VmHWM) is its own.
//! Threads follow `RAYON_NUM_THREADS` (rayon's default: one per core). Steps per case:
//! `FUNMATCH_BENCH_STEPS` (default 3, after one untimed warm-up step).
//!
//! Training and distillation steps use the student's hand-written backward pass
//! (`forward_train` + `backward`, with autograd on the loss only), as the trainer does on the
//! CPU; `FUNMATCH_BENCH_AUTOGRAD=1` measures candle's autograd through the whole model
//! instead (those lines are labelled `/autograd`). Like the `funmatch` binary, the bench
//! first tunes glibc's allocator to reuse activation buffers
//! ([`funmatch_kernels::tune_allocator`]); `FUNMATCH_BENCH_MALLOC=default` leaves it alone.
//!
//! The optimizer here is a plain Adam written with candle ops (the trainer's own optimizer
//! lives in funmatch-distill, which this crate cannot depend on); the distillation loss is
//! the temperature-1 KL divergence between teacher and student softmaxes.

use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::{Device, Result, Tensor, Var, D};
use funmatch_models::{find_arch, init_params, trainable, BitConfig, Mode, ResNetV2, StemKind};

const CASES: [&str; 7] = [
    "gemm",
    "infer-50x1",
    "infer-152x2",
    "train-50x1",
    "distill-50x1",
    "train-fmnist-student",
    "distill-fmnist",
];

fn main() -> Result<()> {
    let cases: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if cases.is_empty() {
        // One process per case, so each VmHWM is that case's own peak.
        let exe = std::env::current_exe()?;
        for case in CASES {
            let status = std::process::Command::new(&exe).arg(case).status()?;
            if !status.success() {
                candle_core::bail!("bench case {case} failed: {status}")
            }
        }
        return Ok(());
    }
    if std::env::var("FUNMATCH_BENCH_MALLOC").as_deref() != Ok("default") {
        funmatch_kernels::tune_allocator();
    }
    let steps: usize =
        std::env::var("FUNMATCH_BENCH_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    for case in &cases {
        run_case(case, steps)?;
    }
    Ok(())
}

fn run_case(case: &str, steps: usize) -> Result<()> {
    let peak = gemm_peak()?;
    match case {
        "gemm" => {
            println!("{case:<22} sgemm 2048³ {peak:7.1} GFLOP/s (the peak below is this figure)");
            Ok(())
        }
        "infer-50x1" => bench_inference(case, &zoo("resnetv2_50x1_bit")?, 16, 224, steps, peak),
        "infer-152x2" => {
            bench_inference(case, &zoo("resnetv2_152x2_bit")?, 16, 224, steps.min(2), peak)
        }
        "train-50x1" => bench_train(case, None, &zoo("resnetv2_50x1_bit")?, 16, 224, steps, peak),
        "distill-50x1" => {
            let cfg = zoo("resnetv2_50x1_bit")?;
            bench_train(case, Some(&cfg), &cfg, 16, 224, steps, peak)
        }
        "train-fmnist-student" => bench_train(case, None, &fmnist_student(), 128, 28, steps, peak),
        "distill-fmnist" => {
            bench_train(case, Some(&fmnist_teacher()), &fmnist_student(), 128, 28, steps, peak)
        }
        other => candle_core::bail!("unknown bench case {other}; known: {CASES:?}"),
    }
}

fn zoo(arch: &str) -> Result<BitConfig> {
    let arch = find_arch(arch).ok_or_else(|| candle_core::Error::Msg(format!("no arch {arch}")))?;
    Ok(arch.config(1000))
}

/// The quickstart's student (`models/recipes/fashion-mnist-distill.toml`): one bottleneck per
/// stage, 16/48/96 channels, stem 8, 4 groups, 28×28 (grey images as 3 channels).
fn fmnist_student() -> BitConfig {
    let mut cfg = BitConfig::bit(&[1, 1, 1], 1, 10);
    cfg.channels = vec![16, 48, 96];
    cfg.stem_width = 8;
    cfg.stem = StemKind::Small;
    cfg.groups = 4;
    cfg
}

/// The quickstart's teacher (`models/recipes/fashion-mnist-teacher.toml`, shipped in
/// `models/fashion-mnist-teacher`): two bottlenecks per stage, 64/128/256, stem 32, 16 groups.
fn fmnist_teacher() -> BitConfig {
    let mut cfg = BitConfig::bit(&[2, 2, 2], 1, 10);
    cfg.channels = vec![64, 128, 256];
    cfg.stem_width = 32;
    cfg.stem = StemKind::Small;
    cfg.groups = 16;
    cfg
}

/// Multiply-accumulates of the convolutions and classifier for one image of `size`².
fn forward_macs(cfg: &BitConfig, size: usize) -> f64 {
    cfg.forward_macs(size) as f64
}

/// Peak resident memory of this process so far, in MiB (Linux `VmHWM`; 0 elsewhere).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// GFLOP/s of one 2048×2048×2048 f32 matrix product (best of three), through candle's matmul,
/// which calls the same `gemm` crate as our kernels.
fn gemm_peak() -> Result<f64> {
    let n = 2048;
    let a = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?;
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        a.matmul(&b)?.sum_all()?.to_scalar::<f32>()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(2.0 * (n * n * n) as f64 / best / 1e9)
}

fn report(case: &str, images: usize, secs: f64, flops_per_image: f64, peak: f64) {
    let gflops = images as f64 * flops_per_image / secs / 1e9;
    println!(
        "{case:<22} {:8.2} img/s  {:7.3} s/step  {:7.1} GFLOP/s  {:5.1} % of GEMM peak  peak RSS {:7.0} MiB  (load {})",
        images as f64 / secs,
        secs,
        gflops,
        100.0 * gflops / peak,
        peak_rss_mib(),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split(' ').next().unwrap_or("?"),
    );
}

fn batch(cfg: &BitConfig, n: usize, size: usize) -> Result<Tensor> {
    Tensor::randn(0f32, 1.0, (n, cfg.in_chans, size, size), &Device::Cpu)
}

/// Median of the step times after one warm-up step.
fn time_steps(steps: usize, mut step: impl FnMut() -> Result<()>) -> Result<f64> {
    step()?;
    let mut times = Vec::new();
    for _ in 0..steps.max(1) {
        let t = Instant::now();
        step()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn bench_inference(
    case: &str,
    cfg: &BitConfig,
    n: usize,
    size: usize,
    steps: usize,
    peak: f64,
) -> Result<()> {
    let model = ResNetV2::new(cfg, &init_params(cfg, 0, &Device::Cpu)?, Mode::Frozen)?;
    let x = batch(cfg, n, size)?;
    let secs = time_steps(steps, || {
        model.forward(&x)?.sum_all()?.to_scalar::<f32>()?;
        Ok(())
    })?;
    report(case, n, secs, 2.0 * forward_macs(cfg, size), peak);
    Ok(())
}

/// Plain Adam (β 0.9/0.999, ε 1e-8) over candle ops.
struct Adam {
    names: Vec<String>,
    vars: Vec<Var>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    t: i32,
}

impl Adam {
    fn new(vars: &BTreeMap<String, Var>) -> Result<Self> {
        let names: Vec<String> = vars.keys().cloned().collect();
        let vars: Vec<Var> = vars.values().cloned().collect();
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        Ok(Self {
            m: vars.iter().map(zeros).collect::<Result<_>>()?,
            v: vars.iter().map(zeros).collect::<Result<_>>()?,
            names,
            vars,
            t: 0,
        })
    }

    /// One update; `grad(name, var)` gives each parameter's gradient, if any.
    fn step<'g>(&mut self, grad: impl Fn(&str, &Var) -> Option<&'g Tensor>, lr: f64) -> Result<()> {
        let (b1, b2, eps): (f64, f64, f64) = (0.9, 0.999, 1e-8);
        self.t += 1;
        let (c1, c2) = (1.0 - b1.powi(self.t), 1.0 - b2.powi(self.t));
        for (i, var) in self.vars.iter().enumerate() {
            let Some(g) = grad(&self.names[i], var) else { continue };
            self.m[i] = ((&self.m[i] * b1)? + (g * (1.0 - b1))?)?;
            self.v[i] = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let denom = ((&self.v[i] / c2)?.sqrt()? + eps)?;
            let update = ((&self.m[i] / c1)? / denom)?;
            var.set(&(var.as_tensor() - (update * lr)?)?)?;
        }
        Ok(())
    }
}

/// KL(softmax(t) ‖ softmax(s)) averaged over the batch, temperature 1.
fn kl_loss(teacher: &Tensor, student: &Tensor) -> Result<Tensor> {
    let log_softmax = |x: &Tensor| -> Result<Tensor> {
        let x = x.broadcast_sub(&x.max_keepdim(D::Minus1)?)?;
        x.broadcast_sub(&x.exp()?.sum_keepdim(D::Minus1)?.log()?)
    };
    let (lt, ls) = (log_softmax(teacher)?, log_softmax(student)?);
    (lt.exp()? * (lt - ls)?)?.sum(D::Minus1)?.mean_all()
}

/// One step: optional frozen teacher forward, student forward + backward, Adam update. With
/// no teacher the loss is the mean square of the logits (a stand-in supervised loss).
fn bench_train(
    case: &str,
    teacher: Option<&BitConfig>,
    student: &BitConfig,
    n: usize,
    size: usize,
    steps: usize,
    peak: f64,
) -> Result<()> {
    let teacher = match teacher {
        Some(cfg) => Some((
            ResNetV2::new(cfg, &init_params(cfg, 1, &Device::Cpu)?, Mode::Frozen)?,
            forward_macs(cfg, size),
        )),
        None => None,
    };
    let (model, vars) = trainable(student, &init_params(student, 0, &Device::Cpu)?)?;
    let mut adam = Adam::new(&vars)?;
    let x = batch(student, n, size)?;
    let autograd = std::env::var("FUNMATCH_BENCH_AUTOGRAD").is_ok_and(|v| v == "1");
    let loss_of = |logits: &Tensor| match &teacher {
        Some((t, _)) => kl_loss(&t.forward(&x)?, logits),
        None => logits.sqr()?.mean_all(),
    };
    let secs = time_steps(steps, || {
        if autograd {
            let grads = loss_of(&model.forward(&x)?)?.backward()?;
            return adam.step(|_, var| grads.get(var), 1e-4);
        }
        let (logits, tape) = model.forward_train(&x)?;
        let leaf = Var::from_tensor(&logits)?;
        let grads = loss_of(leaf.as_tensor())?.backward()?;
        let grad_logits = grads.get(&leaf).expect("the loss depends on the logits");
        let named = model.backward(tape, grad_logits)?;
        adam.step(|name, _| named.get(name), 1e-4)
    })?;
    // Training costs about three forwards (forward, input gradient, weight gradient).
    let flops = 6.0 * forward_macs(student, size) + teacher.map_or(0.0, |(_, m)| 2.0 * m);
    let label = if autograd { format!("{case}/autograd") } else { case.to_string() };
    report(&label, n, secs, flops, peak);
    Ok(())
}
