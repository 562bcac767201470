//! Labels for the flat ImageNet val layout (`ILSVRC2012_val_%08d.JPEG` in one folder).
//!
//! Accepted ground-truth forms, looked for in this order in each searched folder:
//!
//! 1. `LOC_val_solution.csv` (the Kaggle release): `ImageId,PredictionString`, the first
//!    token of the prediction string being the wnid.
//! 2. `ILSVRC2012_validation_ground_truth.txt` (the devkit): one ILSVRC id (1…1000) per
//!    line, line k for file k, with the devkit's `meta.mat` next to it, whose `synsets`
//!    struct maps `ILSVRC2012_ID` to `WNID`.
//! 3. `val.txt` (Caffe's `caffe_ilsvrc12` release, and similar lists):
//!    `ILSVRC2012_val_00000001.JPEG <label>` per line, the label being a wnid or a class
//!    index 0…999 in sorted-wnid order.
//!
//! Searched folders: `--devkit DIR` when given, else the image folder and its parent; in
//! each, the folder itself, then `ILSVRC2012_devkit_t12/data/` and `data/`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use funmatch_data::{imagenet, FileDataset};

use crate::labels::{is_wnid, ClassTable};
use crate::{mat5, EvalError};

const LOC_SOLUTION: &str = "LOC_val_solution.csv";
const DEVKIT_TRUTH: &str = "ILSVRC2012_validation_ground_truth.txt";
const META: &str = "meta.mat";
const LIST: &str = "val.txt";

/// The ground truth that was found, for the log and for messages.
#[derive(Clone, Debug, PartialEq)]
pub enum GroundTruth {
    /// Kaggle's `LOC_val_solution.csv`.
    LocSolution(PathBuf),
    /// The devkit's id file and its `meta.mat`.
    Devkit {
        /// `ILSVRC2012_validation_ground_truth.txt`.
        truth: PathBuf,
        /// `meta.mat`.
        meta: PathBuf,
    },
    /// A `file label` list.
    List(PathBuf),
}

/// Folders searched for the ground truth of the images in `dir`.
pub fn search_dirs(dir: &Path, devkit: Option<&Path>) -> Vec<PathBuf> {
    let bases: Vec<PathBuf> = match devkit {
        Some(d) => vec![d.to_path_buf()],
        None => [Some(dir), dir.parent()].into_iter().flatten().map(Path::to_path_buf).collect(),
    };
    let mut out = Vec::new();
    for base in bases {
        for sub in ["", "ILSVRC2012_devkit_t12/data", "data"] {
            out.push(if sub.is_empty() { base.clone() } else { base.join(sub) });
        }
    }
    out
}

/// Finds the first accepted ground truth in `search_dirs(dir, devkit)`.
pub fn find_ground_truth(dir: &Path, devkit: Option<&Path>) -> Result<GroundTruth, EvalError> {
    let dirs = search_dirs(dir, devkit);
    for d in &dirs {
        if d.join(LOC_SOLUTION).is_file() {
            return Ok(GroundTruth::LocSolution(d.join(LOC_SOLUTION)));
        }
        if d.join(DEVKIT_TRUTH).is_file() {
            let meta = dirs.iter().map(|m| m.join(META)).find(|m| m.is_file());
            let meta = meta.ok_or_else(|| {
                EvalError::labels(
                    d.join(DEVKIT_TRUTH),
                    format!(
                        "the ILSVRC ids need the devkit's {META} to map them to wnids; not found in {}",
                        list_dirs(&dirs)
                    ),
                )
            })?;
            return Ok(GroundTruth::Devkit { truth: d.join(DEVKIT_TRUTH), meta });
        }
        if d.join(LIST).is_file() {
            return Ok(GroundTruth::List(d.join(LIST)));
        }
    }
    Err(EvalError::labels(
        dir,
        format!(
            "flat val images need ground truth ({LOC_SOLUTION}, {DEVKIT_TRUTH} with {META}, or {LIST}); none in {} (--devkit DIR names the folder)",
            list_dirs(&dirs)
        ),
    ))
}

