//! Teachers: frozen models (one, or an ensemble whose logits are averaged), an optional
//! class map onto the data's classes, and the `fixed` variant's per-image output cache.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use funmatch_data::{Dataset, Loader, LoaderConfig, ViewConfig};
use funmatch_models::{load_model, LoadedModel, Mode, PretrainedCfg, ResNetV2};
use serde::{Deserialize, Serialize};

use crate::error::DistillError;

/// Turns a model argument (folder, weights file or Hub id) into a local path.
pub type ModelResolver = dyn Fn(&str) -> Result<PathBuf, String>;

/// Loads a model argument: a local path first, then the resolver (Hub ids).
pub fn load_model_arg(
    spec: &str,
    device: &Device,
    resolver: Option<&ModelResolver>,
) -> Result<LoadedModel, DistillError> {
    let local = Path::new(spec);
    let path = if local.exists() {
        local.to_path_buf()
    } else if let Some(resolve) = resolver {
        resolve(spec).map_err(|e| DistillError::Config(format!("model {spec:?}: {e}")))?
    } else {
        return Err(DistillError::Config(format!("model {spec:?}: no such file or folder")));
    };
    Ok(load_model(&path, device)?)
}

/// The frozen teacher (or ensemble).
///
/// Limitation: every member of an ensemble sees the same input, made with the first
/// member's preprocessing at `teacher.image_size` (BiT's global pooling accepts any size, so
/// a 384 px teacher runs at 224 px too, but not at its own resolution).
pub struct Teacher {
    members: Vec<ResNetV2>,
    /// Teacher class of each data class, when the class spaces differ.
    class_map: Option<Tensor>,
    /// Preprocessing of the first member (decides the teacher view).
    pub pretrained: PretrainedCfg,
    /// The model arguments, for messages and the fixed cache's identity.
    pub names: Vec<String>,
    /// Outputs per example (the data's classes).
    pub classes: usize,
}

impl Teacher {
    /// Loads every member in inference mode and checks its classes against the data's:
    /// equal counts, or a class map (`class_map` file path, empty for none).
    pub fn load(
        specs: &[String],
        class_map: &str,
        data_classes: &[String],
        device: &Device,
        resolver: Option<&ModelResolver>,
    ) -> Result<Teacher, DistillError> {
        if specs.is_empty() {
            return Err(DistillError::Config(
                "distillation needs at least one teacher (--teacher or teacher.models)".into(),
            ));
        }
        let mut members = Vec::new();
        let mut first: Option<LoadedModel> = None;
        for spec in specs {
            let loaded = load_model_arg(spec, device, resolver)?;
            let classes = loaded.config.num_classes;
            if let Some(f) = &first {
                if classes != f.config.num_classes {
                    return Err(DistillError::Config(format!(
                        "ensemble members disagree on classes: {} has {}, {} has {classes}",
                        specs[0], f.config.num_classes, spec
                    )));
                }
            } else if class_map.is_empty() && classes != data_classes.len() {
                return Err(DistillError::ClassCount {
                    teacher: spec.clone(),
                    teacher_classes: classes,
                    data_classes: data_classes.len(),
                });
            }
            members.push(ResNetV2::new(&loaded.config, &loaded.params, Mode::Frozen)?);
            if first.is_none() {
                first = Some(loaded);
            }
        }
        let first = first.expect("at least one member was loaded");

        let class_map = if class_map.is_empty() {
            None
        } else {
            let map = read_class_map(
                Path::new(class_map),
                data_classes.len(),
                first.config.num_classes,
                first.labels.as_deref(),
            )?;
            Some(Tensor::new(map.as_slice(), device)?)
        };
        tracing::debug!(members = members.len(), mapped = class_map.is_some(), "teacher ready");
        Ok(Teacher {
            members,
            class_map,
            pretrained: first.pretrained.clone(),
            names: specs.to_vec(),
            classes: data_classes.len(),
        })
    }

    /// Ensemble logits for the data's classes; no gradient graph is recorded.
    ///
    /// Shapes: `x` `[N, 3, H, W]` → `[N, classes]`.
    pub fn logits(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = x.detach();
        let mut sum = self.members[0].forward(&x)?;
        for m in &self.members[1..] {
            sum = (sum + m.forward(&x)?)?;
        }
        let mean = if self.members.len() > 1 { (sum / self.members.len() as f64)? } else { sum };
        let mapped = match &self.class_map {
            Some(map) => mean.index_select(map, 1)?,
            None => mean,
        };
        Ok(mapped.detach())
    }
}

