//! A hand-written backward pass for training on the CPU.
//!
//! candle's autograd creates a zero gradient for every argument of every graph node and adds
//! each incoming gradient into it: an allocation, a memset and a full extra pass per tensor.
//! In a ResNet-v2 almost every tensor has exactly one consumer, so that work is waste, and on
//! the CPU it costs about as much as the convolutions' GEMMs. Here the forward pass records
//! what the backward pass needs on a [`Tape`] (each layer's input and output, the standardized
//! kernels, the GroupNorm statistics) without building any graph, and
//! [`ResNetV2::backward`] walks it back block by block, with one addition per block for the
//! residual and each block's activations freed as soon as its gradients are out.
//!
//! Limitation: CPU `f32`/`f64` models built in [`Mode::Trainable`](super::Mode) only (see
//! [`ResNetV2::supports_manual_backward`]); elsewhere train through candle's autograd.

use candle_core::{Result, Tensor, D};
use funmatch_kernels::{self as kernels, GroupNormSpec, GroupNormStats, Pad4, Window};

use super::{conv_padding, Block, NormAct, Params, ResNetV2, StdConv};
use crate::config::StemKind;

/// What a forward pass in training recorded for [`ResNetV2::backward`]. It holds the
/// activations of the whole network; the backward pass consumes and frees it.
#[derive(Debug)]
pub struct Tape {
    stem: StemRecord,
    blocks: Vec<BlockRecord>,
    head: HeadRecord,
}

/// A weight-standardized convolution: its standardized kernel and the padding it ran with
/// (its input is the output of the layer before, recorded there).
#[derive(Debug)]
struct ConvRecord {
    weight: Tensor,
    pad: Pad4,
}

/// A GroupNorm + ReLU: input, output and the per-group statistics.
#[derive(Debug)]
struct NormRecord {
    input: Tensor,
    output: Tensor,
    stats: GroupNormStats,
}

#[derive(Debug)]
struct StemRecord {
    image: Tensor,
    conv: ConvRecord,
    /// The BiT stem's max-pool: its input (the stem convolution's output) and window.
    pool: Option<(Tensor, Window)>,
}

#[derive(Debug)]
struct BlockRecord {
    /// Input: the block's input; output: the pre-activation that conv1 and the downsample
    /// convolution read.
    norm1: NormRecord,
    downsample: Option<ConvRecord>,
    conv1: ConvRecord,
    norm2: NormRecord,
    conv2: ConvRecord,
    norm3: NormRecord,
    conv3: ConvRecord,
}

#[derive(Debug)]
struct HeadRecord {
    norm: NormRecord,
    /// Pooled features `[N, F]`, the classifier's input.
    features: Tensor,
}

impl StdConv {
    fn forward_recorded(&self, x: &Tensor) -> Result<(Tensor, ConvRecord)> {
        self.forward_recorded_add(x, None)
    }

    /// The convolution, plus `residual` when given (fused: one pass over the output).
    fn forward_recorded_add(
        &self,
        x: &Tensor,
        residual: Option<&Tensor>,
    ) -> Result<(Tensor, ConvRecord)> {
        let weight = kernels::standardize_weight_forward(&self.weight, self.eps)?;
        let (_, _, h, w) = x.dims4()?;
        let pad = conv_padding(self.padding, self.kernel, self.stride, h, w);
        let y = match residual {
            Some(r) => kernels::conv2d_forward_add(x, &weight, self.stride, pad, r)?,
            None => kernels::conv2d_forward(x, &weight, self.stride, pad)?,
        };
        Ok((y, ConvRecord { weight, pad }))
    }

    /// `(grad input if want_input, grad raw weight)` from the gradient of the output.
    fn backward(
        &self,
        input: &Tensor,
        record: ConvRecord,
        grad: &Tensor,
        want_input: bool,
    ) -> Result<(Option<Tensor>, Tensor)> {
        let (grad_x, grad_std) = kernels::conv2d_backward(
            input,
            &record.weight,
            grad,
            self.stride,
            record.pad,
            want_input,
        )?;
        let grad_w = kernels::standardize_weight_backward(&self.weight, &grad_std, self.eps)?;
        Ok((grad_x, grad_w))
    }
}

