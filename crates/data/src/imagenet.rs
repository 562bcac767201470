//! Readers for the on-disk layouts of the ImageNet evaluation sets.
//!
//! These only read layouts; which labels a set uses (the devkit's ILSVRC ids, the wnid
//! order, the 200-class subsets of A and R) is the caller's to supply.

use std::collections::HashMap;
use std::path::Path;

use crate::files::{read_dir_sorted, FileDataset, FolderLabels};
use crate::DataError;

/// One folder per synset (ImageNet-1k val or train, ImageNet-Sketch): label = position of
/// the wnid in the sorted folder list, which is the model's class index for the 1000 classes.
pub fn synset_folders(root: &Path) -> Result<FileDataset, DataError> {
    FileDataset::image_folder_with(root, &FolderLabels::Sorted)
}

/// ImageNet-V2: folders `0`…`999` named by class index, sorted numerically.
pub fn numeric_folders(root: &Path) -> Result<FileDataset, DataError> {
    FileDataset::image_folder_with(root, &FolderLabels::Numeric)
}

/// wnid folders with an optional wnid → class index map (ImageNet-A and -R: 200 folders
/// mapped into the 1000 classes). Without a map, labels follow the sorted folder names.
pub fn wnid_folders(
    root: &Path,
    wnid_to_index: Option<&HashMap<String, u32>>,
) -> Result<FileDataset, DataError> {
    match wnid_to_index {
        Some(map) => FileDataset::image_folder_with(root, &FolderLabels::Map(map.clone())),
        None => synset_folders(root),
    }
}

/// ImageNet-1k val as flat `ILSVRC2012_val_%08d.JPEG` files plus the devkit ground truth.
///
/// `ground_truth` holds one ILSVRC id (1…1000) per line, line k for file number k;
/// `id_to_index[id - 1]` is the model class index of ILSVRC id `id`. Files are ordered by
/// their number; files present on disk but missing from the ground truth are an error,
/// ground-truth lines without a file are allowed (a partial copy of the set).
pub fn flat_val(
    dir: &Path,
    ground_truth: &Path,
    id_to_index: &[u32],
    class_names: Vec<String>,
) -> Result<FileDataset, DataError> {
    let text = std::fs::read_to_string(ground_truth).map_err(|e| DataError::io(ground_truth, e))?;
    let mut ids = Vec::new();
    for (line_no, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let id: u32 = line.trim().parse().map_err(|_| {
            DataError::format(
                ground_truth,
                format!("line {}: expected an ILSVRC id, found {line:?}", line_no + 1),
            )
        })?;
        ids.push(id);
    }

    let mut numbered = Vec::new();
    for path in read_dir_sorted(dir)? {
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        if let Some(number) = val_file_number(&name) {
            numbered.push((number, path));
        }
    }
    if numbered.is_empty() {
        return Err(DataError::format(
            dir,
            "expected files named ILSVRC2012_val_%08d.JPEG, found none",
        ));
    }
    numbered.sort_by_key(|(n, _)| *n);

    let mut files = Vec::with_capacity(numbered.len());
    let mut labels = Vec::with_capacity(numbered.len());
    for (number, path) in numbered {
        let id = *ids.get(number as usize - 1).ok_or_else(|| {
            DataError::format(
                ground_truth,
                format!("{} needs line {number}, the file has {} lines", path.display(), ids.len()),
            )
        })?;
        let label =
            id.checked_sub(1).and_then(|i| id_to_index.get(i as usize)).ok_or_else(|| {
                DataError::format(
                    ground_truth,
                    format!(
                        "line {number}: ILSVRC id {id} is outside the id table (1…{})",
                        id_to_index.len()
                    ),
                )
            })?;
        files.push(path);
        labels.push(*label);
    }
    FileDataset::from_parts(files, labels, class_names)
}

/// `ILSVRC2012_val_00000042.JPEG` → 42.
fn val_file_number(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("ILSVRC2012_val_")?.strip_suffix(".JPEG")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::val_file_number;

    #[test]
    fn val_file_numbers_parse_only_the_devkit_pattern() {
        assert_eq!(val_file_number("ILSVRC2012_val_00000042.JPEG"), Some(42));
        assert_eq!(val_file_number("ILSVRC2012_val_00050000.JPEG"), Some(50000));
        assert_eq!(val_file_number("ILSVRC2012_val_42.JPEG"), None);
        assert_eq!(val_file_number("ILSVRC2012_val_00000000.JPEG"), None);
        assert_eq!(val_file_number("ILSVRC2012_val_00000042.png"), None);
    }
}
