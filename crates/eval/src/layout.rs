//! Looking at a folder to tell which layout it is in, and saying what it holds when it is in
//! none of the expected ones.

use std::path::{Path, PathBuf};

use funmatch_data::IMAGE_EXTENSIONS;

use crate::descriptor::Layout;
use crate::labels::is_wnid;

/// What a folder holds, at its top level.
#[derive(Clone, Debug, Default)]
pub struct Inspection {
    /// The folder.
    pub dir: PathBuf,
    /// Whether it exists and is a folder.
    pub exists: bool,
    /// Sub-folders named like wnids.
    pub wnid_dirs: Vec<String>,
    /// Sub-folders named by a number.
    pub numeric_dirs: Vec<String>,
    /// Other (non-hidden) sub-folders.
    pub other_dirs: Vec<String>,
    /// `ILSVRC2012_val_*.JPEG` files.
    pub val_files: usize,
    /// Other image files.
    pub image_files: usize,
    /// Whether the Fashion-MNIST/MNIST test IDX pair is present.
    pub idx_test: bool,
    /// Other (non-hidden) files.
    pub other_files: usize,
}

impl Inspection {
    /// Lists `dir`'s top level; a missing or unreadable folder gives `exists: false`.
    pub fn of(dir: &Path) -> Inspection {
        let mut out = Inspection { dir: dir.to_path_buf(), ..Default::default() };
        let Ok(entries) = std::fs::read_dir(dir) else { return out };
        out.exists = true;

        let mut names = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') {
                names.push((name, entry.path().is_dir()));
            }
        }
        names.sort();
        for (name, is_dir) in names {
            if is_dir {
                if is_wnid(&name) {
                    out.wnid_dirs.push(name);
                } else if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
                    out.numeric_dirs.push(name);
                } else {
                    out.other_dirs.push(name);
                }
            } else if name.starts_with("ILSVRC2012_val_") && name.ends_with(".JPEG") {
                out.val_files += 1;
            } else if has_image_extension(&name) {
                out.image_files += 1;
            } else {
                out.other_files += 1;
            }
        }
        let has =
            |stem: &str| ["", ".gz"].iter().any(|ext| dir.join(format!("{stem}{ext}")).is_file());
        out.idx_test = has("t10k-images-idx3-ubyte") && has("t10k-labels-idx1-ubyte");
        out
    }

    /// Whether the folder is in `layout`.
    pub fn matches(&self, layout: Layout) -> bool {
        let only = |dirs: &Vec<String>| !dirs.is_empty() && self.dir_count() == dirs.len();
        match layout {
            Layout::SynsetFolders => only(&self.wnid_dirs),
            Layout::NumericFolders => only(&self.numeric_dirs),
            Layout::FlatVal => self.val_files > 0,
            Layout::Idx => self.idx_test,
            Layout::ClassFolders => self.dir_count() > 0,
        }
    }

    fn dir_count(&self) -> usize {
        self.wnid_dirs.len() + self.numeric_dirs.len() + self.other_dirs.len()
    }

    /// What the folder holds, in words: "12 wnid folders (n01440764, n01443537, …), 3 other
    /// files".
    pub fn describe(&self) -> String {
        if !self.exists {
            return format!("{}: no such folder", self.dir.display());
        }
        let mut parts = Vec::new();
        let folders = |what: &str, names: &[String]| {
            let shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
            let more = if names.len() > 3 { ", …" } else { "" };
            format!("{} {what} ({}{more})", names.len(), shown.join(", "))
        };
        if !self.wnid_dirs.is_empty() {
            parts.push(folders("wnid folders", &self.wnid_dirs));
        }
        if !self.numeric_dirs.is_empty() {
            parts.push(folders("numbered folders", &self.numeric_dirs));
        }
        if !self.other_dirs.is_empty() {
            parts.push(folders("other folders", &self.other_dirs));
        }
        if self.val_files > 0 {
            parts.push(format!("{} ILSVRC2012_val_*.JPEG files", self.val_files));
        }
        if self.image_files > 0 {
            parts.push(format!("{} other image files", self.image_files));
        }
        if self.idx_test {
            parts.push("IDX test files".to_string());
        }
        if self.other_files > 0 {
            parts.push(format!("{} other files", self.other_files));
        }
        if parts.is_empty() {
            parts.push("nothing (empty folder)".to_string());
        }
        format!("{}: {}", self.dir.display(), parts.join(", "))
    }
}

fn has_image_extension(name: &str) -> bool {
    Path::new(name)
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_folders_are_not_taken_for_synset_folders() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["0", "1", "10"] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        let found = Inspection::of(dir.path());
        assert!(found.matches(Layout::NumericFolders));
        assert!(!found.matches(Layout::SynsetFolders));
        assert!(found.describe().contains("3 numbered folders (0, 1, 10)"), "{}", found.describe());
    }

    #[test]
    fn missing_folder_is_described_as_such() {
        let found = Inspection::of(Path::new("/nonexistent/funmatch-eval"));
        assert!(!found.exists);
        assert!(found.describe().ends_with("no such folder"));
    }
}
