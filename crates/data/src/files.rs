//! Datasets of image files: class folders, list files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::dataset::{Dataset, Loaded, Pixels, ViewNeeds};
use crate::decode::{decode_file, load_file_for_views};
use crate::DataError;

/// File extensions (lower case) that folder datasets pick up; other files are ignored.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif"];

/// How the class folders of a folder dataset map to labels.
#[derive(Clone, Debug)]
pub enum FolderLabels {
    /// Label = position of the folder name in the sorted list of folder names (ImageNet
    /// synset folders, any `ImageFolder`-style dataset). Class names are the folder names.
    Sorted,
    /// Folder names are the labels themselves (`0`…`999`, ImageNet-V2), sorted numerically.
    Numeric,
    /// Each folder name is looked up in a caller-given map (e.g. ImageNet-A/R's 200 wnid
    /// folders into the 1000 ImageNet classes); a folder missing from the map is an error.
    Map(HashMap<String, u32>),
}

/// A dataset of image files with one label each, in a fixed order.
#[derive(Clone, Debug)]
pub struct FileDataset {
    files: Vec<PathBuf>,
    labels: Vec<u32>,
    class_names: Vec<String>,
}

impl FileDataset {
    /// Builds a dataset from parallel lists; class names must cover every label.
    pub fn from_parts(
        files: Vec<PathBuf>,
        labels: Vec<u32>,
        class_names: Vec<String>,
    ) -> Result<FileDataset, DataError> {
        if files.len() != labels.len() {
            return Err(DataError::Config(format!(
                "{} files but {} labels",
                files.len(),
                labels.len()
            )));
        }
        FileDataset { files, labels, class_names: Vec::new() }.with_class_names(class_names)
    }

    /// One sub-folder per class, classes sorted by name; files may be nested at any depth
    /// and are ordered by path within each class.
    pub fn image_folder(root: &Path) -> Result<FileDataset, DataError> {
        FileDataset::image_folder_with(root, &FolderLabels::Sorted)
    }

    /// One sub-folder per class, with labels given by `labels`.
    pub fn image_folder_with(root: &Path, labels: &FolderLabels) -> Result<FileDataset, DataError> {
        let mut folders = Vec::new();
        for entry in read_dir_sorted(root)? {
            if entry.is_dir() && !is_hidden(&entry) {
                let name = entry.file_name().unwrap_or_default().to_string_lossy().into_owned();
                folders.push((name, entry));
            }
        }
        if folders.is_empty() {
            return Err(DataError::format(root, "expected one sub-folder per class, found none"));
        }

        let (assigned, class_names) = assign_labels(root, folders, labels)?;
        let mut files = Vec::new();
        let mut file_labels = Vec::new();
        for (label, folder) in assigned {
            let before = files.len();
            collect_images(&folder, &mut files)?;
            file_labels.resize(files.len(), label);
            tracing::debug!(folder = %folder.display(), label, images = files.len() - before, "class folder");
        }
        if files.is_empty() {
            return Err(DataError::format(
                root,
                format!("no image files (extensions {IMAGE_EXTENSIONS:?}) in the class folders"),
            ));
        }
        Ok(FileDataset { files, labels: file_labels, class_names })
    }

    /// A list file: one `relative/path<TAB>label` per line, paths relative to `root` (the
    /// list file's folder when `None`). Empty lines and lines starting with `#` are skipped.
    /// Class names are the label numbers until [`FileDataset::with_class_names`] sets them.
    pub fn list_file(list: &Path, root: Option<&Path>) -> Result<FileDataset, DataError> {
        let text = std::fs::read_to_string(list).map_err(|e| DataError::io(list, e))?;
        let root = root
            .map(Path::to_path_buf)
            .unwrap_or_else(|| list.parent().map(Path::to_path_buf).unwrap_or_default());

        let mut files = Vec::new();
        let mut labels = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let at = || format!("line {}: {line:?}", number + 1);
            let (path, label) = line.rsplit_once('\t').ok_or_else(|| {
                DataError::format(list, format!("{}: expected `path<TAB>label`", at()))
            })?;
            let label: u32 = label.trim().parse().map_err(|_| {
                DataError::format(list, format!("{}: expected an integer label", at()))
            })?;
            files.push(root.join(path));
            labels.push(label);
        }
        if files.is_empty() {
            return Err(DataError::format(list, "the list holds no `path<TAB>label` line"));
        }
        let class_names = numbered_names(&labels);
        Ok(FileDataset { files, labels, class_names })
    }

    /// Replaces the class names; every label must index into them.
    pub fn with_class_names(mut self, class_names: Vec<String>) -> Result<FileDataset, DataError> {
        if let Some(max) = self.labels.iter().max() {
            if *max as usize >= class_names.len() {
                return Err(DataError::Config(format!(
                    "label {max} needs at least {} class names, found {}",
                    max + 1,
                    class_names.len()
                )));
            }
        }
        self.class_names = class_names;
        Ok(self)
    }

    /// The file of example `index`.
    pub fn path(&self, index: usize) -> &Path {
        &self.files[index]
    }
}

