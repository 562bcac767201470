//! The one error type of this crate.

use std::path::{Path, PathBuf};

/// A tensor whose shape differs from what the architecture expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub tensor: String,
    pub expected: Vec<usize>,
    pub found: Vec<usize>,
}

/// Everything that can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("{path}: no such file or folder")]
    NotFound { path: PathBuf },

    #[error("{}: no weights found (expected model.safetensors or one .npz file){}", dir.display(),
        if *pickle_only { "; pytorch_model.bin / .pth files are pickle and are never loaded: use a revision of the model that has model.safetensors" } else { "" })]
    NoWeights { dir: PathBuf, pickle_only: bool },

    #[error("{}: {msg}", path.display())]
    Safetensors { path: PathBuf, msg: String },

    #[error("{}: {msg}", path.display())]
    Config { path: PathBuf, msg: String },

    #[error("{}: tensor {tensor}: expected {expected}, found {found}", path.display())]
    Shape { path: PathBuf, tensor: String, expected: String, found: String },

    #[error("{}: weights do not match the architecture:{}", path.display(), describe(missing, unexpected, mismatched))]
    Tensors {
        path: PathBuf,
        missing: Vec<String>,
        unexpected: Vec<String>,
        mismatched: Vec<Mismatch>,
    },

    #[error("unknown architecture {name:?}; known: {known}")]
    UnknownArch { name: String, known: String },

    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl ModelError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io { path: path.to_path_buf(), source }
    }
}

fn describe(missing: &[String], unexpected: &[String], mismatched: &[Mismatch]) -> String {
    let mut out = String::new();
    if !missing.is_empty() {
        out += &format!("\n  missing ({}): {}", missing.len(), missing.join(", "));
    }
    if !unexpected.is_empty() {
        out += &format!("\n  unexpected ({}): {}", unexpected.len(), unexpected.join(", "));
    }
    for m in mismatched {
        out += &format!("\n  {}: expected shape {:?}, found {:?}", m.tensor, m.expected, m.found);
    }
    out
}
