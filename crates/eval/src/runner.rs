//! Running a model over a set: preprocessing from the model's config, batched inference on
//! the loader's parallel decoding, metrics, throughput.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use funmatch_data::{FailureReport, Images, Interpolation, Loader, LoaderConfig, ViewConfig};
use funmatch_models::{load_model, LoadedModel, Mode, ResNetV2};

use crate::metrics::{Metrics, Tally};
use crate::progress::{Progress, ProgressMode};
use crate::sets::EvalSet;
use crate::EvalError;

/// Overrides of a model's own preprocessing (`--img-size`, `--crop-pct`, …); `None` keeps
/// the model's value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Preprocess {
    /// Square input size in pixels.
    pub img_size: Option<u32>,
    /// Eval crop share: the short side is resized to `size / crop_pct`, then centre-cropped.
    pub crop_pct: Option<f32>,
    /// Resampling filter.
    pub interpolation: Option<Interpolation>,
    /// Per-channel mean of pixels in `[0, 1]`.
    pub mean: Option<[f32; 3]>,
    /// Per-channel standard deviation.
    pub std: Option<[f32; 3]>,
}

/// A model ready for evaluation.
pub struct EvalModel {
    /// The name shown in tables (the command-line argument).
    pub name: String,
    /// Where it was loaded from.
    pub path: PathBuf,
    /// The network, frozen.
    pub net: ResNetV2,
    /// Outputs.
    pub num_classes: usize,
    /// The eval view: the model's preprocessing with the overrides applied.
    pub view: ViewConfig,
    /// Number of parameters.
    pub param_count: usize,
    device: Device,
}

impl EvalModel {
    /// Loads the model folder or weights file at `path`.
    pub fn load(
        name: &str,
        path: &Path,
        device: &Device,
        pre: &Preprocess,
    ) -> Result<EvalModel, EvalError> {
        let loaded = load_model(path, device)?;
        EvalModel::from_loaded(name, path, loaded, device, pre)
    }

    /// Builds the network of an already loaded model.
    pub fn from_loaded(
        name: &str,
        path: &Path,
        loaded: LoadedModel,
        device: &Device,
        pre: &Preprocess,
    ) -> Result<EvalModel, EvalError> {
        let forward = |source| EvalError::Forward { model: name.to_string(), source };
        if loaded.config.in_chans != 3 {
            return Err(EvalError::ModelMismatch {
                model: name.to_string(),
                set: "any set".into(),
                message: format!(
                    "expected 3 input channels (RGB), found {}",
                    loaded.config.in_chans
                ),
            });
        }
        let net = ResNetV2::new(&loaded.config, &loaded.params, Mode::Frozen).map_err(forward)?;
        let param_count = loaded.params.values().map(Tensor::elem_count).sum();

        let p = &loaded.pretrained;
        let mut view = ViewConfig::new(p.input_size[1] as u32, p.input_size[2] as u32)
            .with_crop_pct(p.crop_pct as f32)
            .with_mean_std(p.mean, p.std)
            .with_interpolation(match p.interpolation {
                funmatch_models::Interpolation::Bilinear => Interpolation::Bilinear,
                funmatch_models::Interpolation::Bicubic => Interpolation::Bicubic,
            });
        if let Some(size) = pre.img_size {
            view.height = size;
            view.width = size;
        }
        if let Some(c) = pre.crop_pct {
            view.crop_pct = c;
        }
        if let Some(i) = pre.interpolation {
            view.interpolation = i;
        }
        if let Some(m) = pre.mean {
            view.mean = m;
        }
        if let Some(s) = pre.std {
            view.std = s;
        }
        view.validate(name)?;
        tracing::debug!(model = name, ?view, param_count, "model ready");

        Ok(EvalModel {
            name: name.to_string(),
            path: path.to_path_buf(),
            num_classes: loaded.config.num_classes,
            net,
            view,
            param_count,
            device: device.clone(),
        })
    }

    /// Logits of a batch, row-major `n × num_classes`.
    pub fn logits(&self, images: &Images) -> Result<Vec<f32>, EvalError> {
        let forward = |source| EvalError::Forward { model: self.name.clone(), source };
        let x = Tensor::from_slice(&images.data, images.shape().to_vec(), &self.device)
            .map_err(forward)?;
        let y = self.net.forward(&x).map_err(forward)?;
        y.to_dtype(DType::F32)
            .and_then(|y| y.flatten_all())
            .and_then(|y| y.to_vec1::<f32>())
            .map_err(forward)
    }