impl NormAct {
    fn spec(&self) -> GroupNormSpec {
        GroupNormSpec { groups: self.groups, eps: self.eps, relu: true }
    }

    fn forward_recorded(&self, x: Tensor) -> Result<(Tensor, NormRecord)> {
        let (y, stats) = kernels::group_norm_forward(&x, &self.weight, &self.bias, self.spec())?;
        Ok((y.clone(), NormRecord { input: x, output: y, stats }))
    }

    /// Gradient of the input; the affine gradients go into `grads` as `{name}.weight` and
    /// `{name}.bias`. Frees the record.
    fn backward(
        &self,
        record: NormRecord,
        grad: &Tensor,
        name: &str,
        grads: &mut Params,
    ) -> Result<Tensor> {
        let NormRecord { input, output, stats } = record;
        let (grad_x, grad_w, grad_b) =
            kernels::group_norm_backward(&input, &output, grad, &self.weight, self.spec(), stats)?;
        grads.insert(format!("{name}.weight"), grad_w);
        grads.insert(format!("{name}.bias"), grad_b);
        Ok(grad_x)
    }
}

impl Block {
    fn forward_recorded(&self, x: Tensor) -> Result<(Tensor, BlockRecord)> {
        let (pre, norm1) = self.norm1.forward_recorded(x)?;
        let (shortcut, downsample) = match &self.downsample {
            Some(conv) => {
                let (y, record) = conv.forward_recorded(&pre)?;
                (y, Some(record))
            }
            None => (norm1.input.clone(), None),
        };

        let (y, conv1) = self.conv1.forward_recorded(&pre)?;
        let (y, norm2) = self.norm2.forward_recorded(y)?;
        let (y, conv2) = self.conv2.forward_recorded(&y)?;
        let (y, norm3) = self.norm3.forward_recorded(y)?;
        // conv3 + shortcut in one pass; the sum passes its gradient to both unchanged.
        let (out, conv3) = self.conv3.forward_recorded_add(&y, Some(&shortcut))?;
        Ok((out, BlockRecord { norm1, downsample, conv1, norm2, conv2, norm3, conv3 }))
    }

    /// Gradient of the block's input from the gradient of its output; parameter gradients go
    /// into `grads`. Frees the record as it goes.
    fn backward(&self, record: BlockRecord, grad: &Tensor, grads: &mut Params) -> Result<Tensor> {
        let p = &self.prefix;
        let BlockRecord { norm1, downsample, conv1, norm2, conv2, norm3, conv3 } = record;

        let g = self.conv3.backward(&norm3.output, conv3, grad, true)?;
        grads.insert(format!("{p}.conv3.weight"), g.1);
        let g = self.norm3.backward(norm3, &input_grad(g.0)?, &format!("{p}.norm3"), grads)?;

        let g = self.conv2.backward(&norm2.output, conv2, &g, true)?;
        grads.insert(format!("{p}.conv2.weight"), g.1);
        let g = self.norm2.backward(norm2, &input_grad(g.0)?, &format!("{p}.norm2"), grads)?;

        let g = self.conv1.backward(&norm1.output, conv1, &g, true)?;
        grads.insert(format!("{p}.conv1.weight"), g.1);
        let grad_pre = input_grad(g.0)?;

        // The residual: one addition, on whichever side of norm1 the shortcut leaves from.
        match (&self.downsample, downsample) {
            (Some(conv), Some(record)) => {
                let g = conv.backward(&norm1.output, record, grad, true)?;
                grads.insert(format!("{p}.downsample.conv.weight"), g.1);
                let grad_pre = (grad_pre + input_grad(g.0)?)?;
                self.norm1.backward(norm1, &grad_pre, &format!("{p}.norm1"), grads)
            }
            (None, None) => {
                let g = self.norm1.backward(norm1, &grad_pre, &format!("{p}.norm1"), grads)?;
                g + grad
            }
            _ => {
                candle_core::bail!("backward: the tape of block {p} was recorded by another model")
            }
        }
    }
}

/// A gradient asked for with `want_input`; its absence is a broken invariant of the kernels.
fn input_grad(g: Option<Tensor>) -> Result<Tensor> {
    g.ok_or_else(|| candle_core::Error::Msg("conv2d_backward returned no input gradient".into()))
}

