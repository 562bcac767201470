//! Every kernel against a plain candle reference (forward) and against central finite
//! differences in f64 (backward), on small shapes that exercise strides, asymmetric padding,
//! 1×1 shortcuts, both batch strategies, and the ReLU mask.

use candle_core::{DType, Device, Tensor, Var, D};
use funmatch_kernels::{conv2d, conv2d_forward_add, group_norm, standardize_weight, Pad4};

fn randn(shape: &[usize], seed: u64) -> Tensor {
    // A deterministic generator, so failures reproduce.
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
    let a = a.to_dtype(DType::F64).unwrap();
    let b = b.to_dtype(DType::F64).unwrap();
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
}

/// Checks the gradient of `loss(vars)` with respect to every element of `vars[which]`
/// (or `samples` of them) against central finite differences.
fn check_grad(what: &str, vars: &[Var], which: usize, loss: &dyn Fn() -> Tensor, samples: usize) {
    let grads = loss().backward().unwrap();
    let var = &vars[which];
    let analytic = grads.get(var).unwrap_or_else(|| panic!("{what}: no gradient"));
    let analytic = analytic.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let base = var.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let eval = |values: Vec<f64>| {
        var.set(&Tensor::from_vec(values, var.dims(), &Device::Cpu).unwrap()).unwrap();
        loss().to_scalar::<f64>().unwrap()
    };
    // Small enough that no ReLU decision flips inside ±h; f64 keeps rounding far below tol.
    let h = 1e-6;
    let step = (base.len() / samples).max(1);
    for i in (0..base.len()).step_by(step) {
        let mut plus = base.clone();
        plus[i] += h;
        let mut minus = base.clone();
        minus[i] -= h;
        let numeric = (eval(plus) - eval(minus)) / (2.0 * h);
        let tol = 1e-6 + 1e-5 * numeric.abs().max(analytic[i].abs());
        assert!(
            (numeric - analytic[i]).abs() <= tol,
            "{what}[{i}]: analytic {} vs finite difference {numeric}",
            analytic[i]
        );
    }
    var.set(&Tensor::from_vec(base, var.dims(), &Device::Cpu).unwrap()).unwrap();
}

/// (input h, w, kernel, stride, padding, batch): 3×3 and 7×7 with strides and asymmetric
/// padding, 1×1 pointwise (the no-im2col path), 1×1 stride 2; batch 1 (parallel GEMM) and
/// 2–9 (parallel over the batch, split unevenly over the threads);
/// stride 1 with the output as wide as the input (the shifted-copy path of im2col), including
/// a 7×7 kernel wider than the image and uneven vertical padding.
const CONV_CASES: [(usize, usize, usize, usize, Pad4, usize); 13] = [
    (9, 6, 3, 2, (1, 1, 1, 1), 1),
    (7, 8, 3, 2, (0, 1, 0, 1), 4),
    (11, 5, 7, 2, (3, 3, 3, 3), 2),
    (6, 7, 1, 2, (0, 0, 0, 0), 4),
    (5, 5, 1, 1, (0, 0, 0, 0), 4),
    (5, 5, 1, 1, (0, 0, 0, 0), 1),
    (5, 4, 3, 1, (2, 0, 1, 2), 3),
    (6, 7, 3, 1, (1, 1, 1, 1), 2),
    (2, 3, 7, 1, (3, 3, 3, 3), 1),
    (3, 6, 5, 1, (0, 4, 2, 2), 3),
    (4, 4, 3, 1, (1, 1, 1, 1), 7),
    (4, 3, 1, 1, (0, 0, 0, 0), 9),
    (6, 6, 3, 2, (1, 1, 1, 1), 5),
];

/// Runs `f` on thread pools of 1, 2 and 3 threads: how the kernels split a batch (samples in
/// turn with parallel GEMMs, or samples in parallel) depends on the thread count.
fn on_thread_counts(f: impl Fn(usize) + Sync) {
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| f(threads));
    }
}

fn candle_conv(x: &Tensor, w: &Tensor, stride: usize, pad: Pad4) -> Tensor {
    let (t, b, l, r) = pad;
    let x = x.pad_with_zeros(2, t, b).unwrap().pad_with_zeros(3, l, r).unwrap();
    x.conv2d(w, 0, stride, 1, 1).unwrap()
}

#[test]
fn conv2d_forward_matches_candle_in_f64_and_f32() {
    on_thread_counts(|threads| {
        for (h, w, k, stride, pad, n) in CONV_CASES {
            let x = randn(&[n, 3, h, w], 1);
            let weight = randn(&[4, 3, k, k], 2);
            let ours = conv2d(&x, &weight, stride, pad).unwrap();
            let theirs = candle_conv(&x, &weight, stride, pad);
            assert_eq!(ours.dims(), theirs.dims(), "{h}x{w} k{k} s{stride} {pad:?}");
            let diff = max_abs_diff(&ours, &theirs);
            assert!(
                diff < 1e-12,
                "f64 {h}x{w} k{k} s{stride} {pad:?} n{n} t{threads}: max diff {diff}"
            );

            let (x32, w32) =
                (x.to_dtype(DType::F32).unwrap(), weight.to_dtype(DType::F32).unwrap());
            let diff = max_abs_diff(&conv2d(&x32, &w32, stride, pad).unwrap(), &theirs);
            assert!(
                diff < 1e-5,
                "f32 {h}x{w} k{k} s{stride} {pad:?} n{n} t{threads}: max diff {diff}"
            );
        }
    })
}

