//! The crate's error type.

use std::path::PathBuf;

/// Everything evaluation can fail with.
///
/// Each variant names the set, file or model at fault and, where it applies, what was
/// expected and what was found, so the message alone tells a user what to fix.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// No descriptor of that name, built in or as a file.
    #[error("unknown eval set {name:?}; known sets: {known}")]
    UnknownSet {
        /// The name asked for.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },

    /// A descriptor file does not parse or says something inconsistent.
    #[error("eval-set descriptor {path}: {message}")]
    Descriptor {
        /// The descriptor (a file, or `builtin:<name>`).
        path: String,
        /// What is wrong.
        message: String,
    },

    /// No folder was given or found for a set.
    #[error("eval set {set}: no data folder; {hint}")]
    NoRoot {
        /// The set.
        set: String,
        /// Where we looked and how to say where the data is.
        hint: String,
    },

    /// The folder holds something else than the layouts the set accepts.
    #[error("eval set {set}: {root} is not in a layout this set reads (expected {expected}); found {found}")]
    Layout {
        /// The set.
        set: String,
        /// The folder that was given or found.
        root: PathBuf,
        /// The layouts the descriptor accepts, in words.
        expected: String,
        /// What the folder (and the sub-folders tried) hold, in words.
        found: String,
    },

    /// A label file (wnid list, class names, ground truth, real.json, meta.mat) is unusable.
    #[error("{path}: {message}")]
    Labels {
        /// The file.
        path: PathBuf,
        /// What was expected and what was found.
        message: String,
    },

    /// A model does not fit a set (class count, input channels).
    #[error("model {model} cannot be scored on {set}: {message}")]
    ModelMismatch {
        /// The model as named on the command line.
        model: String,
        /// The set.
        set: String,
        /// Expected vs found.
        message: String,
    },

    /// A results file could not be read or written, or holds unusable rows.
    #[error("results {path}: {message}")]
    Results {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },

    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// The data pipeline failed (layout, decoding beyond the tolerated share).
    #[error(transparent)]
    Data(Box<funmatch_data::DataError>),

    /// A model could not be loaded.
    #[error(transparent)]
    Model(Box<funmatch_models::ModelError>),

    /// A tensor operation failed while running a model.
    #[error("running {model}: {source}")]
    Forward {
        /// The model.
        model: String,
        /// candle's error.
        source: candle_core::Error,
    },

    /// A preprocessing setting is out of range.
    #[error("invalid evaluation setting: {0}")]
    Config(String),
}

impl EvalError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EvalError::Io { path: path.into(), source }
    }

    pub(crate) fn labels(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        EvalError::Labels { path: path.into(), message: message.into() }
    }
}

// Boxed so that `Result<_, EvalError>` stays small on the success path.
impl From<funmatch_data::DataError> for EvalError {
    fn from(e: funmatch_data::DataError) -> Self {
        EvalError::Data(Box::new(e))
    }
}

impl From<funmatch_models::ModelError> for EvalError {
    fn from(e: funmatch_models::ModelError) -> Self {
        EvalError::Model(Box::new(e))
    }
}
