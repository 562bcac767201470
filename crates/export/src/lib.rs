//! Exporting students as Hub-ready model folders.
//!
//! [`export`] writes a folder that the Hub, timm or transformers use as it is:
//! - timm layout: `model.safetensors` with timm's names and timm's `config.json`
//!   (`architecture`, `num_classes`, `model_args`, `pretrained_cfg`, `label_names`, plus our
//!   `funmatch` block for variants timm cannot express);
//! - transformers layout: `BitForImageClassification` names, `config.json` and
//!   `preprocessor_config.json`;
//! - and a `README.md` model card with YAML front matter, the recipe and the latest
//!   evaluation of the run that made the model.
//!
//! The folder is written next to its destination and renamed into place, then read back and
//! run: the logits must match the source model's, or the export fails.
//!
//! Errors and panics: bad input (an existing destination, a run folder without a model, a
//! model the chosen layout cannot express) returns an [`ExportError`] naming the path; panics
//! are for broken invariants only.

mod card;
mod transformers;

use candle_core::{DType, Device, Tensor};
use funmatch_models::{load_model, save_model_folder, LoadedModel, Mode, ModelError, ResNetV2};
use std::path::{Path, PathBuf};

pub use card::{read_run, RunInfo};
pub use transformers::transformers_blocker;

/// Everything that can go wrong exporting.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{}: already exists and is not empty; choose a new folder (nothing was written)", .0.display())]
    Exists(PathBuf),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {msg}", path.display())]
    Run { path: PathBuf, msg: String },
    #[error("the transformers layout cannot express this model: {0}")]
    NotExpressible(String),
    #[error("{}: reloaded logits differ from the source model by {diff:e} (allowed {allowed:e})", path.display())]
    Mismatch { path: PathBuf, diff: f32, allowed: f32 },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The folder layout to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Timm,
    Transformers,
}

/// Storage type of the exported weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightDtype {
    F32,
    F16,
    BF16,
}

/// What to export and how.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub format: Format,
    pub dtype: WeightDtype,
    /// The model's name in the card's title.
    pub name: String,
    /// What the card says about the run that made the model, when known.
    pub run: Option<RunInfo>,
}

/// What [`export`] wrote and checked.
#[derive(Debug, Clone)]
pub struct ExportReport {
    pub dir: PathBuf,
    /// Max |Δ logit| between the reloaded folder and the source model.
    pub max_logit_diff: f32,
    /// Whether timm can load the folder with `timm.create_model("hf-hub:…")`.
    pub timm_loadable: bool,
}

/// Writes `model` into the new folder `out` and checks that it reloads to the same logits.
pub fn export(
    model: &LoadedModel,
    out: &Path,
    opts: &ExportOptions,
) -> Result<ExportReport, ExportError> {
    refuse_existing(out)?;
    if opts.format == Format::Transformers {
        if let Some(why) = transformers_blocker(&model.config) {
            return Err(ExportError::NotExpressible(why));
        }
    }
    let params = cast(&model.params, opts.dtype)?;
    let timm_loadable = funmatch_models::timm_equivalent(&model.config).is_some();

    // Write beside the destination, then rename: a failure leaves no half-made folder.
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .map_err(|e| ExportError::Io { path: parent.into(), source: e })?;
    let staging = tempdir_in(parent, out)?;
    let labels = model.labels.as_deref();
    match opts.format {
        Format::Timm => {
            save_model_folder(&staging, &model.config, &model.pretrained, labels, &params)?
        }
        Format::Transformers => transformers::write_folder(&staging, model, &params)?,
    }
    let card = card::model_card(model, opts, timm_loadable);
    write(&staging.join("README.md"), &card)?;

    let max_logit_diff = match verify(model, &staging, opts.dtype) {
        Ok(diff) => diff,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    if out.exists() {
        // An empty folder the user made for us.
        std::fs::remove_dir(out).map_err(|e| ExportError::Io { path: out.into(), source: e })?;
    }
    std::fs::rename(&staging, out).map_err(|e| ExportError::Io { path: out.into(), source: e })?;
    Ok(ExportReport { dir: out.to_path_buf(), max_logit_diff, timm_loadable })
}

fn refuse_existing(out: &Path) -> Result<(), ExportError> {
    match std::fs::read_dir(out) {
        Ok(mut entries) => match entries.next() {
            Some(_) => Err(ExportError::Exists(out.into())),
            None => Ok(()),
        },
        Err(_) if out.exists() => Err(ExportError::Exists(out.into())),
        Err(_) => Ok(()),
    }
}

fn tempdir_in(parent: &Path, out: &Path) -> Result<PathBuf, ExportError> {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    for i in 0..1000 {
        let dir = parent.join(format!(".{name}.partial-{}-{i}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(ExportError::Io { path: dir, source: e }),
        }
    }
    Err(ExportError::Io {
        path: parent.into(),
        source: std::io::Error::other("no free staging name"),
    })
}

pub(crate) fn write(path: &Path, text: &str) -> Result<(), ExportError> {
    std::fs::write(path, text).map_err(|e| ExportError::Io { path: path.into(), source: e })
}

fn cast(
    params: &funmatch_models::Params,
    dtype: WeightDtype,
) -> Result<funmatch_models::Params, ExportError> {
    let dt = match dtype {
        WeightDtype::F32 => DType::F32,
        WeightDtype::F16 => DType::F16,
        WeightDtype::BF16 => DType::BF16,
    };
    Ok(params
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.to_dtype(dt)?)))
        .collect::<Result<_, candle_core::Error>>()?)
}

/// Reloads the written folder and compares its logits with the source's on a fixed input.
fn verify(model: &LoadedModel, dir: &Path, dtype: WeightDtype) -> Result<f32, ExportError> {
    let device = Device::Cpu;
    let reloaded = load_model(dir, &device)?;
    let [c, h, w] = model.pretrained.input_size;
    let x = fixed_input(2, c, h, w)?;
    let src = to_cpu_f32(&model.params)?;
    let expected = ResNetV2::new(&model.config, &src, Mode::Frozen)?.forward(&x)?;
    let got = ResNetV2::new(&reloaded.config, &reloaded.params, Mode::Frozen)?.forward(&x)?;
    let scale = max_abs(&expected)?.max(1e-6);
    let diff = max_abs(&(got - &expected)?)?;
    // f32 must round-trip exactly; half precision loses ~3 decimal digits per weight.
    let allowed = match dtype {
        WeightDtype::F32 => 1e-6 * scale,
        WeightDtype::F16 => 2e-2 * scale,
        WeightDtype::BF16 => 1e-1 * scale,
    };
    if diff > allowed {
        return Err(ExportError::Mismatch { path: dir.into(), diff, allowed });
    }
    Ok(diff)
}

fn to_cpu_f32(
    params: &funmatch_models::Params,
) -> Result<funmatch_models::Params, candle_core::Error> {
    params
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?)))
        .collect()
}

/// A deterministic input in [−1, 1], the same on every machine.
fn fixed_input(n: usize, c: usize, h: usize, w: usize) -> Result<Tensor, candle_core::Error> {
    let len = n * c * h * w;
    let values: Vec<f32> = (0..len).map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0).collect();
    Tensor::from_vec(values, (n, c, h, w), &Device::Cpu)
}

fn max_abs(t: &Tensor) -> Result<f32, candle_core::Error> {
    t.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
}