fn list_dirs(dirs: &[PathBuf]) -> String {
    dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// The flat val images in `dir` with labels from the ground truth found for them.
pub fn flat_val(
    dir: &Path,
    devkit: Option<&Path>,
    classes: &ClassTable,
) -> Result<(FileDataset, GroundTruth), EvalError> {
    let truth = find_ground_truth(dir, devkit)?;
    tracing::debug!(?truth, dir = %dir.display(), "flat val ground truth");
    let dataset = match &truth {
        GroundTruth::Devkit { truth: ids, meta } => {
            let id_to_index = meta_id_to_index(meta, classes)?;
            imagenet::flat_val(dir, ids, &id_to_index, classes.names.clone())?
        }
        GroundTruth::LocSolution(path) => {
            let labels = read_loc_solution(path, classes)?;
            labelled_files(dir, path, &labels, classes)?
        }
        GroundTruth::List(path) => {
            let labels = read_list(path, classes)?;
            labelled_files(dir, path, &labels, classes)?
        }
    };
    Ok((dataset, truth))
}

/// `meta.mat` → for ILSVRC id `i` (1-based), the class index at position `i − 1`.
pub fn meta_id_to_index(meta: &Path, classes: &ClassTable) -> Result<Vec<u32>, EvalError> {
    let bytes = std::fs::read(meta).map_err(|e| EvalError::io(meta, e))?;
    let vars = mat5::read(&bytes).map_err(|m| EvalError::labels(meta, m))?;
    let Some((_, mat5::MatValue::Struct { fields, elements })) =
        vars.iter().find(|(name, _)| name == "synsets")
    else {
        let names: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
        return Err(EvalError::labels(
            meta,
            format!("expected a struct variable `synsets`, found variables {names:?}"),
        ));
    };
    let field = |name: &str| {
        fields.iter().position(|f| f == name).ok_or_else(|| {
            EvalError::labels(meta, format!("`synsets` has no field {name}; fields: {fields:?}"))
        })
    };
    let (id_field, wnid_field) = (field("ILSVRC2012_ID")?, field("WNID")?);

    let n = classes.wnids.len();
    let mut table = vec![None; n];
    for element in elements {
        let id = element[id_field].as_number().unwrap_or(0.0) as usize;
        // Ids above the class count are the hierarchy's inner nodes.
        if id == 0 || id > n {
            continue;
        }
        let wnid = element[wnid_field].as_str().unwrap_or_default();
        let index = classes.index.get(wnid).ok_or_else(|| {
            EvalError::labels(
                meta,
                format!("ILSVRC id {id} has wnid {wnid:?}, not a class of the set"),
            )
        })?;
        table[id - 1] = Some(*index);
    }
    table
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.ok_or_else(|| {
                EvalError::labels(meta, format!("no synset with ILSVRC2012_ID {}", i + 1))
            })
        })
        .collect()
}

/// `ImageId,PredictionString` → file stem → class index.
fn read_loc_solution(path: &Path, classes: &ClassTable) -> Result<HashMap<String, u32>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
    let mut labels = HashMap::new();
    for (number, line) in text.lines().enumerate().skip(1).filter(|(_, l)| !l.trim().is_empty()) {
        let bad = |what: &str| {
            EvalError::labels(path, format!("line {}: {what}, found {line:?}", number + 1))
        };
        let (image, prediction) =
            line.split_once(',').ok_or_else(|| bad("expected `ImageId,PredictionString`"))?;
        let wnid = prediction.split_whitespace().next().unwrap_or_default();
        let index =
            classes.index.get(wnid).ok_or_else(|| bad("expected a wnid of the set first"))?;
        labels.insert(image.trim().to_string(), *index);
    }
    Ok(labels)
}

/// `file label` lines (label: wnid or class index) → file stem → class index.
fn read_list(path: &Path, classes: &ClassTable) -> Result<HashMap<String, u32>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
    let mut labels = HashMap::new();
    for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = |what: String| {
            EvalError::labels(path, format!("line {}: {what}, found {line:?}", number + 1))
        };
        let mut parts = line.split_whitespace();
        let (Some(file), Some(label)) = (parts.next(), parts.next()) else {
            return Err(bad("expected `ILSVRC2012_val_%08d.JPEG <label>`".into()));
        };
        let index = if is_wnid(label) {
            classes.index.get(label).copied()
        } else {
            label.parse::<u32>().ok().filter(|&i| (i as usize) < classes.wnids.len())
        };
        let index = index.ok_or_else(|| {
            bad(format!("expected a wnid or a class index below {}", classes.wnids.len()))
        })?;
        labels.insert(stem(file).to_string(), index);
    }
    Ok(labels)
}

/// The `ILSVRC2012_val_*.JPEG` files of `dir` in file-number order, labelled through
/// `labels` (keyed by file stem); a file without a label is an error.
fn labelled_files(
    dir: &Path,
    truth: &Path,
    labels: &HashMap<String, u32>,
    classes: &ClassTable,
) -> Result<FileDataset, EvalError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| EvalError::io(dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| val_number(p).is_some())
        .collect();
    files.sort_by_key(|p| val_number(p));

    let mut file_labels = Vec::with_capacity(files.len());
    for file in &files {
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        let label = labels.get(stem(&name)).ok_or_else(|| {
            EvalError::labels(truth, format!("has no label for {}", file.display()))
        })?;
        file_labels.push(*label);
    }
    Ok(FileDataset::from_parts(files, file_labels, classes.names.clone())?)
}

fn stem(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(s, _)| s)
}

/// `…/ILSVRC2012_val_00000042.JPEG` (any extension, any folder) → 42.
pub fn val_number(path: &Path) -> Option<u32> {
    let name = path.file_name()?.to_str()?;
    let digits = stem(name).strip_prefix("ILSVRC2012_val_")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&n| n > 0)
}
