//! The data pipeline of funmatch: datasets, decoding, consistent augmented views for teacher
//! and student, mixup, and a deterministic parallel batch loader.
//!
//! Function matching (Beyer et al., CVPR 2022) needs, at every step, one batch of augmented
//! views that teacher and student both see. This crate builds those batches:
//!
//! - [`Dataset`]s with class names and a fixed order: class folders, list files, IDX files
//!   (Fashion-MNIST via [`fashion_mnist`]), the ImageNet eval-set layouts in [`imagenet`],
//!   and seeded train/held-out [`split`]s;
//! - decoding ([`decode`]) with EXIF orientation, grey/alpha/16-bit/CMYK to 8-bit, and JPEG
//!   decoding at a reduced DCT scale when the crop allows it;
//! - views ([`view`]): inception crop, flip, antialiased bilinear/bicubic resize, eval crop,
//!   normalisation; teacher and student views in the paper's [`ViewMode`]s;
//! - the [`Loader`]: mixup, rayon workers, bounded prefetch, start at any step.
//!
//! Every random decision is a pure function of (seed, epoch, example index), and the mixup
//! coefficient of (seed, epoch, batch position), so a resumed run or one with another thread
//! count sees exactly the same batches.
//!
//! The crate does not depend on any tensor library: batches are plain `Vec<f32>` in NCHW.
//!
//! # Errors and panics
//!
//! Anything a file or a configuration can cause returns a [`DataError`] that names the file
//! and what was expected. Files that fail to decode during loading are skipped, logged
//! (`tracing` warning naming the file), counted in [`Loader::failure_report`], and stop the
//! run only when more than [`LoaderConfig::max_failed_share`] of the dataset has failed.
//! Panics are reserved for broken invariants of the caller: an example index at or beyond
//! [`Dataset::len`].

#![warn(missing_docs)]

pub mod decode;
pub mod imagenet;
pub mod view;

mod dataset;
mod error;
mod files;
mod idx;
mod loader;
mod rng;

pub use dataset::{split, Dataset, Loaded, Pixels, Subset, ViewNeeds};
pub use error::DataError;
pub use files::{FileDataset, FolderLabels, IMAGE_EXTENSIONS};
pub use idx::{fashion_mnist, IdxDataset, MnistSplit, FASHION_MNIST_CLASSES, FASHION_MNIST_DIR};
pub use loader::{
    Batch, BatchIter, Failure, FailureReport, Images, Loader, LoaderConfig, PlannedViews, ViewMode,
};
pub use rng::{Rng, Stream};
pub use view::{Crop, Interpolation, ViewConfig};
