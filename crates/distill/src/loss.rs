//! Losses and held-out metrics, written with candle ops that keep their gradients.
//!
//! candle's `softmax_last_dim` fast path records no backward, so the log-softmax here is
//! spelled out: `x − max − log Σ exp(x − max)`, the max held constant (the result does not
//! depend on it, and treating it as a constant keeps the gradient exact and cheap).

use candle_core::{DType, Result, Tensor, D};

/// Numerically stable log-softmax over the last dimension; differentiable.
///
/// Shapes: `[N, C]` → `[N, C]`.
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let log_sum = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    shifted.broadcast_sub(&log_sum)
}

/// The distillation loss: `T² · KL(softmax(t/T) ‖ softmax(s/T))` per example, averaged over
/// the batch. Gradients flow into `student` only.
///
/// Shapes: `student`, `teacher` `[N, C]` → scalar.
pub fn distill_loss(student: &Tensor, teacher: &Tensor, temperature: f64) -> Result<Tensor> {
    let n = student.dim(0)? as f64;
    let teacher = teacher.detach();
    let log_p_t = log_softmax(&(teacher / temperature)?)?;
    let p_t = log_p_t.exp()?;
    let log_p_s = log_softmax(&(student / temperature)?)?;
    let kl = (p_t * (log_p_t - log_p_s)?)?.sum_all()?;
    kl * (temperature * temperature / n)
}

/// Softmax cross-entropy against soft targets (one-hot, smoothed and/or mixed), averaged
/// over the batch. Gradients flow into `logits`.
///
/// Shapes: `logits` `[N, C]`, `targets` `[N, C]` (rows sum to 1) → scalar.
pub fn soft_cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let n = logits.dim(0)? as f64;
    let log_p = log_softmax(logits)?;
    (targets * log_p)?.sum_all()? * (-1.0 / n)
}

/// Soft targets from a batch's (possibly mixed) one-hot rows with label smoothing `eps`:
/// `(1 − eps) · y + eps / C`.
pub fn smooth(rows: &mut [f32], classes: usize, eps: f64) {
    if eps == 0.0 {
        return;
    }
    let (keep, spread) = ((1.0 - eps) as f32, (eps / classes as f64) as f32);
    for v in rows {
        *v = keep * *v + spread;
    }
}

/// Top-1 predictions of each row, on the host.
pub fn argmax(logits: &Tensor) -> Result<Vec<u32>> {
    logits.argmax(D::Minus1)?.to_dtype(DType::U32)?.to_vec1()
}

/// `KL(softmax(t) ‖ softmax(s))` of every row at temperature 1, on the host.
pub fn kl_per_example(student: &Tensor, teacher: &Tensor) -> Result<Vec<f32>> {
    let log_p_t = log_softmax(teacher)?;
    let log_p_s = log_softmax(student)?;
    (log_p_t.exp()? * (log_p_t - log_p_s)?)?.sum(D::Minus1)?.to_vec1()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn t(rows: &[&[f32]]) -> Tensor {
        let cols = rows[0].len();
        let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_vec(flat, (rows.len(), cols), &Device::Cpu).unwrap()
    }

    #[test]
    fn log_softmax_is_stable_for_large_logits() {
        let x = t(&[&[1000.0, 1001.0, 999.0]]);
        let out: Vec<f32> = log_softmax(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let want = [-1.4076059, -0.40760595, -2.407606];
        for (a, b) in out.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{out:?} vs {want:?}");
        }
    }

    #[test]
    fn distill_loss_is_zero_for_equal_logits_and_its_gradient_is_exact() {
        let s = t(&[&[0.5, -1.0, 2.0], &[0.0, 0.0, 0.0]]);
        let zero = distill_loss(&s, &s, 2.0).unwrap().to_scalar::<f32>().unwrap();
        assert!(zero.abs() < 1e-6, "KL(p‖p) = {zero}");

        // d/ds of T²·mean KL is T·(softmax(s/T) − softmax(t/T)) / N.
        let temp = 2.0;
        let var = Var::from_tensor(&s).unwrap();
        let teacher = t(&[&[1.0, 0.0, -1.0], &[3.0, 0.0, 0.0]]);
        let loss = distill_loss(var.as_tensor(), &teacher, temp).unwrap();
        let grad = loss.backward().unwrap().get(var.as_tensor()).unwrap().clone();
        let p = |x: &Tensor| log_softmax(&(x / temp).unwrap()).unwrap().exp().unwrap();
        let want = ((p(&s) - p(&teacher)).unwrap() * (temp / 2.0)).unwrap();
        let diff = (grad - want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
    }

    #[test]
    fn cross_entropy_of_one_hot_targets_is_the_negative_log_likelihood() {
        let logits = t(&[&[2.0, 0.0], &[0.0, 0.0]]);
        let targets = t(&[&[1.0, 0.0], &[0.0, 1.0]]);
        let ce = soft_cross_entropy(&logits, &targets).unwrap().to_scalar::<f32>().unwrap();
        let want = (-(2f32.exp() / (2f32.exp() + 1.0)).ln() + 2f32.ln()) / 2.0;
        assert!((ce - want).abs() < 1e-6, "{ce} vs {want}");
    }

    #[test]
    fn label_smoothing_spreads_eps_over_the_classes() {
        let mut rows = vec![1.0, 0.0, 0.0, 0.0];
        smooth(&mut rows, 4, 0.2);
        assert_eq!(rows, vec![0.85, 0.05, 0.05, 0.05]);
    }
}
