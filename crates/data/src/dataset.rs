//! The dataset abstraction, decoded pixels, subsets and the train/held-out split.

use std::sync::Arc;

use image::{GrayImage, RgbImage};

use crate::rng::{Rng, Stream};
use crate::DataError;

/// Decoded 8-bit pixels, as a decoder or an in-memory dataset produced them.
///
/// Grey images stay grey until they are resized, which makes the Fashion-MNIST path three
/// times cheaper; the grey channel is replicated into R, G and B when the view is written.
#[derive(Clone, Debug)]
pub enum Pixels {
    /// Three 8-bit channels.
    Rgb(RgbImage),
    /// One 8-bit channel, to be replicated into R, G and B.
    Grey(GrayImage),
}

impl Pixels {
    /// Width in pixels.
    pub fn width(&self) -> u32 {
        match self {
            Pixels::Rgb(i) => i.width(),
            Pixels::Grey(i) => i.width(),
        }
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        match self {
            Pixels::Rgb(i) => i.height(),
            Pixels::Grey(i) => i.height(),
        }
    }

    /// The image as RGB8 (grey replicated into the three channels).
    pub fn into_rgb(self) -> RgbImage {
        match self {
            Pixels::Rgb(i) => i,
            Pixels::Grey(g) => image::DynamicImage::ImageLuma8(g).to_rgb8(),
        }
    }
}

/// What a set of planned views needs from the decoder, in full-resolution pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ViewNeeds {
    /// The smallest decode scale, in `(0, 1]`, that keeps every crop at least at its output
    /// resolution.
    pub min_scale: f64,
    /// Rows from the top that the views read: the lowest crop edge plus the reach of the
    /// resampling filter. Rows below may be left undecoded.
    pub rows: f64,
}

impl ViewNeeds {
    /// Everything, at full resolution.
    pub fn everything() -> ViewNeeds {
        ViewNeeds { min_scale: 1.0, rows: f64::INFINITY }
    }
}

/// Pixels decoded for a set of views, possibly at a reduced scale or only down to the rows
/// the views read.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The decoded pixels: the full-resolution image scaled by `scale`, possibly cut off
    /// below the rows the views need.
    pub pixels: Pixels,
    /// Decoded pixels per full-resolution pixel (1, or 1/2, 1/4, 1/8 for reduced JPEGs).
    pub scale: f64,
    /// Width of the full-resolution image after EXIF orientation.
    pub full_width: u32,
    /// Height of the full-resolution image after EXIF orientation.
    pub full_height: u32,
}

/// A labelled image collection in a fixed, deterministic order.
///
/// `index` arguments must be below [`Dataset::len`]; a larger one is a bug of the caller and
/// may panic. Anything a file can cause (unreadable, undecodable) is returned as an error.
pub trait Dataset: Send + Sync {
    /// Number of examples.
    fn len(&self) -> usize;

    /// Whether the dataset holds no example.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The class index of example `index`.
    fn label(&self, index: usize) -> u32;

    /// Class names; a label is an index into this list.
    fn class_names(&self) -> &[String];

    /// Example `index`, decoded to RGB8 with EXIF orientation applied.
    fn load(&self, index: usize) -> Result<RgbImage, DataError>;

    /// Where example `index` comes from: a file path, or `idx:<file>#<i>`; used in messages.
    fn describe(&self, index: usize) -> String;

    /// Example `index` as decoded pixels; grey sources may stay grey.
    fn load_pixels(&self, index: usize) -> Result<Pixels, DataError> {
        self.load(index).map(Pixels::Rgb)
    }

    /// Example `index`, decoded only as far as the views need.
    ///
    /// `plan` receives the full-resolution size (after EXIF orientation) and returns what
    /// the planned views need. Implementations call `plan` exactly once; they may decode at
    /// any scale at or above `min_scale` (JPEGs use 1/2, 1/4 or 1/8 when allowed) and may
    /// stop below `rows` (baseline JPEGs do).
    fn load_for_views(
        &self,
        index: usize,
        plan: &mut dyn FnMut(u32, u32) -> ViewNeeds,
    ) -> Result<Loaded, DataError> {
        let pixels = self.load_pixels(index)?;
        let (full_width, full_height) = (pixels.width(), pixels.height());
        plan(full_width, full_height);
        Ok(Loaded { pixels, scale: 1.0, full_width, full_height })
    }
}

/// A view of some examples of a parent dataset, in the order given.
#[derive(Clone)]
pub struct Subset {
    parent: Arc<dyn Dataset>,
    indices: Vec<usize>,
}

impl Subset {
    /// The examples `indices` of `parent`; every index must be below `parent.len()`.
    pub fn new(parent: Arc<dyn Dataset>, indices: Vec<usize>) -> Result<Subset, DataError> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= parent.len()) {
            return Err(DataError::Config(format!(
                "subset index {bad} is out of range for a dataset of {} examples",
                parent.len()
            )));
        }
        Ok(Subset { parent, indices })
    }

    /// The parent's indices of this subset's examples.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }
}

impl Dataset for Subset {
    fn len(&self) -> usize {
        self.indices.len()
    }

    fn label(&self, index: usize) -> u32 {
        self.parent.label(self.indices[index])
    }

    fn class_names(&self) -> &[String] {
        self.parent.class_names()
    }

    fn load(&self, index: usize) -> Result<RgbImage, DataError> {
        self.parent.load(self.indices[index])
    }

    fn describe(&self, index: usize) -> String {
        self.parent.describe(self.indices[index])
    }

    fn load_pixels(&self, index: usize) -> Result<Pixels, DataError> {
        self.parent.load_pixels(self.indices[index])
    }

    fn load_for_views(
        &self,
        index: usize,
        plan: &mut dyn FnMut(u32, u32) -> ViewNeeds,
    ) -> Result<Loaded, DataError> {
        self.parent.load_for_views(self.indices[index], plan)
    }
}

/// Splits `dataset` into (train, held-out) by a seeded, stable rule.
///
/// The split is stratified: within each class, examples are ordered by a hash of
/// `(seed, index)` and the first `round(count × held_out_fraction)` are held out. The same
/// dataset and seed always give the same split, whatever else the program does; both parts
/// keep the parent's order.
pub fn split(
    dataset: Arc<dyn Dataset>,
    held_out_fraction: f64,
    seed: u64,
) -> Result<(Subset, Subset), DataError> {
    if !(0.0..=1.0).contains(&held_out_fraction) {
        return Err(DataError::Config(format!(
            "held-out fraction must be in [0, 1], found {held_out_fraction}"
        )));
    }

    let mut by_class: std::collections::BTreeMap<u32, Vec<(u64, usize)>> = Default::default();
    for i in 0..dataset.len() {
        let key = Rng::keyed(seed, Stream::Split, &[i as u64]).next_u64();
        by_class.entry(dataset.label(i)).or_default().push((key, i));
    }

    let mut held = Vec::new();
    let mut train = Vec::new();
    for (_, mut members) in by_class {
        members.sort_unstable();
        let n_held = (members.len() as f64 * held_out_fraction).round() as usize;
        held.extend(members[..n_held].iter().map(|&(_, i)| i));
        train.extend(members[n_held..].iter().map(|&(_, i)| i));
    }
    held.sort_unstable();
    train.sort_unstable();

    Ok((
        Subset { parent: dataset.clone(), indices: train },
        Subset { parent: dataset, indices: held },
    ))
}
