//! Datasets named in a configuration, the held-out split, and model input views.

use std::path::Path;
use std::sync::Arc;

use funmatch_data::{
    fashion_mnist, split, Dataset, FileDataset, Interpolation, MnistSplit, ViewConfig,
    FASHION_MNIST_DIR,
};
use funmatch_models::PretrainedCfg;

use crate::config::DataConfig;
use crate::error::DistillError;

/// The training set and the held-out set of a run.
pub struct RunData {
    /// Training examples.
    pub train: Arc<dyn Dataset>,
    /// Held-out examples, if any.
    pub eval: Option<Arc<dyn Dataset>>,
}

/// Opens a dataset named as in [`DataConfig::train`]: `fashion-mnist[:train|:test][:DIR]` or
/// a folder of class folders.
pub fn open_dataset(spec: &str) -> Result<Arc<dyn Dataset>, DistillError> {
    if let Some(rest) = spec.strip_prefix("fashion-mnist") {
        let mut parts = rest.strip_prefix(':').unwrap_or(rest).splitn(2, ':');
        let half = match parts.next().unwrap_or("") {
            "" | "train" => MnistSplit::Train,
            "test" => MnistSplit::Test,
            other => {
                return Err(DistillError::Config(format!(
                    "dataset {spec:?}: expected fashion-mnist:train or fashion-mnist:test, \
                     found {other:?}"
                )))
            }
        };
        let root = parts.next().filter(|r| !r.is_empty()).unwrap_or(FASHION_MNIST_DIR);
        return Ok(Arc::new(fashion_mnist(Path::new(root), half)?));
    }
    let path = Path::new(spec);
    if !path.is_dir() {
        return Err(DistillError::Config(format!(
            "dataset {spec:?} is neither fashion-mnist[:train|:test][:DIR] nor a folder of class \
             folders"
        )));
    }
    Ok(Arc::new(FileDataset::image_folder(path)?))
}

/// Opens the training and held-out sets, applying the split and the size limits.
pub fn open_run_data(config: &DataConfig, seed: u64) -> Result<RunData, DistillError> {
    let full = open_dataset(&config.train)?;
    let (train, eval) = match config.eval.as_str() {
        "none" => (full, None),
        "split" if config.held_out > 0.0 => {
            let (train, held) = split(full, config.held_out, seed)?;
            (Arc::new(train) as Arc<dyn Dataset>, Some(Arc::new(held) as Arc<dyn Dataset>))
        }
        "split" => (full, None),
        other => (full, Some(open_dataset(other)?)),
    };
    let train = limit(train, config.limit, seed)?;
    let eval = eval.map(|e| limit(e, config.eval_limit, seed)).transpose()?;
    if train.is_empty() {
        return Err(DistillError::Config(format!("the training set {:?} is empty", config.train)));
    }
    if let Some(e) = &eval {
        if e.class_names() != train.class_names() {
            return Err(DistillError::Config(format!(
                "held-out set {:?} has classes {:?}, the training set {:?}",
                config.eval,
                e.class_names(),
                train.class_names()
            )));
        }
    }
    Ok(RunData { train, eval: eval.filter(|e| !e.is_empty()) })
}

/// About `n` examples of `dataset`, stratified by class; all of them when `n` is 0 or at
/// least the size.
fn limit(dataset: Arc<dyn Dataset>, n: usize, seed: u64) -> Result<Arc<dyn Dataset>, DistillError> {
    if n == 0 || n >= dataset.len() {
        return Ok(dataset);
    }
    let share = n as f64 / dataset.len() as f64;
    // A seed of its own, so that the subset does not line up with the held-out split.
    let (_, kept) = split(dataset, share, seed ^ 0x05EE_D0F5_AB5E_7000_u64)?;
    Ok(Arc::new(kept))
}

/// The input view of a model with preprocessing `cfg` at `size` pixels (0 = its own).
pub fn view_for(cfg: &PretrainedCfg, size: u32) -> ViewConfig {
    let [_, h, w] = cfg.input_size;
    let (h, w) = if size > 0 { (size, size) } else { (h as u32, w as u32) };
    let interpolation = match cfg.interpolation {
        funmatch_models::Interpolation::Bilinear => Interpolation::Bilinear,
        funmatch_models::Interpolation::Bicubic => Interpolation::Bicubic,
    };
    ViewConfig::new(h, w)
        .with_interpolation(interpolation)
        .with_mean_std(cfg.mean, cfg.std)
        .with_crop_pct(cfg.crop_pct as f32)
}
