//! BiT ResNet-v2: pre-activation bottlenecks, weight-standardized convolutions, GroupNorm.
//!
//! Field paths follow timm's tensor names (`stages.{s}.blocks.{b}.conv1.weight`, …), so a
//! reader can map code to checkpoint keys at a glance.

use candle_core::{DType, Device, Result, Tensor, Var, D};
use std::collections::BTreeMap;

use crate::config::{BitConfig, Padding, StemKind};
use crate::ops::{self, Pad4};

mod manual;

pub use manual::Tape;

/// Named tensors with timm's names.
pub type Params = BTreeMap<String, Tensor>;

/// Whether the model is built for inference or for training.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Weights are standardized once at build time; nothing records a gradient graph unless
    /// the input itself is a variable.
    Frozen,
    /// Weights are standardized on every forward, so every parameter receives a gradient.
    Trainable,
}

/// What kind of tensor a parameter is; weight decay applies to kernels only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A convolution or dense kernel.
    Kernel,
    /// A GroupNorm scale.
    Scale,
    /// A GroupNorm or classifier bias.
    Bias,
}

/// One parameter the architecture expects: name, shape and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub kind: ParamKind,
}

/// Every parameter of `cfg`, in a stable order (stem, stages, final norm, head).
pub fn param_specs(cfg: &BitConfig) -> Vec<ParamSpec> {
    let mut specs = Vec::new();
    let mut push =
        |name: String, shape: Vec<usize>, kind| specs.push(ParamSpec { name, shape, kind });
    let stem_k = match cfg.stem {
        StemKind::Bit => 7,
        StemKind::Small => 3,
    };
    push(
        "stem.conv.weight".into(),
        vec![cfg.stem_width, cfg.in_chans, stem_k, stem_k],
        ParamKind::Kernel,
    );

    let mut in_chs = cfg.stem_width;
    for (s, (&depth, &out_chs)) in cfg.layers.iter().zip(&cfg.channels).enumerate() {
        let mid = cfg.mid_channels(s);
        for b in 0..depth {
            let p = format!("stages.{s}.blocks.{b}");
            let block_in = if b == 0 { in_chs } else { out_chs };
            if b == 0 {
                push(
                    format!("{p}.downsample.conv.weight"),
                    vec![out_chs, block_in, 1, 1],
                    ParamKind::Kernel,
                );
            }
            let convs = [(block_in, mid, 1), (mid, mid, 3), (mid, out_chs, 1)];
            for (i, (cin, cout, k)) in convs.into_iter().enumerate() {
                let n = i + 1;
                push(format!("{p}.norm{n}.weight"), vec![cin], ParamKind::Scale);
                push(format!("{p}.norm{n}.bias"), vec![cin], ParamKind::Bias);
                push(format!("{p}.conv{n}.weight"), vec![cout, cin, k, k], ParamKind::Kernel);
            }
        }
        in_chs = out_chs;
    }

    push("norm.weight".into(), vec![in_chs], ParamKind::Scale);
    push("norm.bias".into(), vec![in_chs], ParamKind::Bias);
    push("head.fc.weight".into(), vec![cfg.num_classes, in_chs, 1, 1], ParamKind::Kernel);
    push("head.fc.bias".into(), vec![cfg.num_classes], ParamKind::Bias);
    specs
}

/// Fresh parameters for training from scratch: He-normal (fan-out) kernels, unit GroupNorm
/// scales, zero biases, and a small normal classifier (std 0.01), as timm initialises BiT.
/// Deterministic for a given `seed`.
pub fn init_params(cfg: &BitConfig, seed: u64, device: &Device) -> Result<Params> {
    let mut rng = SplitMix64(seed);
    let mut params = Params::new();
    for spec in param_specs(cfg) {
        let numel: usize = spec.shape.iter().product();
        let values: Vec<f32> = match spec.kind {
            ParamKind::Scale => vec![1.0; numel],
            ParamKind::Bias => vec![0.0; numel],
            ParamKind::Kernel if spec.name == "head.fc.weight" => {
                (0..numel).map(|_| 0.01 * rng.normal()).collect()
            }
            ParamKind::Kernel => {
                let fan_out = spec.shape[0] * spec.shape[2] * spec.shape[3];
                let std = (2.0 / fan_out as f32).sqrt();
                (0..numel).map(|_| std * rng.normal()).collect()
            }
        };
        params.insert(spec.name, Tensor::from_vec(values, spec.shape, device)?);
    }
    Ok(params)
}

