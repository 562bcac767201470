//! `funmatch predict MODEL INPUT…`: top-k classes for images or preprocessed tensors.

use anyhow::{bail, Context};
use candle_core::{DType, Device, Tensor};
use clap::Args;
use funmatch_data::view::eval_view;
use funmatch_data::ViewConfig;
use funmatch_models::{Interpolation, LoadedModel, Mode, PretrainedCfg, ResNetV2};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::model_arg;

/// Arguments of `funmatch predict`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    /// Model: a folder, a weights file, a zoo name or a Hub id (owner/name[@revision]).
    pub model: String,
    /// Image files (decoded and preprocessed with the model's eval settings) or safetensors
    /// files holding `pixel_values` [N, 3, H, W] f32, already preprocessed.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// How many classes to show per input.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write all logits, [N, classes] f32 under the key `logits`, to this safetensors file.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Compute device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// One input's prediction.
#[derive(Debug, Serialize)]
struct Prediction {
    input: String,
    top: Vec<Class>,
}

#[derive(Debug, Serialize)]
struct Class {
    index: usize,
    label: Option<String>,
    probability: f32,
}

pub fn run(args: PredictArgs) -> anyhow::Result<()> {
    let device = model_arg::device(&args.device)?;
    let model = model_arg::load(&args.model, &device)?;
    let net = ResNetV2::new(&model.config, &model.params, Mode::Frozen)?;
    if let Some(out) = &args.output {
        refuse_to_overwrite_an_input(out, &args.inputs)?;
    }

    // Inputs in order: each image is one example, each tensor file N of them.
    let mut names = Vec::new();
    let mut logits = Vec::new();
    let mut images = Vec::new();
    let view = eval_view_config(&model.pretrained);
    for input in &args.inputs {
        if input.extension().is_some_and(|e| e == "safetensors") {
            let x = read_pixel_values(input, &model, &device)?;
            let n = x.dim(0)?;
            for chunk in 0..n.div_ceil(args.batch_size.max(1)) {
                let start = chunk * args.batch_size.max(1);
                let len = args.batch_size.max(1).min(n - start);
                logits.push(net.forward(&x.narrow(0, start, len)?)?);
            }
            names.extend((0..n).map(|i| format!("{}[{i}]", input.display())));
        } else {
            let pixels = funmatch_data::decode::decode_file(input)?;
            images.push((input.display().to_string(), eval_view(&pixels, &view)?));
            if images.len() == args.batch_size.max(1) {
                forward_images(&net, &view, &mut images, &mut names, &mut logits, &device)?;
            }
        }
    }
    forward_images(&net, &view, &mut images, &mut names, &mut logits, &device)?;
    let logits = Tensor::cat(&logits, 0)?.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;

    let predictions = top_k(&logits, &names, model.labels.as_deref(), args.top_k)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&predictions)?);
    } else {
        print_table(&predictions);
    }
    if let Some(out) = &args.output {
        let tensors = HashMap::from([("logits".to_string(), logits)]);
        candle_core::safetensors::save(&tensors, out)
            .with_context(|| format!("writing logits to {}", out.display()))?;
    }
    Ok(())
}

/// Runs the pending images (possibly fewer than a batch) and moves their names along.
fn forward_images(
    net: &ResNetV2,
    view: &ViewConfig,
    images: &mut Vec<(String, Vec<f32>)>,
    names: &mut Vec<String>,
    logits: &mut Vec<Tensor>,
    device: &Device,
) -> anyhow::Result<()> {
    if images.is_empty() {
        return Ok(());
    }
    let n = images.len();
    let data: Vec<f32> = images.iter().flat_map(|(_, v)| v.iter().copied()).collect();
    let shape = (n, 3, view.height as usize, view.width as usize);
    let x = Tensor::from_vec(data, shape, device)?;
    logits.push(net.forward(&x)?);
    names.extend(images.drain(..).map(|(name, _)| name));
    Ok(())
}

/// The eval view a model's preprocessing settings describe.
pub fn eval_view_config(pre: &PretrainedCfg) -> ViewConfig {
    let [_, h, w] = pre.input_size;
    let interpolation = match pre.interpolation {
        Interpolation::Bilinear => funmatch_data::Interpolation::Bilinear,
        Interpolation::Bicubic => funmatch_data::Interpolation::Bicubic,
    };
    ViewConfig::new(h as u32, w as u32)
        .with_interpolation(interpolation)
        .with_mean_std(pre.mean, pre.std)
        .with_crop_pct(pre.crop_pct as f32)
}

fn read_pixel_values(path: &Path, model: &LoadedModel, device: &Device) -> anyhow::Result<Tensor> {
    let tensors = candle_core::safetensors::load(path, &Device::Cpu)
        .with_context(|| format!("reading {}", path.display()))?;
    let Some(x) = tensors.get("pixel_values") else {
        let keys: Vec<_> = tensors.keys().collect();
        bail!("{}: no tensor `pixel_values` (found {keys:?})", path.display());
    };
    let chans = model.config.in_chans;
    match x.dims() {
        &[_, c, h, w] if c == chans && h > 0 && w > 0 => {}
        dims => bail!(
            "{}: pixel_values has shape {dims:?}, expected [N, {chans}, H, W]",
            path.display()
        ),
    }
    Ok(x.to_dtype(DType::F32)?.to_device(device)?)
}

fn refuse_to_overwrite_an_input(out: &Path, inputs: &[PathBuf]) -> anyhow::Result<()> {
    let out_abs = std::fs::canonicalize(out).ok();
    for input in inputs {
        if out_abs.is_some() && std::fs::canonicalize(input).ok() == out_abs {
            bail!("--output {} is also an input; refusing to overwrite it", out.display());
        }
    }
    Ok(())
}

fn top_k(
    logits: &Tensor,
    names: &[String],
    labels: Option<&[String]>,
    k: usize,
) -> anyhow::Result<Vec<Prediction>> {
    let probs = candle_nn::ops::softmax_last_dim(logits)?.to_vec2::<f32>()?;
    Ok(names
        .iter()
        .zip(probs)
        .map(|(name, p)| {
            let mut order: Vec<usize> = (0..p.len()).collect();
            order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
            let top = order
                .into_iter()
                .take(k)
                .map(|i| Class {
                    index: i,
                    label: labels.and_then(|l| l.get(i).cloned()),
                    probability: p[i],
                })
                .collect();
            Prediction { input: name.clone(), top }
        })
        .collect())
}

fn print_table(predictions: &[Prediction]) {
    for p in predictions {
        println!("{}", p.input);
        for (rank, c) in p.top.iter().enumerate() {
            let label = c.label.as_deref().unwrap_or("");
            println!("  {:>2}. {:>7.3}%  {:>5}  {label}", rank + 1, 100.0 * c.probability, c.index);
        }
    }
}
