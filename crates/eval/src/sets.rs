//! Opening an eval set: finding its folder, checking its layout, labels and scoring rules.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use funmatch_data::{fashion_mnist, imagenet, Dataset, FileDataset, MnistSplit, Subset};

use crate::descriptor::{Layout, SetDescriptor};
use crate::devkit;
use crate::labels::ClassTable;
use crate::layout::Inspection;
use crate::EvalError;

/// The environment variable naming a folder under which every set's `data_dirs` are tried.
pub const DATA_ENV: &str = "FUNMATCH_DATA";

/// Where to look for a set's data.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// The set's folder (`--root`); overrides the environment.
    pub root: Option<PathBuf>,
    /// A folder holding several sets (`--data`, else `FUNMATCH_DATA`).
    pub data_dir: Option<PathBuf>,
    /// Where the devkit ground truth of the flat val layout lives (`--devkit`).
    pub devkit: Option<PathBuf>,
    /// Keep only the first `limit` images (after any class filter), for quick runs.
    pub limit: Option<usize>,
}

/// How a set's predictions are scored.
#[derive(Clone, Debug)]
pub struct Scoring {
    /// Outputs the model must have.
    pub num_classes: usize,
    /// The only columns scored (ImageNet-A/-R), in increasing class order.
    pub columns: Option<Vec<u32>>,
    /// ReaL label lists by dataset index; an empty list leaves the image out.
    pub real: Option<Vec<Vec<u32>>>,
}

/// An opened set, ready for the loader.
#[derive(Clone)]
pub struct EvalSet {
    /// Its descriptor.
    pub descriptor: SetDescriptor,
    /// The folder the images were read from.
    pub dir: PathBuf,
    /// The layout found there.
    pub layout: Layout,
    /// The images and labels, in a fixed order.
    pub dataset: Arc<dyn Dataset>,
    /// How predictions are scored.
    pub scoring: Scoring,
    /// What the set's label files and ground truth were (for the log).
    pub notes: Vec<String>,
}

impl EvalSet {
    /// The set's name.
    pub fn name(&self) -> &str {
        &self.descriptor.name
    }