/// A small, seedable generator for initialisation (stable across platforms and versions).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }

    /// A standard normal sample (Box–Muller).
    fn normal(&mut self) -> f32 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
    }
}

/// A weight-standardized convolution without bias.
#[derive(Debug, Clone)]
struct StdConv {
    weight: Tensor,
    /// Whether `weight` already holds the standardized kernel (frozen models).
    standardized: bool,
    kernel: usize,
    stride: usize,
    eps: f64,
    padding: Padding,
}

impl StdConv {
    /// `conv(x) + residual` of a frozen (already standardized) convolution, no graph.
    fn forward_add_no_grad(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let pad = conv_padding(self.padding, self.kernel, self.stride, h, w);
        ops::conv2d_add_no_grad(x, &self.weight, self.stride, pad, residual)
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let weight = if self.standardized {
            self.weight.clone()
        } else {
            ops::standardize_weight(&self.weight, self.eps)?
        };
        let (_, _, h, w) = x.dims4()?;
        let pad = conv_padding(self.padding, self.kernel, self.stride, h, w);
        ops::conv2d(x, &weight, self.stride, pad)
    }
}

/// Padding for a `kernel`×`kernel` window at `stride` over an `h`×`w` input.
pub fn conv_padding(padding: Padding, kernel: usize, stride: usize, h: usize, w: usize) -> Pad4 {
    match padding {
        Padding::Symmetric => {
            let p = ((stride - 1) + (kernel - 1)) / 2;
            (p, p, p, p)
        }
        Padding::Same => {
            let (t, b) = same_padding(h, kernel, stride);
            let (l, r) = same_padding(w, kernel, stride);
            (t, b, l, r)
        }
    }
}

/// TensorFlow's "SAME" padding along one axis: `(before, after)`.
fn same_padding(size: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(size);
    (total / 2, total - total / 2)
}

/// GroupNorm followed by ReLU.
#[derive(Debug, Clone)]
struct NormAct {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    eps: f64,
}

impl NormAct {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::group_norm_relu(x, self.groups, &self.weight, &self.bias, self.eps)
    }
}

/// A pre-activation bottleneck.
#[derive(Debug, Clone)]
struct Block {
    /// `stages.{s}.blocks.{b}`: where this block's parameters live.
    prefix: String,
    norm1: NormAct,
    conv1: StdConv,
    norm2: NormAct,
    conv2: StdConv,
    norm3: NormAct,
    conv3: StdConv,
    downsample: Option<StdConv>,
}

impl Block {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let pre = self.norm1.forward(x)?;
        let shortcut = match &self.downsample {
            Some(conv) => conv.forward(&pre)?,
            None => x.clone(),
        };

        let y = self.conv1.forward(&pre)?;
        let y = self.conv2.forward(&self.norm2.forward(&y)?)?;
        let y = self.norm3.forward(&y)?;
        if self.conv3.standardized {
            // A frozen model runs without a gradient graph: conv3 and the residual in one pass.
            return self.conv3.forward_add_no_grad(&y, &shortcut);
        }
        self.conv3.forward(&y)? + shortcut
    }
}

/// A BiT ResNet-v2 ready to run.
#[derive(Debug, Clone)]
pub struct ResNetV2 {
    cfg: BitConfig,
    stem: StdConv,
    blocks: Vec<Block>,
    norm: NormAct,
    /// Classifier as `[classes, features]`.
    head_weight: Tensor,
    head_bias: Tensor,
}

