//! Eval-set descriptors: one TOML file per set in `eval-sets/`, built into the binary, plus
//! descriptors users write themselves.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::EvalError;

/// An on-disk layout that a set can be read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// One folder per wnid (`n01440764/…`); labels through the descriptor's `classes` list.
    SynsetFolders,
    /// Flat `ILSVRC2012_val_%08d.JPEG` files plus devkit ground truth (see [`crate::devkit`]).
    FlatVal,
    /// Folders `0`…`999` named by class index (ImageNet-V2).
    NumericFolders,
    /// MNIST-style IDX files (`t10k-images-idx3-ubyte[.gz]`, `t10k-labels-idx1-ubyte[.gz]`).
    Idx,
    /// Any class folders, labels by sorted folder name (a user's own `ImageFolder` set).
    ClassFolders,
}

impl Layout {
    /// The layout in words, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Layout::SynsetFolders => "wnid folders (n01440764/, …)",
            Layout::FlatVal => "flat ILSVRC2012_val_%08d.JPEG files with devkit ground truth",
            Layout::NumericFolders => "class-index folders (0/, 1/, …, 999/)",
            Layout::Idx => "IDX files (t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz])",
            Layout::ClassFolders => "one sub-folder per class",
        }
    }
}

/// Where a descriptor came from, which decides how its relative file names resolve.
#[derive(Clone, Debug, Default)]
pub enum Origin {
    /// Built into the binary from `eval-sets/`.
    #[default]
    Builtin,
    /// A file; relative names resolve against its folder first, then the built-in files.
    File(PathBuf),
}

/// One evaluation set: where its data lives, its layout, and how it is scored.
///
/// Defaults: no aliases, no environment variables, `subdirs = [""]` (the root itself), no
/// class subset, no ReaL labels.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetDescriptor {
    /// The name used with `--sets`.
    pub name: String,
    /// Other names accepted for the set.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// A human title.
    pub title: String,
    /// Accepted layouts, tried in this order.
    pub layouts: Vec<Layout>,
    /// Environment variables naming the set's folder, first set one wins.
    #[serde(default)]
    pub root_env: Vec<String>,
    /// Folders tried below `FUNMATCH_DATA` (or `--data DIR`).
    #[serde(default)]
    pub data_dirs: Vec<String>,
    /// Sub-folders of a root tried in order (`""` is the root itself).
    #[serde(default = "root_itself")]
    pub subdirs: Vec<String>,
    /// Folder used when nothing else names one.
    pub default_root: Option<PathBuf>,
    /// Outputs a model must have to be scored on this set.
    pub num_classes: usize,
    /// The class list (one wnid per line; position = model class index).
    pub classes: Option<String>,
    /// `wnid<TAB>name` per line, in class order.
    pub class_names: Option<String>,
    /// wnids whose columns alone are scored (ImageNet-A/-R's 200 classes).
    pub class_subset: Option<String>,
    /// Keep only the images whose class is in `class_subset` (the "-clean" sets).
    #[serde(default)]
    pub keep_subset_only: bool,
    /// ReaL label files tried in order: first in the data folder (and its parent), then
    /// relative to the descriptor.
    #[serde(default)]
    pub real_labels: Vec<String>,
    /// Images in the full set, to warn about partial copies.
    pub expected_images: Option<usize>,
    /// Where the set comes from.
    pub source: Option<String>,
    /// Where this descriptor came from.
    #[serde(skip)]
    pub origin: Origin,
}

fn root_itself() -> Vec<String> {
    vec![String::new()]
}

macro_rules! builtin {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../../eval-sets/", $name)))),*]
    };
}

/// The descriptors in `eval-sets/`, by file name.
const BUILTIN_SETS: &[(&str, &str)] = builtin![
    "imagenet.toml",
    "imagenet-real.toml",
    "imagenet-v2-matched-frequency.toml",
    "imagenet-v2-threshold-0.7.toml",
    "imagenet-v2-top-images.toml",
    "imagenet-a.toml",
    "imagenet-r.toml",
    "imagenet-a-clean.toml",
    "imagenet-r-clean.toml",
    "imagenet-sketch.toml",
    "fashion-mnist.toml",
];

