//! The crate's error type.

use std::path::PathBuf;

/// Everything a dataset, a decoder or the loader can fail with.
///
/// Each variant names the file (or example) and, where it applies, the expected and the found
/// value, so the message alone tells a user what to fix.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or folder could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// An image could not be decoded.
    #[error("decoding {what}: {message}")]
    Decode {
        /// The file, or `idx:<file>#<i>` for an example held in memory.
        what: String,
        /// What the decoder said.
        message: String,
    },

    /// A dataset file or folder does not have the expected layout or content.
    #[error("{path}: {message}")]
    Format {
        /// The file or folder at fault.
        path: PathBuf,
        /// What was expected and what was found.
        message: String,
    },

    /// A configuration value is out of its range.
    #[error("invalid data configuration: {0}")]
    Config(String),

    /// More examples failed to decode than the configured share allows.
    #[error(
        "{failed} of {total} examples ({percent:.2} %) could not be decoded, more than the \
         allowed {allowed_percent:.2} %; the first one: {first}"
    )]
    TooManyFailures {
        /// Distinct examples that failed so far.
        failed: usize,
        /// Examples in the dataset.
        total: usize,
        /// `failed / total` in percent.
        percent: f64,
        /// The configured limit in percent.
        allowed_percent: f64,
        /// The first failure, with its file and reason.
        first: String,
    },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io { path: path.into(), source }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        DataError::Format { path: path.into(), message: message.into() }
    }

    pub(crate) fn decode(what: impl Into<String>, message: impl std::fmt::Display) -> Self {
        DataError::Decode { what: what.into(), message: message.to_string() }
    }
}
