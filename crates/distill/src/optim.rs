//! Our own Adam: configurable β1/β2/ε, global-norm clipping, decoupled weight decay on
//! kernels only, a warmup + cosine schedule, and a state that can be saved and restored.
//!
//! candle's `AdamW` decays every parameter, multiplies the decay by the learning rate, and
//! cannot hand out its moments, so a run could never resume exactly. Here one update is:
//!
//! ```text
//! g  ← g · min(1, clip / ‖g‖)              (global norm over every parameter)
//! m  ← β1 m + (1 − β1) g,  v ← β2 v + (1 − β2) g²
//! p  ← p − lr·s(t) · m̂ / (√v̂ + ε) − wd·s(t) · p      (the last term for kernels only)
//! ```
//!
//! with `s(t)` the schedule value in [0, 1] and `m̂, v̂` the bias-corrected moments.

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use funmatch_models::ParamKind;

use crate::config::OptimConfig;

/// Linear warmup from 0 to 1, then a cosine down to 0 at `total` steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Warmup steps.
    pub warmup: usize,
    /// Total steps of the run.
    pub total: usize,
}

impl Schedule {
    /// The multiplier of update `step` (0-based): `step / warmup` during warmup, then
    /// `½ (1 + cos π·progress)` with progress from 0 at the end of warmup to 1 at `total`.
    pub fn value(&self, step: usize) -> f64 {
        if step < self.warmup {
            return step as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1);
        let progress = ((step - self.warmup) as f64 / span as f64).min(1.0);
        0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// One trainable parameter with its Adam moments.
struct Slot {
    name: String,
    var: Var,
    decay: bool,
    m: Tensor,
    v: Tensor,
}

/// What one update did.
#[derive(Debug, Clone)]
pub struct StepStats {
    /// Global L2 norm of the gradients before clipping (a scalar tensor, read when logged).
    pub grad_norm: Tensor,
    /// Learning rate of this update (peak × schedule).
    pub lr: f64,
}

/// Adam with decoupled, schedule-scaled weight decay on kernels.
pub struct Adam {
    slots: Vec<Slot>,
    config: OptimConfig,
    schedule: Schedule,
    /// Updates done so far.
    steps: usize,
}

impl Adam {
    /// An optimizer for `vars`, decaying those whose kind is [`ParamKind::Kernel`]; moments
    /// start at zero. Every variable must have a kind.
    pub fn new(
        vars: &BTreeMap<String, Var>,
        kinds: &BTreeMap<String, ParamKind>,
        config: &OptimConfig,
        schedule: Schedule,
    ) -> Result<Adam> {
        let mut slots = Vec::with_capacity(vars.len());
        for (name, var) in vars {
            let kind = kinds.get(name).ok_or_else(|| {
                candle_core::Error::Msg(format!("no parameter kind known for {name}"))
            })?;
            let zeros = var.as_tensor().zeros_like()?;
            slots.push(Slot {
                name: name.clone(),
                var: var.clone(),
                decay: *kind == ParamKind::Kernel,
                m: zeros.clone(),
                v: zeros,
            });
        }
        Ok(Adam { slots, config: config.clone(), schedule, steps: 0 })
    }

    /// Updates done so far.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The schedule.
    pub fn schedule(&self) -> Schedule {
        self.schedule
    }

    /// Applies one update from `grads` (candle's autograd). A parameter without a gradient is
    /// an error: every parameter of our models takes part in the loss.
    pub fn step(&mut self, grads: &GradStore) -> Result<StepStats> {
        let gradients = self
            .slots
            .iter()
            .map(|s| {
                grads.get(s.var.as_tensor()).cloned().ok_or_else(|| {
                    candle_core::Error::Msg(format!("no gradient for parameter {}", s.name))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.apply(gradients)
    }

    /// Applies one update from gradients by parameter name (a hand-written backward pass).
    /// A parameter without a gradient, or a gradient of another shape, is an error.
    pub fn step_named(&mut self, grads: &BTreeMap<String, Tensor>) -> Result<StepStats> {
        let gradients = self
            .slots
            .iter()
            .map(|s| {
                let g = grads.get(&s.name).ok_or_else(|| {
                    candle_core::Error::Msg(format!("no gradient for parameter {}", s.name))
                })?;
                if g.dims() != s.var.dims() {
                    candle_core::bail!(
                        "gradient of {}: expected shape {:?}, found {:?}",
                        s.name,
                        s.var.dims(),
                        g.dims()
                    )
                }
                Ok(g.clone())
            })
            .collect::<Result<Vec<_>>>()?;
        self.apply(gradients)
    }

    /// One update from one gradient per slot, in slot order.
    fn apply(&mut self, gradients: Vec<Tensor>) -> Result<StepStats> {
        let (gradients, grad_norm) = clip_by_global_norm(&gradients, self.config.clip_norm)?;

        let schedule = self.schedule.value(self.steps);
        self.steps += 1;
        let t = self.steps as i32;
        let (b1, b2) = (self.config.beta1, self.config.beta2);
        let lr = self.config.lr * schedule;
        // m̂ / (√v̂ + ε) = (m / c1) / (√(v / c2) + ε).
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        let decay = self.config.weight_decay * schedule;

        for (slot, g) in self.slots.iter_mut().zip(gradients) {
            slot.m = ((&slot.m * b1)? + (&g * (1.0 - b1))?)?;
            slot.v = ((&slot.v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let denom = ((&slot.v * (1.0 / c2))?.sqrt()? + self.config.eps)?;
            let step = ((&slot.m * (lr / c1))? / denom)?;
            let p = slot.var.as_tensor();
            let p_new = if slot.decay && decay != 0.0 {
                ((p * (1.0 - decay))? - step)?
            } else {
                (p - step)?
            };
            slot.var.set(&p_new)?;
        }
        Ok(StepStats { grad_norm, lr })
    }

    /// The moments as named tensors (`adam.m.NAME`, `adam.v.NAME`), for checkpoints.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.slots.len());
        for s in &self.slots {
            out.push((format!("adam.m.{}", s.name), s.m.clone()));
            out.push((format!("adam.v.{}", s.name), s.v.clone()));
        }
        out
    }

    /// Restores the moments written by [`Adam::state`] and the number of updates done.
    pub fn load_state(&mut self, tensors: &BTreeMap<String, Tensor>, steps: usize) -> Result<()> {
        for s in &mut self.slots {
            for (key, dst) in [("m", &mut s.m), ("v", &mut s.v)] {
                let name = format!("adam.{key}.{}", s.name);
                let t = tensors.get(&name).ok_or_else(|| {
                    candle_core::Error::Msg(format!("checkpoint has no optimizer state {name}"))
                })?;
                if t.dims() != dst.dims() {
                    candle_core::bail!(
                        "optimizer state {name}: expected shape {:?}, found {:?}",
                        dst.dims(),
                        t.dims()
                    )
                }
                *dst = t.to_device(dst.device())?;
            }
        }
        self.steps = steps;
        Ok(())
    }
}

/// Scales `grads` so that their global L2 norm is at most `max_norm` (0 = no clipping).
/// Returns the scaled gradients and the norm before scaling, as a scalar tensor; the scale
/// stays on the device, so clipping costs no host round trip.
pub fn clip_by_global_norm(grads: &[Tensor], max_norm: f64) -> Result<(Vec<Tensor>, Tensor)> {
    let mut squares = Vec::with_capacity(grads.len());
    for g in grads {
        squares.push(g.sqr()?.sum_all()?);
    }
    let norm = Tensor::stack(&squares, 0)?.sum_all()?.sqrt()?;
    if max_norm <= 0.0 {
        return Ok((grads.to_vec(), norm));
    }
    // min(1, c / ‖g‖) = c / max(‖g‖, c).
    let scale = (norm.maximum(max_norm)?.recip()? * max_norm)?;
    let clipped = grads.iter().map(|g| g.broadcast_mul(&scale)).collect::<Result<Vec<_>>>()?;
    Ok((clipped, norm))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn schedule_warms_up_linearly_then_decays_to_zero() {
        let s = Schedule { warmup: 10, total: 110 };
        assert_eq!(s.value(0), 0.0);
        assert_eq!(s.value(5), 0.5);
        assert_eq!(s.value(10), 1.0);
        assert!((s.value(60) - 0.5).abs() < 1e-12);
        assert!(s.value(110).abs() < 1e-12);
        assert!(s.value(109) > 0.0 && s.value(109) < 1e-3);
    }

    #[test]
    fn clipping_bounds_the_global_norm_and_leaves_small_gradients_alone() {
        let dev = Device::Cpu;
        let a = Tensor::new(&[3.0f32, 0.0], &dev).unwrap();
        let b = Tensor::new(&[[0.0f32, 4.0]], &dev).unwrap();
        let global = |gs: &[Tensor]| {
            gs.iter()
                .map(|g| g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap())
                .sum::<f32>()
                .sqrt()
        };

        let (clipped, norm) = clip_by_global_norm(&[a.clone(), b.clone()], 1.0).unwrap();
        assert_eq!(norm.to_scalar::<f32>().unwrap(), 5.0);
        assert!((global(&clipped) - 1.0).abs() < 1e-6, "clipped norm {}", global(&clipped));
        // Clipping scales, it does not change directions.
        assert!((clipped[0].to_vec1::<f32>().unwrap()[0] - 0.6).abs() < 1e-6);

        let (same, _) = clip_by_global_norm(&[a, b], 10.0).unwrap();
        assert_eq!(global(&same), 5.0);
    }

    #[test]
    fn weight_decay_touches_kernels_only_and_follows_the_schedule() {
        let dev = Device::Cpu;
        let mut vars = BTreeMap::new();
        let mut kinds = BTreeMap::new();
        for (name, kind) in [
            ("conv.weight", ParamKind::Kernel),
            ("norm.weight", ParamKind::Scale),
            ("fc.bias", ParamKind::Bias),
        ] {
            vars.insert(
                name.to_string(),
                Var::from_tensor(&Tensor::ones(4, candle_core::DType::F32, &dev).unwrap()).unwrap(),
            );
            kinds.insert(name.to_string(), kind);
        }
        let config = OptimConfig { lr: 0.1, weight_decay: 0.1, ..OptimConfig::default() };
        let schedule = Schedule { warmup: 2, total: 10 };
        let mut adam = Adam::new(&vars, &kinds, &config, schedule).unwrap();

        // Zero gradients: Adam moves nothing, so only the decay can change a parameter.
        let zero_loss = |vars: &BTreeMap<String, Var>| {
            let parts: Vec<Tensor> = vars
                .values()
                .map(|v| {
                    let zeros = v.as_tensor().zeros_like().unwrap();
                    (v.as_tensor() * zeros).unwrap().sum_all().unwrap()
                })
                .collect();
            Tensor::stack(&parts, 0).unwrap().sum_all().unwrap()
        };
        let value = |name: &str| vars[name].as_tensor().to_vec1::<f32>().unwrap()[0];
        for _ in 0..2 {
            adam.step(&zero_loss(&vars).backward().unwrap()).unwrap();
        }
        // Schedule 0 then 0.5: the kernel shrinks once by wd·0.5 = 5 %.
        assert!((value("conv.weight") - 0.95).abs() < 1e-6, "kernel {}", value("conv.weight"));
        assert_eq!(value("norm.weight"), 1.0, "a GroupNorm scale was decayed");
        assert_eq!(value("fc.bias"), 1.0, "a bias was decayed");
    }

    #[test]
    fn named_gradients_update_exactly_as_autograd_gradients_do() {
        let dev = Device::Cpu;
        let make = || {
            let w = Var::from_tensor(&Tensor::new(&[1.0f32, -2.0, 0.5], &dev).unwrap()).unwrap();
            let b = Var::from_tensor(&Tensor::new(&[0.25f32], &dev).unwrap()).unwrap();
            BTreeMap::from([("b".to_string(), b), ("w".to_string(), w)])
        };
        let kinds = BTreeMap::from([
            ("b".to_string(), ParamKind::Bias),
            ("w".to_string(), ParamKind::Kernel),
        ]);
        let config =
            OptimConfig { lr: 0.1, weight_decay: 0.1, clip_norm: 1.0, ..OptimConfig::default() };
        let schedule = Schedule { warmup: 1, total: 10 };
        let (vars_a, vars_n) = (make(), make());
        let mut by_graph = Adam::new(&vars_a, &kinds, &config, schedule).unwrap();
        let mut by_name = Adam::new(&vars_n, &kinds, &config, schedule).unwrap();
        let probe = Tensor::new(&[3.0f32, -0.5, 2.0], &dev).unwrap();
        for _ in 0..3 {
            let loss = ((vars_a["w"].as_tensor() * &probe).unwrap().sum_all().unwrap()
                + (vars_a["b"].as_tensor() * 4.0).unwrap().sum_all().unwrap())
            .unwrap();
            by_graph.step(&loss.backward().unwrap()).unwrap();
            let grads = BTreeMap::from([
                ("w".to_string(), probe.clone()),
                ("b".to_string(), Tensor::new(&[4.0f32], &dev).unwrap()),
            ]);
            by_name.step_named(&grads).unwrap();
        }
        for name in ["w", "b"] {
            let a = vars_a[name].as_tensor().to_vec1::<f32>().unwrap();
            let n = vars_n[name].as_tensor().to_vec1::<f32>().unwrap();
            assert_eq!(a, n, "{name}: autograd {a:?} vs named {n:?}");
        }

        let missing = BTreeMap::from([("w".to_string(), probe.clone())]);
        let err = by_name.step_named(&missing).unwrap_err().to_string();
        assert!(err.contains("no gradient for parameter b"), "{err}");
    }

    #[test]
    fn first_adam_update_moves_each_weight_by_the_learning_rate() {
        let dev = Device::Cpu;
        let var = Var::from_tensor(&Tensor::new(&[1.0f32, -2.0], &dev).unwrap()).unwrap();
        let vars = BTreeMap::from([("w".to_string(), var.clone())]);
        let kinds = BTreeMap::from([("w".to_string(), ParamKind::Bias)]);
        let config = OptimConfig { lr: 0.1, clip_norm: 0.0, ..OptimConfig::default() };
        let mut adam =
            Adam::new(&vars, &kinds, &config, Schedule { warmup: 0, total: 100 }).unwrap();
        let loss = (var.as_tensor() * Tensor::new(&[3.0f32, -0.5], &dev).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        adam.step(&loss.backward().unwrap()).unwrap();
        // Bias-corrected m̂/√v̂ = sign(g) on the first step.
        let got = var.as_tensor().to_vec1::<f32>().unwrap();
        assert!((got[0] - 0.9).abs() < 1e-5 && (got[1] + 1.9).abs() < 1e-5, "{got:?}");
    }
}