/// The label files in `eval-sets/labels/`, by their path relative to `eval-sets/`.
const BUILTIN_FILES: &[(&str, &str)] = builtin![
    "labels/imagenet_synsets.txt",
    "labels/imagenet_class_names.txt",
    "labels/imagenet_a_synsets.txt",
    "labels/imagenet_r_synsets.txt",
    "labels/imagenet_real_labels.json",
];

impl SetDescriptor {
    /// Parses a descriptor; `what` names it in messages.
    pub fn parse(text: &str, what: &str, origin: Origin) -> Result<SetDescriptor, EvalError> {
        let bad = |message: String| EvalError::Descriptor { path: what.to_string(), message };
        let mut desc: SetDescriptor = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        desc.origin = origin;

        if desc.layouts.is_empty() {
            return Err(bad("`layouts` is empty; name at least one layout".into()));
        }
        if desc.num_classes == 0 {
            return Err(bad("`num_classes` must be positive".into()));
        }
        let needs_classes = desc.layouts.contains(&Layout::SynsetFolders)
            || desc.layouts.contains(&Layout::FlatVal)
            || desc.class_subset.is_some();
        if needs_classes && desc.classes.is_none() {
            return Err(bad("wnid layouts and class subsets need a `classes` file".into()));
        }
        if desc.keep_subset_only && desc.class_subset.is_none() {
            return Err(bad("`keep_subset_only` needs a `class_subset`".into()));
        }
        if desc.subdirs.is_empty() {
            desc.subdirs = root_itself();
        }
        Ok(desc)
    }

    /// Reads a descriptor file.
    pub fn from_file(path: &Path) -> Result<SetDescriptor, EvalError> {
        let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        SetDescriptor::parse(&text, &path.display().to_string(), Origin::File(dir))
    }

    /// Whether `name` is this set's name or one of its aliases.
    pub fn answers_to(&self, name: &str) -> bool {
        self.name == name || self.aliases.iter().any(|a| a == name)
    }

    /// Reads a file the descriptor names (relative to its own folder, else built in).
    /// Returns the text and a path for messages.
    pub fn read_file(&self, relative: &str) -> Result<(String, PathBuf), EvalError> {
        if let Origin::File(dir) = &self.origin {
            let path = dir.join(relative);
            if path.is_file() {
                let text = std::fs::read_to_string(&path).map_err(|e| EvalError::io(&path, e))?;
                return Ok((text, path));
            }
        }
        match BUILTIN_FILES.iter().find(|(name, _)| *name == relative) {
            Some((name, text)) => Ok((text.to_string(), PathBuf::from(format!("eval-sets/{name}")))),
            None => Err(EvalError::Descriptor {
                path: self.name.clone(),
                message: format!("names the file {relative:?}, which is neither next to the descriptor nor built in"),
            }),
        }
    }
}

/// Every built-in descriptor, in the order of `eval-sets/`'s listing above.
pub fn builtin_sets() -> Vec<SetDescriptor> {
    BUILTIN_SETS
        .iter()
        .map(|(file, text)| {
            // The descriptors are compiled in and covered by tests; a failure is our bug.
            SetDescriptor::parse(text, &format!("eval-sets/{file}"), Origin::Builtin)
                .unwrap_or_else(|e| panic!("built-in descriptor is invalid: {e}"))
        })
        .collect()
}

/// A set by name or alias, or a descriptor file (a path ending in `.toml`).
pub fn find_set(name: &str) -> Result<SetDescriptor, EvalError> {
    if name.ends_with(".toml") {
        return SetDescriptor::from_file(Path::new(name));
    }
    let sets = builtin_sets();
    let known = sets.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ");
    sets.into_iter()
        .find(|s| s.answers_to(name))
        .ok_or_else(|| EvalError::UnknownSet { name: name.to_string(), known })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_descriptor_parses_and_its_files_exist() {
        for set in builtin_sets() {
            for file in [&set.classes, &set.class_names, &set.class_subset].into_iter().flatten() {
                set.read_file(file).unwrap_or_else(|e| panic!("{}: {e}", set.name));
            }
        }
    }

    #[test]
    fn v2_alias_names_the_matched_frequency_variant() {
        assert_eq!(find_set("imagenet-v2").unwrap().name, "imagenet-v2-matched-frequency");
    }

    #[test]
    fn unknown_set_lists_the_known_ones() {
        let err = find_set("imagenet-z").unwrap_err().to_string();
        assert!(err.contains("imagenet-z") && err.contains("imagenet-sketch"), "{err}");
    }
}