    /// Opens the set described by `desc`, looking for its folder as `opts` and `env` say.
    ///
    /// `env` looks up an environment variable (tests pass their own).
    pub fn open(
        desc: &SetDescriptor,
        opts: &OpenOptions,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<EvalSet, EvalError> {
        let roots = candidate_roots(desc, opts, env)?;
        let (dir, layout) = detect_layout(desc, &roots)?;
        tracing::debug!(set = %desc.name, dir = %dir.display(), ?layout, "eval set layout");

        let mut notes = Vec::new();
        let table = match desc.classes {
            Some(_) => Some(ClassTable::load(desc)?),
            None => None,
        };
        let columns = match &table {
            Some(t) => t.subset(desc)?,
            None => None,
        };
        let mut dataset =
            read_layout(desc, &dir, layout, table.as_ref(), columns.as_deref(), opts, &mut notes)?;

        let labels_in_range =
            (0..dataset.len()).all(|i| (dataset.label(i) as usize) < desc.num_classes);
        if !labels_in_range {
            let max = (0..dataset.len()).map(|i| dataset.label(i)).max().unwrap_or(0);
            return Err(EvalError::Layout {
                set: desc.name.clone(),
                root: dir,
                expected: format!("labels below num_classes = {}", desc.num_classes),
                found: format!("label {max}"),
            });
        }

        // The "-clean" sets keep only the images of the subset's classes.
        if let (true, Some(cols)) = (desc.keep_subset_only, &columns) {
            let keep: HashSet<u32> = cols.iter().copied().collect();
            let indices =
                (0..dataset.len()).filter(|&i| keep.contains(&dataset.label(i))).collect();
            dataset = Arc::new(Subset::new(dataset, indices)?);
        }
        if let Some(limit) = opts.limit.filter(|&l| l < dataset.len()) {
            dataset = Arc::new(Subset::new(dataset, (0..limit).collect())?);
        }
        if dataset.is_empty() {
            return Err(EvalError::Layout {
                set: desc.name.clone(),
                root: dir,
                expected: "at least one image of the set's classes".into(),
                found: "none".into(),
            });
        }

        let real = match desc.real_labels.is_empty() {
            true => None,
            false => Some(real_labels(desc, &dir, dataset.as_ref(), &mut notes)?),
        };
        if let Some(expected) = desc.expected_images.filter(|&e| e != dataset.len()) {
            if opts.limit.is_none() {
                tracing::warn!(
                    set = %desc.name,
                    expected,
                    found = dataset.len(),
                    dir = %dir.display(),
                    "the set has another number of images than the full release"
                );
            }
        }
        let scoring = Scoring { num_classes: desc.num_classes, columns, real };
        Ok(EvalSet { descriptor: desc.clone(), dir, layout, dataset, scoring, notes })
    }
}

/// The folders that may hold the set, best first: `--root`, the environment, the data folder,
/// the descriptor's default.
fn candidate_roots(
    desc: &SetDescriptor,
    opts: &OpenOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<PathBuf>, EvalError> {
    if let Some(root) = &opts.root {
        return Ok(vec![root.clone()]);
    }
    for var in &desc.root_env {
        if let Some(value) = env(var).filter(|v| !v.is_empty()) {
            tracing::debug!(set = %desc.name, var, value, "set folder from the environment");
            return Ok(vec![PathBuf::from(value)]);
        }
    }
    let data_dir = opts
        .data_dir
        .clone()
        .or_else(|| env(DATA_ENV).filter(|v| !v.is_empty()).map(PathBuf::from));
    if let Some(base) = &data_dir {
        let found: Vec<PathBuf> =
            desc.data_dirs.iter().map(|d| base.join(d)).filter(|p| p.is_dir()).collect();
        if !found.is_empty() {
            return Ok(found);
        }
    }
    if let Some(default) = &desc.default_root {
        return Ok(vec![default.clone()]);
    }

    let mut ways = vec!["pass --root DIR".to_string()];
    if !desc.root_env.is_empty() {
        ways.push(format!("set {}", desc.root_env.join(" or ")));
    }
    let mut hint = ways.join(", or ");
    if !desc.data_dirs.is_empty() {
        let looked = match &data_dir {
            Some(base) => {
                format!(" (looked in {} for {})", base.display(), desc.data_dirs.join(", "))
            }
            None => String::new(),
        };
        hint.push_str(&format!(
            ", or set {DATA_ENV} to a folder holding {}{looked}",
            desc.data_dirs.join(" or ")
        ));
    }
    Err(EvalError::NoRoot { set: desc.name.clone(), hint })
}

/// The first (root × subdir) folder whose content is in one of the set's layouts.
fn detect_layout(desc: &SetDescriptor, roots: &[PathBuf]) -> Result<(PathBuf, Layout), EvalError> {
    let mut seen = Vec::new();
    for root in roots {
        for sub in &desc.subdirs {
            let dir = if sub.is_empty() { root.clone() } else { root.join(sub) };
            let found = Inspection::of(&dir);
            if let Some(layout) = desc.layouts.iter().copied().find(|&l| found.matches(l)) {
                return Ok((dir, layout));
            }
            // A sub-folder that does not exist is not worth reporting unless nothing exists.
            if found.exists || (sub.is_empty() && seen.is_empty()) {
                seen.push(found.describe());
            }
        }
    }
    let expected = desc.layouts.iter().map(|l| l.describe()).collect::<Vec<_>>().join(" or ");
    Err(EvalError::Layout {
        set: desc.name.clone(),
        root: roots.first().cloned().unwrap_or_default(),
        expected,
        found: seen.join("; "),
    })
}

fn read_layout(
    desc: &SetDescriptor,
    dir: &Path,
    layout: Layout,
    table: Option<&ClassTable>,
    columns: Option<&[u32]>,
    opts: &OpenOptions,
    notes: &mut Vec<String>,
) -> Result<Arc<dyn Dataset>, EvalError> {
    let need_table = || {
        table.ok_or_else(|| EvalError::Descriptor {
            path: desc.name.clone(),
            message: format!("layout {layout:?} needs a `classes` file"),
        })
    };
    let dataset: Arc<dyn Dataset> = match layout {
        Layout::SynsetFolders => {
            let table = need_table()?;
            // A/R hold only their subset's folders: a map restricted to it rejects others.
            let map = match (columns, desc.keep_subset_only) {
                (Some(cols), false) => {
                    cols.iter().map(|&c| (table.wnids[c as usize].clone(), c)).collect()
                }
                _ => table.index.clone(),
            };
            let data = imagenet::wnid_folders(dir, Some(&map))?;
            Arc::new(data.with_class_names(table.names.clone())?)
        }
        Layout::FlatVal => {
            let (data, truth) = devkit::flat_val(dir, opts.devkit.as_deref(), need_table()?)?;
            notes.push(format!("ground truth: {truth:?}"));
            Arc::new(data)
        }
        Layout::NumericFolders => {
            let data = imagenet::numeric_folders(dir)?;
            match table {
                Some(t) => Arc::new(data.with_class_names(t.names.clone())?),
                None => Arc::new(data),
            }
        }
        Layout::Idx => Arc::new(fashion_mnist(dir, MnistSplit::Test)?),
        Layout::ClassFolders => Arc::new(FileDataset::image_folder(dir)?),
    };
    Ok(dataset)
}

/// The ReaL label list of every example, found through its val file number.
fn real_labels(
    desc: &SetDescriptor,
    dir: &Path,
    dataset: &dyn Dataset,
    notes: &mut Vec<String>,
) -> Result<Vec<Vec<u32>>, EvalError> {
    let (text, path) = find_real_file(desc, dir)?;
    notes.push(format!("ReaL labels: {}", path.display()));
    let lists: Vec<Vec<u32>> = serde_json::from_str(&text).map_err(|e| {
        EvalError::labels(&path, format!("expected a JSON list of label lists: {e}"))
    })?;
    if let Some(bad) = lists.iter().flatten().find(|&&l| l as usize >= desc.num_classes) {
        return Err(EvalError::labels(
            &path,
            format!("label {bad} is not below {}", desc.num_classes),
        ));
    }

    let mut out = Vec::with_capacity(dataset.len());
    for i in 0..dataset.len() {
        let file = dataset.describe(i);
        let number = devkit::val_number(Path::new(&file)).ok_or_else(|| {
            EvalError::labels(&path, format!("ReaL labels follow val file numbers; {file} is not named ILSVRC2012_val_%08d.*"))
        })?;
        let list = lists.get(number as usize - 1).ok_or_else(|| {
            EvalError::labels(
                &path,
                format!("{file} needs entry {number}, the file has {}", lists.len()),
            )
        })?;
        out.push(list.clone());
    }
    Ok(out)
}

fn find_real_file(desc: &SetDescriptor, dir: &Path) -> Result<(String, PathBuf), EvalError> {
    for name in &desc.real_labels {
        for base in [Some(dir), dir.parent()].into_iter().flatten() {
            let path = base.join(name);
            if path.is_file() {
                let text = std::fs::read_to_string(&path).map_err(|e| EvalError::io(&path, e))?;
                return Ok((text, path));
            }
        }
    }
    let mut last = None;
    for name in &desc.real_labels {
        match desc.read_file(name) {
            Ok(found) => return Ok(found),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| EvalError::labels(dir, "no ReaL labels file")))
}