impl ResNetV2 {
    /// Whether [`ResNetV2::forward_train`] and [`ResNetV2::backward`] handle this model: built
    /// in [`Mode::Trainable`](super::Mode) with CPU `f32` or `f64` parameters.
    pub fn supports_manual_backward(&self) -> bool {
        !self.stem.standardized && funmatch_kernels::supports(&self.stem.weight)
    }

    /// The logits, as [`ResNetV2::forward`] computes them, and a [`Tape`] for
    /// [`ResNetV2::backward`]. Builds no gradient graph, even on variables.
    ///
    /// Shapes: `x` `[N, in_chans, H, W]` → `[N, num_classes]`.
    pub fn forward_train(&self, x: &Tensor) -> Result<(Tensor, Tape)> {
        if !self.supports_manual_backward() {
            let mode = if self.stem.standardized { "frozen" } else { "trainable" };
            candle_core::bail!(
                "forward_train: needs a trainable model with CPU f32/f64 parameters, found a {mode} model on {:?} in {:?}",
                self.stem.weight.device(),
                self.stem.weight.dtype()
            )
        }
        let image = x.detach();
        let (mut x, conv) = self.stem.forward_recorded(&image)?;
        let mut pool = None;
        if self.cfg.stem == StemKind::Bit {
            let (_, _, h, w) = x.dims4()?;
            let pad = self.stem_pool_padding(h, w);
            let window = Window { kernel: (3, 3), stride: (2, 2), pad };
            let pooled = kernels::max_pool2d_forward(&x, window, 0.0)?;
            pool = Some((std::mem::replace(&mut x, pooled), window));
        }
        let stem = StemRecord { image, conv, pool };

        let mut blocks = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            let (y, record) = block.forward_recorded(x)?;
            blocks.push(record);
            x = y;
        }

        let (z, norm) = self.norm.forward_recorded(x)?;
        let features = z.mean(D::Minus1)?.mean(D::Minus1)?;
        let logits = features
            .matmul(&self.head_weight.detach().t()?)?
            .broadcast_add(&self.head_bias.detach())?;
        Ok((logits, Tape { stem, blocks, head: HeadRecord { norm, features } }))
    }

    /// The gradient of every parameter, by timm name (the names of
    /// [`trainable`](super::trainable)'s map), from the gradient `grad_logits` `[N, classes]`
    /// of the loss with respect to the logits of the forward pass that recorded `tape`.
    pub fn backward(&self, tape: Tape, grad_logits: &Tensor) -> Result<Params> {
        let Tape { stem, mut blocks, head } = tape;
        if blocks.len() != self.blocks.len() {
            candle_core::bail!(
                "backward: the tape has {} blocks, the model {}",
                blocks.len(),
                self.blocks.len()
            )
        }
        let mut grads = Params::new();

        // Head: classifier, global mean pool, final GroupNorm + ReLU.
        let g = grad_logits.detach();
        let (classes, features) = self.head_weight.dims2()?;
        grads.insert("head.fc.bias".into(), g.sum(0)?);
        let grad_w = g.t()?.matmul(&head.features)?;
        grads.insert("head.fc.weight".into(), grad_w.reshape((classes, features, 1, 1))?);
        let g = g.matmul(&self.head_weight.detach())?;
        let (n, f, h, w) = head.norm.output.dims4()?;
        let g = g
            .affine(1.0 / (h * w) as f64, 0.0)?
            .reshape((n, f, 1, 1))?
            .broadcast_as((n, f, h, w))?
            .contiguous()?;
        let mut g = self.norm.backward(head.norm, &g, "norm", &mut grads)?;

        for block in self.blocks.iter().rev() {
            let record = blocks.pop().expect("one record per block, checked above");
            g = block.backward(record, &g, &mut grads)?;
        }

        // Stem: the pool (BiT), then the convolution, whose input is the image.
        let StemRecord { image, conv, pool } = stem;
        if let Some((input, window)) = pool {
            g = kernels::max_pool2d_backward(&input, &g, window, 0.0)?;
        }
        let (_, grad_w) = self.stem.backward(&image, conv, &g, false)?;
        grads.insert("stem.conv.weight".into(), grad_w);
        Ok(grads)
    }
}