impl ResNetV2 {
    /// Builds the model from `params` (timm's names). Shapes are checked by the loaders;
    /// a missing name here is a broken invariant of ours and reported as an error.
    pub fn new(cfg: &BitConfig, params: &Params, mode: Mode) -> Result<Self> {
        let get = |name: &str| {
            params
                .get(name)
                .cloned()
                .ok_or_else(|| candle_core::Error::Msg(format!("missing parameter {name}")))
        };
        let conv = |name: &str, kernel: usize, stride: usize| -> Result<StdConv> {
            let raw = get(name)?;
            let (weight, standardized) = match mode {
                Mode::Frozen => (ops::standardize_weight(&raw, cfg.ws_eps)?, true),
                Mode::Trainable => (raw, false),
            };
            Ok(StdConv {
                weight,
                standardized,
                kernel,
                stride,
                eps: cfg.ws_eps,
                padding: cfg.padding,
            })
        };
        let norm = |prefix: &str| -> Result<NormAct> {
            Ok(NormAct {
                weight: get(&format!("{prefix}.weight"))?,
                bias: get(&format!("{prefix}.bias"))?,
                groups: cfg.groups,
                eps: cfg.gn_eps,
            })
        };

        let (stem_k, stem_s) = match cfg.stem {
            StemKind::Bit => (7, 2),
            StemKind::Small => (3, 1),
        };
        let stem = conv("stem.conv.weight", stem_k, stem_s)?;

        let mut blocks = Vec::new();
        for (s, &depth) in cfg.layers.iter().enumerate() {
            for b in 0..depth {
                let p = format!("stages.{s}.blocks.{b}");
                let stride = if b == 0 && s > 0 { 2 } else { 1 };
                let downsample = if b == 0 {
                    Some(conv(&format!("{p}.downsample.conv.weight"), 1, stride)?)
                } else {
                    None
                };
                blocks.push(Block {
                    prefix: p.clone(),
                    norm1: norm(&format!("{p}.norm1"))?,
                    conv1: conv(&format!("{p}.conv1.weight"), 1, 1)?,
                    norm2: norm(&format!("{p}.norm2"))?,
                    conv2: conv(&format!("{p}.conv2.weight"), 3, stride)?,
                    norm3: norm(&format!("{p}.norm3"))?,
                    conv3: conv(&format!("{p}.conv3.weight"), 1, 1)?,
                    downsample,
                });
            }
        }

        let head = get("head.fc.weight")?;
        let head_weight = head.reshape((cfg.num_classes, cfg.num_features()))?;
        Ok(Self {
            cfg: cfg.clone(),
            stem,
            blocks,
            norm: norm("norm")?,
            head_weight,
            head_bias: get("head.fc.bias")?,
        })
    }

    /// The architecture this model was built with.
    pub fn config(&self) -> &BitConfig {
        &self.cfg
    }

    /// Pooled features before the classifier.
    ///
    /// Shapes: `x` `[N, in_chans, H, W]` → `[N, num_features]`.
    pub fn forward_features(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = self.stem.forward(x)?;
        if self.cfg.stem == StemKind::Bit {
            x = self.stem_pool(&x)?;
        }
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        self.norm.forward(&x)?.mean(D::Minus1)?.mean(D::Minus1)
    }

    /// Logits.
    ///
    /// Shapes: `x` `[N, in_chans, H, W]` → `[N, num_classes]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let features = self.forward_features(x)?;
        features.matmul(&self.head_weight.t()?)?.broadcast_add(&self.head_bias)
    }

    /// BiT pads the stem output with one zero on each side and pools 3×3 / 2; transformers
    /// can instead (or also) pad dynamically to "SAME", with zeros too.
    fn stem_pool(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        ops::max_pool2d(x, 3, 2, self.stem_pool_padding(h, w), 0.0)
    }

    /// Padding of the 3×3 / 2 stem pool over an `h`×`w` stem output.
    fn stem_pool_padding(&self, h: usize, w: usize) -> Pad4 {
        let c = self.cfg.stem_pool_pad;
        let (t, b, l, r) = if self.cfg.stem_pool_same {
            conv_padding(Padding::Same, 3, 2, h + 2 * c, w + 2 * c)
        } else {
            (0, 0, 0, 0)
        };
        (t + c, b + c, l + c, r + c)
    }
}

/// Trainable variables for every parameter, and the model built on them.
pub fn trainable(cfg: &BitConfig, params: &Params) -> Result<(ResNetV2, BTreeMap<String, Var>)> {
    let mut vars = BTreeMap::new();
    let mut tensors = Params::new();
    for (name, tensor) in params {
        let var = Var::from_tensor(&tensor.to_dtype(DType::F32)?)?;
        tensors.insert(name.clone(), var.as_tensor().clone());
        vars.insert(name.clone(), var);
    }
    Ok((ResNetV2::new(cfg, &tensors, Mode::Trainable)?, vars))
}
