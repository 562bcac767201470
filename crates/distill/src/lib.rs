//! Training for funmatch: supervised training and knowledge distillation by function
//! matching (Beyer et al., CVPR 2022), with the paper's recipe.
//!
//! - [`config`]: every option with its default, TOML recipes and `key=value` overrides;
//! - [`loss`]: T²·KL distillation, soft cross-entropy (label smoothing, mixup), metrics;
//! - [`optim`]: our Adam with global-norm clipping, kernel-only decoupled weight decay
//!   scaled by the schedule, warmup + cosine, and a state that is saved and restored;
//! - [`teacher`]: frozen teachers and ensembles, class maps, the `fixed` variant's cache;
//! - [`checkpoint`]: atomic checkpoints of weights, optimizer state and data position;
//! - [`trainer`]: the loop, with held-out evaluation, metrics, plots, progress, resume.
//!
//! A run resumed from a checkpoint continues with exactly the batches and updates the
//! uninterrupted run would have made: batches are a pure function of (seed, step) and the
//! optimizer state is saved whole, so on the CPU (same thread count) the final weights are
//! bit-identical.
//!
//! # Errors and panics
//!
//! Anything a user, a file or the numbers can cause (a bad key, a missing model, a class
//! count mismatch, a non-finite loss, a failed write) returns a [`DistillError`] naming the
//! key, file or step. Panics are reserved for broken invariants of this crate.

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod loss;
pub mod metrics;
pub mod optim;
pub mod plots;
pub mod progress;
pub mod teacher;
pub mod trainer;

mod error;

pub use config::{RunConfig, Variant};
pub use error::DistillError;
pub use metrics::{EvalResult, Record};
pub use trainer::{
    parse_device, resume_config, stop_on_ctrl_c, train, Outcome, RunOptions, StepInputs, Summary,
    Task,
};
