//! The hand-written backward pass (`ResNetV2::forward_train` + `ResNetV2::backward`) against
//! candle's autograd through the ordinary differentiable forward: the same logits, and the
//! same gradient for every parameter, on small models covering both stems, both paddings,
//! the "SAME" stem pool, downsample blocks and odd sizes at stride 2.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var, D};
use funmatch_models::{init_params, BitConfig, Mode, Padding, Params, ResNetV2, StemKind};

fn uniform(shape: &[usize], seed: u64, dtype: DType) -> Tensor {
    // A simple deterministic generator, so failures reproduce.
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let n: usize = shape.iter().product();
    let values: Vec<f64> = (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap().to_dtype(dtype).unwrap()
}

/// One case: a name for failure messages, the architecture and the input size.
struct Case {
    name: &'static str,
    cfg: BitConfig,
    height: usize,
    width: usize,
}

fn config(stem: StemKind, padding: Padding, pool_same: bool, pool_pad: usize) -> BitConfig {
    let mut cfg = BitConfig::bit(&[1, 2, 1], 1, 5);
    cfg.channels = vec![16, 32, 32];
    cfg.stem_width = 8;
    cfg.groups = 4;
    cfg.stem = stem;
    cfg.padding = padding;
    cfg.stem_pool_same = pool_same;
    cfg.stem_pool_pad = pool_pad;
    cfg.validate().unwrap();
    cfg
}

fn cases() -> Vec<Case> {
    use Padding::{Same, Symmetric};
    use StemKind::{Bit, Small};
    vec![
        // 23×18: odd height, even width, so stride-2 layers see mixed parities.
        Case {
            name: "bit stem, symmetric",
            cfg: config(Bit, Symmetric, false, 1),
            height: 23,
            width: 18,
        },
        Case {
            name: "bit stem, same, same pool",
            cfg: config(Bit, Same, true, 0),
            height: 23,
            width: 18,
        },
        Case {
            name: "bit stem, same, padded same pool",
            cfg: config(Bit, Same, true, 1),
            height: 21,
            width: 25,
        },
        Case {
            name: "small stem, symmetric",
            cfg: config(Small, Symmetric, false, 1),
            height: 13,
            width: 10,
        },
        Case {
            name: "small stem, same",
            cfg: config(Small, Same, false, 0),
            height: 11,
            width: 15,
        },
    ]
}

/// Parameters in `dtype` with scales and biases perturbed, so that wrong affine gradients
/// would show.
fn perturbed_params(cfg: &BitConfig, dtype: DType) -> Params {
    let params = init_params(cfg, 11, &Device::Cpu).unwrap();
    params
        .iter()
        .map(|(k, t)| {
            let t = t.to_dtype(dtype).unwrap();
            let noise = uniform(t.dims(), k.len() as u64, dtype).affine(0.2, 0.0).unwrap();
            (k.clone(), (&t + noise).unwrap())
        })
        .collect()
}

/// The logits and gradients of `loss(logits)` by candle's autograd, and by the manual pass
/// (with dL/dlogits from autograd on the loss alone, as the trainer does).
struct Both {
    logits_autograd: Tensor,
    logits_manual: Tensor,
    autograd: Params,
    manual: Params,
}

fn both(case: &Case, dtype: DType, loss: &dyn Fn(&Tensor) -> Tensor) -> Both {
    let params = perturbed_params(&case.cfg, dtype);
    let vars: BTreeMap<String, Var> =
        params.iter().map(|(k, t)| (k.clone(), Var::from_tensor(t).unwrap())).collect();
    let tensors: Params = vars.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
    let model = ResNetV2::new(&case.cfg, &tensors, Mode::Trainable).unwrap();
    assert!(model.supports_manual_backward(), "{}: {dtype:?} model not supported", case.name);
    let x = uniform(&[2, 3, case.height, case.width], 12, dtype);

    let logits_autograd = model.forward(&x).unwrap();
    let store = loss(&logits_autograd).backward().unwrap();
    let autograd = vars
        .iter()
        .map(|(k, v)| {
            let g = store
                .get(v)
                .unwrap_or_else(|| panic!("{}: autograd: no gradient for {k}", case.name));
            (k.clone(), g.clone())
        })
        .collect();

    let (logits_manual, tape) = model.forward_train(&x).unwrap();
    assert!(!logits_manual.track_op(), "{}: forward_train built a gradient graph", case.name);
    let leaf = Var::from_tensor(&logits_manual).unwrap();
    let grad_logits = loss(leaf.as_tensor()).backward().unwrap().get(&leaf).unwrap().clone();
    let manual = model.backward(tape, &grad_logits).unwrap();
    Both { logits_autograd, logits_manual, autograd, manual }
}

/// A softmax cross-entropy against fixed soft targets, as the trainer's losses are.
fn cross_entropy(logits: &Tensor) -> Tensor {
    let n = logits.dim(0).unwrap();
    let weights = (uniform(logits.dims(), 14, logits.dtype()) + 1.5).unwrap();
    let targets = weights.broadcast_div(&weights.sum_keepdim(1).unwrap()).unwrap();
    let max = logits.max_keepdim(D::Minus1).unwrap();
    let shifted = logits.broadcast_sub(&max).unwrap();
    let lse = shifted.exp().unwrap().sum_keepdim(D::Minus1).unwrap().log().unwrap();
    let log_probs = shifted.broadcast_sub(&lse).unwrap();
    let total = (targets * log_probs).unwrap().sum_all().unwrap();
    total.affine(-1.0 / n as f64, 0.0).unwrap()
}

fn max_abs(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64)
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

/// `max |a − b|` over the tensor, and that divided by `max |b|`.
fn difference(a: &Tensor, b: &Tensor) -> (f64, f64) {
    assert_eq!(a.dims(), b.dims());
    let a64 = a.to_dtype(DType::F64).unwrap();
    let b64 = b.to_dtype(DType::F64).unwrap();
    let abs = max_abs(&(a64 - &b64).unwrap());
    (abs, abs / max_abs(&b64).max(f64::MIN_POSITIVE))
}

/// Every parameter has a gradient from both passes, of the same shape, and they agree within
/// `tol`, absolute or relative to the largest autograd value of that tensor.
fn assert_same_gradients(case: &Case, both: &Both, relative: bool, tol: f64) {
    let names_a: Vec<&String> = both.autograd.keys().collect();
    let names_m: Vec<&String> = both.manual.keys().collect();
    assert_eq!(names_m, names_a, "{}: the manual pass names other parameters", case.name);
    for (name, expected) in &both.autograd {
        let got = &both.manual[name];
        assert_eq!(got.dims(), expected.dims(), "{}: {name}: gradient shape", case.name);
        assert_eq!(got.dtype(), expected.dtype(), "{}: {name}: gradient dtype", case.name);
        let (abs, rel) = difference(got, expected);
        let err = if relative { rel } else { abs };
        assert!(
            err <= tol,
            "{}: {name}: manual vs autograd differ by {abs:e} (relative {rel:e}, tolerance {tol:e}; \
             max |autograd| {:e})",
            case.name,
            max_abs(expected)
        );
        assert!(
            max_abs(expected) > 0.0,
            "{}: {name}: gradient is zero, the check is void",
            case.name
        );
    }
}

fn probe_loss(logits: &Tensor) -> Tensor {
    let probe = uniform(logits.dims(), 13, logits.dtype());
    (logits * probe).unwrap().sum_all().unwrap()
}

#[test]
fn manual_gradients_equal_autograd_in_f64() {
    for case in cases() {
        for loss in [probe_loss as fn(&Tensor) -> Tensor, cross_entropy] {
            let both = both(&case, DType::F64, &loss);
            let (diff, _) = difference(&both.logits_manual, &both.logits_autograd);
            assert!(diff <= 1e-12, "{}: logits differ by {diff:e}", case.name);
            assert_same_gradients(&case, &both, false, 1e-10);
        }
    }
}

#[test]
fn manual_gradients_equal_autograd_in_f32() {
    for case in cases() {
        let both = both(&case, DType::F32, &cross_entropy);
        let (diff, rel) = difference(&both.logits_manual, &both.logits_autograd);
        assert!(rel <= 1e-6, "{}: logits differ by {diff:e} (relative {rel:e})", case.name);
        assert_same_gradients(&case, &both, true, 1e-4);
    }
}

#[test]
fn frozen_models_are_refused_with_an_error() {
    let cfg = config(StemKind::Small, Padding::Symmetric, false, 1);
    let params = init_params(&cfg, 3, &Device::Cpu).unwrap();
    let model = ResNetV2::new(&cfg, &params, Mode::Frozen).unwrap();
    assert!(!model.supports_manual_backward());
    let x = uniform(&[1, 3, 8, 8], 4, DType::F32);
    let err = model.forward_train(&x).unwrap_err().to_string();
    assert!(err.contains("frozen"), "unexpected error: {err}");
}
