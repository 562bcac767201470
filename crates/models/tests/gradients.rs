//! Gradients of our ops and of a whole BiT model against finite differences (in f64), and
//! forward values against candle's own kernels.

use candle_core::{DType, Device, Tensor, Var};
use funmatch_models::ops::{conv2d, max_pool2d};
use funmatch_models::{init_params, BitConfig, Mode, Padding, ResNetV2, StemKind};

fn randn(shape: &[usize], seed: u64) -> Tensor {
    // A simple deterministic generator, so failures reproduce.
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let n: usize = shape.iter().product();
    let values: Vec<f64> = (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// Central finite differences of `loss` with respect to a few elements of `var`, compared
/// with the analytic gradient `grad`.
fn check_against_finite_differences(
    what: &str,
    var: &Var,
    grad: &Tensor,
    loss: &dyn Fn() -> f64,
    samples: usize,
) {
    let base = var.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let analytic = grad.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    // Small enough that no ReLU or max-pool decision flips inside ±h; f64 keeps the
    // rounding error far below the tolerance.
    let h = 1e-7;
    let step = (base.len() / samples).max(1);
    for i in (0..base.len()).step_by(step).take(samples) {
        let mut plus = base.clone();
        plus[i] += h;
        var.set(&Tensor::from_vec(plus, var.dims(), &Device::Cpu).unwrap()).unwrap();
        let lp = loss();
        let mut minus = base.clone();
        minus[i] -= h;
        var.set(&Tensor::from_vec(minus, var.dims(), &Device::Cpu).unwrap()).unwrap();
        let lm = loss();
        let numeric = (lp - lm) / (2.0 * h);
        let tol = 1e-6 + 1e-4 * numeric.abs().max(analytic[i].abs());
        assert!(
            (numeric - analytic[i]).abs() <= tol,
            "{what}[{i}]: analytic {} vs finite difference {numeric}",
            analytic[i]
        );
    }
    var.set(&Tensor::from_vec(base, var.dims(), &Device::Cpu).unwrap()).unwrap();
}

#[test]
fn conv2d_matches_candle_forward_on_odd_strided_shapes() {
    for (h, w, k, stride, pad) in
        [(9, 6, 3, 2, 1), (7, 8, 3, 2, 1), (11, 5, 7, 2, 3), (6, 7, 1, 2, 0), (5, 5, 3, 1, 1)]
    {
        let x = randn(&[2, 3, h, w], 1);
        let weight = randn(&[4, 3, k, k], 2);
        let ours = conv2d(&x, &weight, stride, (pad, pad, pad, pad)).unwrap();
        let theirs = x.conv2d(&weight, pad, stride, 1, 1).unwrap();
        assert_eq!(ours.dims(), theirs.dims(), "{h}x{w} k{k} s{stride}");
        let diff = max_abs_diff(&ours, &theirs);
        assert!(diff < 1e-12, "{h}x{w} k{k} s{stride} p{pad}: max diff {diff}");
    }
}

#[test]
fn conv2d_gradients_match_finite_differences_on_odd_non_square_input() {
    // Height odd, width even, stride 2: the shape candle's own backward fails on.
    for (h, w, pad) in [(9, 6, (1, 1, 1, 1)), (8, 7, (0, 1, 0, 1)), (7, 7, (2, 0, 1, 0))] {
        let x = Var::from_tensor(&randn(&[2, 3, h, w], 3)).unwrap();
        let weight = Var::from_tensor(&randn(&[5, 3, 3, 3], 4)).unwrap();
        let probe = randn(&conv2d(&x, &weight, 2, pad).unwrap().dims().to_vec(), 5);
        let loss = || {
            let y = conv2d(x.as_tensor(), weight.as_tensor(), 2, pad).unwrap();
            (y * &probe).unwrap().sum_all().unwrap()
        };
        let grads = loss().backward().unwrap();
        let scalar = || loss().to_scalar::<f64>().unwrap();
        check_against_finite_differences("conv input", &x, grads.get(&x).unwrap(), &scalar, 40);
        check_against_finite_differences(
            "conv weight",
            &weight,
            grads.get(&weight).unwrap(),
            &scalar,
            40,
        );
    }
}

#[test]
fn max_pool_3x3_stride_2_has_exact_gradients() {
    for (h, w, pad, value) in [(9, 6, (1, 1, 1, 1), 0.0), (8, 7, (0, 1, 0, 1), f32::NEG_INFINITY)] {
        let x = Var::from_tensor(&randn(&[2, 3, h, w], 6)).unwrap();
        let out = max_pool2d(&x, 3, 2, pad, value).unwrap();
        let probe = randn(out.dims(), 7);
        let loss = || {
            (max_pool2d(x.as_tensor(), 3, 2, pad, value).unwrap() * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
        };
        let grads = loss().backward().unwrap();
        let scalar = || loss().to_scalar::<f64>().unwrap();
        check_against_finite_differences("pool input", &x, grads.get(&x).unwrap(), &scalar, 60);
    }
}

#[test]
fn max_pool_matches_candle_when_kernel_equals_stride() {
    let x = randn(&[2, 3, 8, 6], 8);
    let ours = max_pool2d(&x, 2, 2, (0, 0, 0, 0), 0.0).unwrap();
    let theirs = x.max_pool2d(2).unwrap();
    assert_eq!(max_abs_diff(&ours, &theirs), 0.0);
}

fn tiny_config(stem: StemKind, padding: Padding) -> BitConfig {
    let mut cfg = BitConfig::bit(&[1, 2], 1, 5);
    cfg.channels = vec![16, 32];
    cfg.stem_width = 8;
    cfg.groups = 4;
    cfg.stem = stem;
    cfg.padding = padding;
    cfg.stem_pool_same = padding == Padding::Same;
    cfg.stem_pool_pad = if padding == Padding::Same { 0 } else { 1 };
    cfg.validate().unwrap();
    cfg
}

#[test]
fn every_parameter_and_the_input_get_exact_gradients_through_the_bit_stem() {
    for (stem, padding) in [
        (StemKind::Bit, Padding::Symmetric),
        (StemKind::Bit, Padding::Same),
        (StemKind::Small, Padding::Symmetric),
    ] {
        let cfg = tiny_config(stem, padding);
        let params = init_params(&cfg, 11, &Device::Cpu).unwrap();
        let vars: Vec<(String, Var)> = params
            .iter()
            .map(|(k, t)| {
                // Perturb scales and biases so that wrong affine gradients would show.
                let t = t.to_dtype(DType::F64).unwrap();
                let t = (&t + randn(t.dims(), k.len() as u64).affine(0.2, 0.0).unwrap()).unwrap();
                (k.clone(), Var::from_tensor(&t).unwrap())
            })
            .collect();
        let tensors = vars.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
        let model = ResNetV2::new(&cfg, &tensors, Mode::Trainable).unwrap();

        // 23×18: odd height, even width, so stride-2 layers see mixed parities.
        let x = Var::from_tensor(&randn(&[2, 3, 23, 18], 12)).unwrap();
        let probe = randn(&[2, 5], 13);
        let loss = || (model.forward(x.as_tensor()).unwrap() * &probe).unwrap().sum_all().unwrap();
        let grads = loss().backward().unwrap();
        let scalar = || loss().to_scalar::<f64>().unwrap();

        check_against_finite_differences("input", &x, grads.get(&x).unwrap(), &scalar, 12);
        for (name, var) in &vars {
            let grad = grads
                .get(var)
                .unwrap_or_else(|| panic!("{name} ({stem:?}, {padding:?}) received no gradient"));
            check_against_finite_differences(name, var, grad, &scalar, 4);
        }
    }
}

#[test]
fn frozen_and_trainable_models_compute_the_same_logits() {
    let cfg = tiny_config(StemKind::Bit, Padding::Symmetric);
    let params = init_params(&cfg, 5, &Device::Cpu).unwrap();
    let x = randn(&[2, 3, 32, 29], 9).to_dtype(DType::F32).unwrap();
    let frozen = ResNetV2::new(&cfg, &params, Mode::Frozen).unwrap().forward(&x).unwrap();
    let trainable = ResNetV2::new(&cfg, &params, Mode::Trainable).unwrap().forward(&x).unwrap();
    let diff = (frozen - trainable).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
}