#[test]
fn fused_conv_plus_residual_equals_conv_then_add() {
    on_thread_counts(|threads| {
        for (h, w, k, stride, pad, n) in CONV_CASES {
            let x = randn(&[n, 3, h, w], 3);
            let weight = randn(&[4, 3, k, k], 4);
            let plain = candle_conv(&x, &weight, stride, pad);
            let residual = randn(plain.dims(), 5);
            let fused = conv2d_forward_add(&x, &weight, stride, pad, &residual).unwrap();
            let diff = max_abs_diff(&fused, &(plain + &residual).unwrap());
            assert!(
                diff < 1e-12,
                "{h}x{w} k{k} s{stride} {pad:?} n{n} t{threads}: max diff {diff}"
            );
        }
    });
    // A residual of another shape is an error naming both shapes.
    let x = randn(&[2, 3, 6, 6], 6);
    let weight = randn(&[4, 3, 3, 3], 7);
    let err = conv2d_forward_add(&x, &weight, 1, (1, 1, 1, 1), &randn(&[2, 4, 5, 6], 8))
        .unwrap_err()
        .to_string();
    assert!(err.contains("[2, 4, 5, 6]") && err.contains("[2, 4, 6, 6]"), "{err}");
}

#[test]
fn conv2d_gradients_match_finite_differences() {
    on_thread_counts(|threads| {
        for (case, (h, w, k, stride, pad, n)) in CONV_CASES.into_iter().enumerate() {
            let x = Var::from_tensor(&randn(&[n, 3, h, w], 3)).unwrap();
            let weight = Var::from_tensor(&randn(&[4, 3, k, k], 4)).unwrap();
            let probe = conv2d(&x, &weight, stride, pad).unwrap();
            let r = randn(probe.dims(), 5);
            let vars = [x, weight];
            let loss = || {
                let y = conv2d(vars[0].as_tensor(), vars[1].as_tensor(), stride, pad).unwrap();
                (y * &r).unwrap().sum_all().unwrap()
            };
            check_grad(&format!("case {case} t{threads} grad x"), &vars, 0, &loss, 60);
            check_grad(&format!("case {case} t{threads} grad w"), &vars, 1, &loss, 60);
        }
    })
}

fn candle_group_norm(x: &Tensor, groups: usize, w: &Tensor, b: &Tensor, eps: f64) -> Tensor {
    let (n, c, h, wd) = x.dims4().unwrap();
    let g = x.reshape((n, groups, (c / groups) * h * wd)).unwrap();
    let mean = g.mean_keepdim(D::Minus1).unwrap();
    let centred = g.broadcast_sub(&mean).unwrap();
    let var = centred.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
    let normed = centred.broadcast_div(&(var + eps).unwrap().sqrt().unwrap()).unwrap();
    let normed = normed.reshape((n, c, h, wd)).unwrap();
    normed
        .broadcast_mul(&w.reshape((1, c, 1, 1)).unwrap())
        .unwrap()
        .broadcast_add(&b.reshape((1, c, 1, 1)).unwrap())
        .unwrap()
}

#[test]
fn group_norm_forward_matches_candle_with_and_without_relu() {
    let x = randn(&[3, 6, 5, 4], 6);
    let (w, b) = (randn(&[6], 7), randn(&[6], 8));
    let plain = candle_group_norm(&x, 3, &w, &b, 1e-5);
    let ours = group_norm(&x, 3, &w, &b, 1e-5, false).unwrap();
    let diff = max_abs_diff(&ours, &plain);
    assert!(diff < 1e-12, "group norm: max diff {diff}");
    let ours = group_norm(&x, 3, &w, &b, 1e-5, true).unwrap();
    let diff = max_abs_diff(&ours, &plain.relu().unwrap());
    assert!(diff < 1e-12, "group norm + relu: max diff {diff}");

    let ours32 = group_norm(
        &x.to_dtype(DType::F32).unwrap(),
        3,
        &w.to_dtype(DType::F32).unwrap(),
        &b.to_dtype(DType::F32).unwrap(),
        1e-5,
        true,
    )
    .unwrap();
    let diff = max_abs_diff(&ours32, &plain.relu().unwrap());
    assert!(diff < 1e-5, "f32 group norm + relu: max diff {diff}");
}

#[test]
fn group_norm_gradients_match_finite_differences() {
    for relu in [false, true] {
        // 7×3 spatial: not a multiple of the 8 lanes the sums use, so the tails are covered.
        let x = Var::from_tensor(&randn(&[2, 6, 7, 3], 9)).unwrap();
        let w = Var::from_tensor(&randn(&[6], 10)).unwrap();
        let b = Var::from_tensor(&randn(&[6], 11)).unwrap();
        let r = randn(&[2, 6, 7, 3], 12);
        let vars = [x, w, b];
        let loss = || {
            let (x, w, b) = (vars[0].as_tensor(), vars[1].as_tensor(), vars[2].as_tensor());
            let y = group_norm(x, 2, w, b, 1e-5, relu).unwrap();
            (y * &r).unwrap().sum_all().unwrap()
        };
        for (which, name) in ["x", "weight", "bias"].into_iter().enumerate() {
            check_grad(&format!("group norm (relu {relu}) grad {name}"), &vars, which, &loss, 80);
        }
    }
}