/// Reads a class map: one line per data class, in order, holding the teacher's class index
/// or label name. Blank lines and `#` comments are skipped.
pub fn read_class_map(
    path: &Path,
    data_classes: usize,
    teacher_classes: usize,
    teacher_labels: Option<&[String]>,
) -> Result<Vec<u32>, DistillError> {
    let bad = |msg: String| DistillError::Config(format!("class map {}: {msg}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| DistillError::io(path, e))?;
    let mut map = Vec::new();
    for (lineno, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        let index = match entry.parse::<usize>() {
            Ok(i) => i,
            Err(_) => teacher_labels
                .and_then(|labels| labels.iter().position(|l| l == entry))
                .ok_or_else(|| {
                    bad(format!("line {}: {entry:?} is not a teacher class", lineno + 1))
                })?,
        };
        if index >= teacher_classes {
            return Err(bad(format!(
                "line {}: class {index} is out of range for a teacher of {teacher_classes}",
                lineno + 1
            )));
        }
        map.push(index as u32);
    }
    if map.len() != data_classes {
        return Err(bad(format!(
            "expected one entry per data class ({data_classes}), found {}",
            map.len()
        )));
    }
    Ok(map)
}

/// What a fixed-teacher cache was computed from; a cache is reused only when it matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CacheInfo {
    teachers: Vec<String>,
    examples: usize,
    classes: usize,
    height: u32,
    width: u32,
}

/// The `fixed` variant's teacher outputs: one row per training example, on the
/// deterministic eval view, computed once and kept in memory or read from the cache file.
pub struct FixedTargets {
    classes: usize,
    store: Store,
}

enum Store {
    Memory(Vec<f32>),
    Disk(File),
}

impl FixedTargets {
    /// File name of the cache in the run folder.
    pub const FILE: &'static str = "teacher-fixed.f32";

    /// Loads the cache in `dir` when it matches, else runs the teacher once over `dataset`
    /// and writes it. Returns the targets and the number of images the teacher saw.
    pub fn prepare(
        teacher: &Teacher,
        dataset: Arc<dyn Dataset>,
        view: &ViewConfig,
        batch_size: usize,
        device: &Device,
        dir: &Path,
        memory_limit_mib: usize,
    ) -> Result<(FixedTargets, u64), DistillError> {
        let info = CacheInfo {
            teachers: teacher.names.clone(),
            examples: dataset.len(),
            classes: teacher.classes,
            height: view.height,
            width: view.width,
        };
        let path = dir.join(Self::FILE);
        let info_path = dir.join("teacher-fixed.json");
        let existing: Option<CacheInfo> = std::fs::read_to_string(&info_path)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok());
        let bytes = 4 * info.examples as u64 * info.classes as u64;
        let usable = existing.as_ref() == Some(&info)
            && std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes);

        let mut seen = 0;
        if !usable {
            seen = compute_cache(teacher, dataset, view, batch_size, device, &path)?;
            let text = serde_json::to_string_pretty(&info).expect("cache info serialises");
            std::fs::write(&info_path, text).map_err(|e| DistillError::io(&info_path, e))?;
        } else {
            tracing::debug!(path = %path.display(), "reusing the fixed teacher outputs");
        }

        let file = File::open(&path).map_err(|e| DistillError::io(&path, e))?;
        let store = if bytes <= (memory_limit_mib as u64) << 20 {
            let mut raw = vec![0u8; bytes as usize];
            file.read_exact_at(&mut raw, 0).map_err(|e| DistillError::io(&path, e))?;
            Store::Memory(
                raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            )
        } else {
            Store::Disk(file)
        };
        Ok((FixedTargets { classes: info.classes, store }, seen))
    }

    /// The teacher logits of the given training examples, as `[len, classes]`.
    pub fn rows(&self, indices: &[usize], device: &Device) -> Result<Tensor, DistillError> {
        let c = self.classes;
        let mut out = vec![0f32; indices.len() * c];
        for (row, &i) in out.chunks_mut(c).zip(indices) {
            match &self.store {
                Store::Memory(v) => row.copy_from_slice(&v[i * c..(i + 1) * c]),
                Store::Disk(file) => {
                    let mut raw = vec![0u8; 4 * c];
                    file.read_exact_at(&mut raw, (4 * i * c) as u64).map_err(|e| {
                        DistillError::Io { path: PathBuf::from(Self::FILE), source: e }
                    })?;
                    for (v, b) in row.iter_mut().zip(raw.chunks_exact(4)) {
                        *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    }
                }
            }
        }
        Ok(Tensor::from_vec(out, (indices.len(), c), device)?)
    }
}

/// Runs the teacher over every example's eval view and writes the logits in dataset order
/// (temporary file, then rename). Returns the number of images seen.
fn compute_cache(
    teacher: &Teacher,
    dataset: Arc<dyn Dataset>,
    view: &ViewConfig,
    batch_size: usize,
    device: &Device,
    path: &Path,
) -> Result<u64, DistillError> {
    let n = dataset.len();
    let loader = Loader::new(dataset, LoaderConfig::eval(batch_size, view.clone()))?;
    let tmp = path.with_extension("f32.tmp");
    let mut file = File::create(&tmp).map_err(|e| DistillError::io(&tmp, e))?;
    let mut rows = vec![0f32; n * teacher.classes];
    let mut seen = 0u64;
    for batch in loader.epoch(0) {
        let batch = batch?;
        let x = images_tensor(&batch.student, device)?;
        let logits: Vec<f32> = teacher.logits(&x)?.flatten_all()?.to_vec1()?;
        seen += batch.len() as u64;
        for (row, &i) in logits.chunks(teacher.classes).zip(&batch.indices) {
            rows[i * teacher.classes..(i + 1) * teacher.classes].copy_from_slice(row);
        }
    }
    let bytes: Vec<u8> = rows.iter().flat_map(|v| v.to_le_bytes()).collect();
    file.write_all(&bytes).and_then(|_| file.sync_all()).map_err(|e| DistillError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| DistillError::io(path, e))?;
    Ok(seen)
}

/// A batch's images as an `[N, C, H, W]` tensor on `device`.
pub fn images_tensor(
    images: &funmatch_data::Images,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let [n, c, h, w] = images.shape();
    Tensor::from_slice(&images.data, (n, c, h, w), device)
}