impl Dataset for FileDataset {
    fn len(&self) -> usize {
        self.files.len()
    }

    fn label(&self, index: usize) -> u32 {
        self.labels[index]
    }

    fn class_names(&self) -> &[String] {
        &self.class_names
    }

    fn load(&self, index: usize) -> Result<RgbImage, DataError> {
        self.load_pixels(index).map(Pixels::into_rgb)
    }

    fn describe(&self, index: usize) -> String {
        self.files[index].display().to_string()
    }

    fn load_pixels(&self, index: usize) -> Result<Pixels, DataError> {
        decode_file(&self.files[index])
    }

    fn load_for_views(
        &self,
        index: usize,
        plan: &mut dyn FnMut(u32, u32) -> ViewNeeds,
    ) -> Result<Loaded, DataError> {
        load_file_for_views(&self.files[index], plan)
    }
}

/// Class names `"0"`, `"1"`, … up to the largest label.
pub(crate) fn numbered_names(labels: &[u32]) -> Vec<String> {
    let count = labels.iter().max().map_or(0, |m| *m as usize + 1);
    (0..count).map(|i| i.to_string()).collect()
}

/// Class folders with their labels, in the order their files are listed.
type LabelledFolders = Vec<(u32, PathBuf)>;

fn assign_labels(
    root: &Path,
    folders: Vec<(String, PathBuf)>,
    labels: &FolderLabels,
) -> Result<(LabelledFolders, Vec<String>), DataError> {
    match labels {
        FolderLabels::Sorted => {
            let names = folders.iter().map(|(n, _)| n.clone()).collect();
            let assigned = folders.into_iter().enumerate().map(|(i, (_, p))| (i as u32, p));
            Ok((assigned.collect(), names))
        }
        FolderLabels::Numeric => {
            let mut numbered = Vec::new();
            for (name, path) in folders {
                let label: u32 = name.parse().map_err(|_| {
                    DataError::format(
                        root,
                        format!("expected numeric class folders (0, 1, …), found {name:?}"),
                    )
                })?;
                numbered.push((label, path));
            }
            // "10" sorts before "2" as a string; the label order is numeric.
            numbered.sort_by_key(|(label, _)| *label);
            let labels: Vec<u32> = numbered.iter().map(|(l, _)| *l).collect();
            Ok((numbered, numbered_names(&labels)))
        }
        FolderLabels::Map(map) => {
            let mut mapped = Vec::new();
            for (name, path) in folders {
                let label = *map.get(&name).ok_or_else(|| {
                    DataError::format(
                        root,
                        format!(
                            "class folder {name:?} is not in the class map ({} entries)",
                            map.len()
                        ),
                    )
                })?;
                mapped.push((label, path, name));
            }
            let count = map.values().max().map_or(0, |m| *m as usize + 1);
            let mut names: Vec<String> = (0..count).map(|i| i.to_string()).collect();
            for (name, &label) in map {
                names[label as usize] = name.clone();
            }
            Ok((mapped.into_iter().map(|(l, p, _)| (l, p)).collect(), names))
        }
    }
}

pub(crate) fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        entries.push(entry.map_err(|e| DataError::io(dir, e))?.path());
    }
    entries.sort();
    Ok(entries)
}

fn is_hidden(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

pub(crate) fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}

fn collect_images(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
    for entry in read_dir_sorted(dir)? {
        if is_hidden(&entry) {
            continue;
        }
        if entry.is_dir() {
            collect_images(&entry, out)?;
        } else if has_image_extension(&entry) {
            out.push(entry);
        }
    }
    Ok(())
}
