//! The one error type of this crate.

use std::path::{Path, PathBuf};

/// Everything that can stop a training run.
///
/// Each variant names what it is about (a file, a configuration key, a step) and, where it
/// applies, the expected and the found value.
#[derive(Debug, thiserror::Error)]
pub enum DistillError {
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A configuration key has a bad value, or a recipe cannot be read.
    #[error("configuration: {0}")]
    Config(String),

    /// The teacher's classes do not match the data's.
    #[error(
        "teacher {teacher} has {teacher_classes} classes but the data has {data_classes}; \
         give a class map (teacher.class_map) that names, for every data class, its teacher \
         class"
    )]
    ClassCount {
        /// The teacher's model argument.
        teacher: String,
        /// Classes of the teacher.
        teacher_classes: usize,
        /// Classes of the training data.
        data_classes: usize,
    },

    /// The loss became NaN or infinite.
    #[error(
        "the loss is not finite ({loss}) at step {step}; stopping. The last good checkpoint \
         {} is kept{}",
        checkpoint.as_ref().map_or("(none written yet)".to_string(), |p| p.display().to_string()),
        last_good.map_or(String::new(), |s| format!(" (step {s})"))
    )]
    NonFiniteLoss {
        /// The step (1-based update number) whose loss was not finite.
        step: usize,
        /// The value.
        loss: f32,
        /// The checkpoint file that stays valid.
        checkpoint: Option<PathBuf>,
        /// Its step.
        last_good: Option<usize>,
    },

    /// Writing a checkpoint failed; the previous one is untouched.
    #[error(
        "writing the checkpoint of step {step} to {} failed: {message}; the previous \
         checkpoint {} is intact",
        path.display(),
        previous.map_or("(none)".to_string(), |s| format!("(step {s})"))
    )]
    CheckpointWrite {
        /// The step that was being saved.
        step: usize,
        /// The checkpoint file.
        path: PathBuf,
        /// What went wrong.
        message: String,
        /// Step of the checkpoint that stays in place, if any.
        previous: Option<usize>,
    },

    /// A checkpoint or cache file does not hold what this run needs.
    #[error("{}: {message}", path.display())]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What was expected and found.
        message: String,
    },

    /// A model could not be loaded or built.
    #[error(transparent)]
    Model(#[from] funmatch_models::ModelError),

    /// The data pipeline failed.
    #[error(transparent)]
    Data(#[from] funmatch_data::DataError),

    /// A tensor operation failed.
    #[error("tensor operation: {0}")]
    Candle(#[from] candle_core::Error),
}

impl DistillError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io { path: path.to_path_buf(), source }
    }
}