#[test]
fn group_norm_f32_gradients_match_f64_across_block_boundaries() {
    // 24×24 = 576 values per channel: more than one block of the f32 partial sums, with a
    // tail; an offset mean of 3 checks the centring.
    let x = (randn(&[2, 8, 24, 24], 21) + 3.0).unwrap();
    let (w, b) = (randn(&[8], 22), randn(&[8], 23));
    let r = randn(&[2, 8, 24, 24], 24);
    let grads = |dtype: DType| {
        let vars: Vec<Var> = [&x, &w, &b]
            .iter()
            .map(|t| Var::from_tensor(&t.to_dtype(dtype).unwrap()).unwrap())
            .collect();
        let y = group_norm(
            vars[0].as_tensor(),
            2,
            vars[1].as_tensor(),
            vars[2].as_tensor(),
            1e-5,
            true,
        )
        .unwrap();
        let loss = (y * r.to_dtype(dtype).unwrap()).unwrap().sum_all().unwrap();
        let store = loss.backward().unwrap();
        vars.iter().map(|v| store.get(v.as_tensor()).unwrap().clone()).collect::<Vec<_>>()
    };
    let (g32, g64) = (grads(DType::F32), grads(DType::F64));
    for (name, (a, b)) in ["x", "weight", "bias"].iter().zip(g32.iter().zip(&g64)) {
        let scale = max_abs_diff(b, &b.zeros_like().unwrap()).max(1.0);
        let diff = max_abs_diff(a, b) / scale;
        assert!(diff < 1e-5, "f32 group norm grad {name}: relative max diff {diff}");
    }
}

#[test]
fn standardize_weight_matches_formula_and_finite_differences() {
    let w = randn(&[5, 3, 3, 3], 13);
    let flat = w.flatten_from(1).unwrap();
    let mean = flat.mean_keepdim(1).unwrap();
    let centred = flat.broadcast_sub(&mean).unwrap();
    let var = centred.sqr().unwrap().mean_keepdim(1).unwrap();
    let plain = centred.broadcast_div(&(var + 1e-8).unwrap().sqrt().unwrap()).unwrap();
    let ours = standardize_weight(&w, 1e-8).unwrap();
    let diff = max_abs_diff(&ours.flatten_from(1).unwrap(), &plain);
    assert!(diff < 1e-12, "standardize weight: max diff {diff}");

    let var = Var::from_tensor(&w).unwrap();
    let r = randn(&[5, 3, 3, 3], 14);
    let vars = [var];
    let loss = || {
        let y = standardize_weight(vars[0].as_tensor(), 1e-8).unwrap();
        (y * &r).unwrap().sum_all().unwrap()
    };
    check_grad("standardize weight grad", &vars, 0, &loss, 135);
}

#[test]
fn kernels_reject_mismatched_shapes_and_dtypes_with_errors() {
    let x = randn(&[1, 3, 5, 5], 15);
    let err = conv2d(&x, &randn(&[4, 2, 3, 3], 16), 1, (1, 1, 1, 1)).unwrap_err();
    assert!(err.to_string().contains("conv2d"), "{err}");
    let err = conv2d(&x, &randn(&[4, 3, 7, 7], 16), 1, (0, 0, 0, 0)).unwrap_err();
    assert!(err.to_string().contains("does not fit"), "{err}");
    let err = group_norm(&x, 2, &randn(&[3], 1), &randn(&[3], 2), 1e-5, true).unwrap_err();
    assert!(err.to_string().contains("groups"), "{err}");
    let w32 = randn(&[4, 3, 3, 3], 17).to_dtype(DType::F32).unwrap();
    let err = conv2d(&x, &w32, 1, (1, 1, 1, 1)).unwrap_err();
    assert!(err.to_string().contains("f32"), "{err}");
}

#[test]
fn conv2d_on_a_constant_input_still_gives_the_exact_weight_gradient() {
    // The backward skips the input-gradient GEMM when the input records no graph (an image
    // batch); the weight gradient must not depend on that shortcut.
    let x = randn(&[4, 3, 7, 6], 18);
    let weight = Var::from_tensor(&randn(&[5, 3, 3, 3], 19)).unwrap();
    let r = randn(&[4, 5, 4, 3], 20);
    let vars = [weight];
    let loss = || {
        let y = conv2d(&x, vars[0].as_tensor(), 2, (1, 1, 1, 1)).unwrap();
        (y * &r).unwrap().sum_all().unwrap()
    };
    check_grad("constant input: grad w", &vars, 0, &loss, 135);
    let grads = loss().backward().unwrap();
    assert!(grads.get(&x).is_none(), "a constant input received a gradient");
}