    fn check_fits(&self, set: &EvalSet) -> Result<(), EvalError> {
        if self.num_classes != set.scoring.num_classes {
            return Err(EvalError::ModelMismatch {
                model: self.name.clone(),
                set: set.name().to_string(),
                message: format!(
                    "the set is scored on {} classes, the model has {} outputs",
                    set.scoring.num_classes, self.num_classes
                ),
            });
        }
        Ok(())
    }
}

/// How runs are carried out.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Images per forward pass (default 64).
    pub batch_size: usize,
    /// Decode threads; 0 = rayon's global pool (default).
    pub workers: usize,
    /// Progress display (default: a bar on a terminal, lines otherwise).
    pub progress: ProgressMode,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { batch_size: 64, workers: 0, progress: ProgressMode::Auto }
    }
}

/// A teacher's logits on a set, by dataset index, for agreement metrics.
#[derive(Clone, Debug)]
pub struct Outputs {
    classes: usize,
    rows: Vec<f32>,
    present: Vec<bool>,
}

impl Outputs {
    fn new(len: usize, classes: usize) -> Outputs {
        Outputs { classes, rows: vec![0.0; len * classes], present: vec![false; len] }
    }

    /// The logits of example `index`, if it was read.
    pub fn row(&self, index: usize) -> Option<&[f32]> {
        let present = *self.present.get(index)?;
        present.then(|| &self.rows[index * self.classes..(index + 1) * self.classes])
    }
}

/// The outcome of one model on one set.
#[derive(Clone, Debug)]
pub struct SetRun {
    /// Accuracy, loss, agreement.
    pub metrics: Metrics,
    /// Wall time of the run (decoding and inference).
    pub seconds: f64,
    /// Images processed per second, decoding included.
    pub images_per_s: f64,
    /// Images that could not be read (skipped).
    pub failures: FailureReport,
    /// The model's logits, when asked for (to serve as a teacher).
    pub outputs: Option<Outputs>,
}

/// Runs `model` over `set`; with `teacher`, also measures agreement with it. With
/// `keep_outputs`, returns the logits for later use as a teacher.
///
/// Images that cannot be decoded are skipped and reported in [`SetRun::failures`]; the run
/// fails only when none can be read.
pub fn evaluate(
    model: &EvalModel,
    set: &EvalSet,
    teacher: Option<&Outputs>,
    opts: &RunOptions,
    keep_outputs: bool,
) -> Result<SetRun, EvalError> {
    model.check_fits(set)?;
    let mut config = LoaderConfig::eval(opts.batch_size.max(1), model.view.clone());
    config.workers = opts.workers;
    // Unreadable images are reported, never a reason to stop (see below for "all of them").
    config.max_failed_share = 1.0;
    let loader = Loader::new(Arc::clone(&set.dataset), config)?;

    let total = set.dataset.len();
    let label = format!("{} on {}", model.name, set.name());
    let mut progress = Progress::start(opts.progress, &label, total as u64);
    let mut tally = Tally::new(set.scoring.columns.clone());
    let mut outputs = keep_outputs.then(|| Outputs::new(total, model.num_classes));
    let started = Instant::now();
    let mut done = 0u64;

    for batch in loader.epoch(0) {
        let batch = batch?;
        done += batch.len() as u64;
        if batch.is_empty() {
            progress.update(done);
            continue;
        }
        let logits = model.logits(&batch.student)?;
        let c = model.num_classes;
        for (k, (&index, &y)) in batch.indices.iter().zip(&batch.labels).enumerate() {
            let row = &logits[k * c..(k + 1) * c];
            let real = set.scoring.real.as_ref().map(|r| r[index].as_slice());
            let t = teacher.and_then(|t| t.row(index));
            if !tally.add(row, y, real, t) {
                return Err(EvalError::Layout {
                    set: set.name().to_string(),
                    root: set.dir.clone(),
                    expected: "images of the scored classes only".into(),
                    found: format!("{} with class {y}", set.dataset.describe(index)),
                });
            }
            if let Some(out) = outputs.as_mut() {
                out.rows[index * c..(index + 1) * c].copy_from_slice(row);
                out.present[index] = true;
            }
        }
        progress.update(done);
    }

    let seconds = started.elapsed().as_secs_f64();
    let failures = loader.failure_report();
    let metrics = tally.metrics(teacher.is_some());
    let images_per_s = done as f64 / seconds.max(1e-9);
    progress.finish(&format!(
        "top-1 {:.3} %, {} images, {:.1} images/s, {} unreadable",
        metrics.top1,
        metrics.images,
        images_per_s,
        failures.failures.len()
    ));
    if metrics.images + metrics.excluded == 0 && !failures.failures.is_empty() {
        return Err(EvalError::Config(format!("{label}: no image could be read; {failures}")));
    }
    Ok(SetRun { metrics, seconds, images_per_s, failures, outputs })
}
