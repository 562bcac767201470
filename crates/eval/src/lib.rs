//! Evaluation for funmatch: ImageNet and its variants (and Fashion-MNIST), teacher and
//! students side by side.
//!
//! - [`descriptor`]: one TOML descriptor per set, built in from `eval-sets/` (layouts, where
//!   the data lives, label files, class subsets), or a user's own file;
//! - [`sets`]: finding a set's folder (`--root`, an environment variable, `FUNMATCH_DATA`),
//!   recognising its layout ([`layout`]), reading labels ([`labels`], [`devkit`] for the
//!   flat val layout with [`mat5`] for the devkit's `meta.mat`), ReaL lists, class subsets;
//! - [`metrics`]: top-1/top-5, mean cross-entropy, ReaL accuracy, subset scoring for
//!   ImageNet-A/-R, KL and agreement with a teacher;
//! - [`runner`] and [`suite`]: batched inference on the data crate's parallel loader with
//!   each model's own preprocessing (overridable), throughput, unreadable images skipped
//!   and counted;
//! - [`results`]: rows with timm's columns, as CSV, JSON and markdown, a screen table, and a
//!   results folder that accumulates rows across runs for side-by-side comparison.
//!
//! # Errors and panics
//!
//! Anything a user, a file, a folder or a model can cause returns an [`EvalError`] naming
//! the set, file or model and what was expected versus found: an unknown set, a folder in
//! the wrong layout, a label file that does not parse, a model with the wrong number of
//! classes. Images that fail to decode are not errors: they are skipped, logged and counted
//! (a run fails only when no image at all can be read). Panics are kept for broken
//! invariants of this crate, such as a built-in descriptor that does not parse.

pub mod descriptor;
pub mod devkit;
pub mod labels;
pub mod layout;
pub mod mat5;
pub mod metrics;
pub mod results;
pub mod runner;
pub mod sets;
pub mod suite;

mod error;
mod progress;

pub use descriptor::{builtin_sets, find_set, Layout, SetDescriptor};
pub use error::EvalError;
pub use metrics::{Agreement, Metrics, Tally};
pub use progress::ProgressMode;
pub use results::{ResultRow, ResultsDir, TIMM_COLUMNS};
pub use runner::{evaluate, EvalModel, Outputs, Preprocess, RunOptions, SetRun};
pub use sets::{EvalSet, OpenOptions, Scoring, DATA_ENV};
pub use suite::{result_row, run_suite};
