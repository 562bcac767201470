//! MNIST-family IDX files (gzipped or not), held decoded in memory.

use std::io::Read;
use std::path::Path;

use image::{GrayImage, RgbImage};

use crate::dataset::{Dataset, Pixels};
use crate::files::numbered_names;
use crate::DataError;

/// Where Debian's `dataset-fashion-mnist` package installs the four IDX files.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Fashion-MNIST's ten classes, in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Which half of an MNIST-family dataset to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MnistSplit {
    /// `train-*` (60 000 examples for (Fashion-)MNIST).
    Train,
    /// `t10k-*` (10 000 examples).
    Test,
}

/// Opens Fashion-MNIST from `root` (e.g. [`FASHION_MNIST_DIR`]), reading
/// `{train,t10k}-{images-idx3,labels-idx1}-ubyte` with or without `.gz`.
pub fn fashion_mnist(root: &Path, split: MnistSplit) -> Result<IdxDataset, DataError> {
    let prefix = match split {
        MnistSplit::Train => "train",
        MnistSplit::Test => "t10k",
    };
    let find = |stem: String| {
        let gz = root.join(format!("{stem}.gz"));
        if gz.exists() {
            gz
        } else {
            root.join(stem)
        }
    };
    let images = find(format!("{prefix}-images-idx3-ubyte"));
    let labels = find(format!("{prefix}-labels-idx1-ubyte"));
    let names = FASHION_MNIST_CLASSES.iter().map(|s| s.to_string()).collect();
    IdxDataset::open(&images, &labels)?.with_class_names(names)
}

/// Grey images and labels from a pair of IDX files, decoded once and held in memory.
///
/// Class names are Fashion-MNIST's when the images file's path mentions "fashion", the label
/// numbers otherwise; [`IdxDataset::with_class_names`] replaces them.
#[derive(Clone, Debug)]
pub struct IdxDataset {
    source: String,
    pixels: Vec<u8>,
    labels: Vec<u32>,
    rows: u32,
    cols: u32,
    class_names: Vec<String>,
}

impl IdxDataset {
    /// Reads an images file (`idx3`, unsigned bytes) and a labels file (`idx1`).
    pub fn open(images_path: &Path, labels_path: &Path) -> Result<IdxDataset, DataError> {
        let (dims, pixels) = read_idx(images_path)?;
        let [n, rows, cols] = dims[..] else {
            return Err(DataError::format(
                images_path,
                format!("expected a 3-dimensional images file, found {} dimensions", dims.len()),
            ));
        };
        let (label_dims, raw_labels) = read_idx(labels_path)?;
        if label_dims != [n] {
            return Err(DataError::format(
                labels_path,
                format!(
                    "expected {n} labels to match {}, found shape {label_dims:?}",
                    images_path.display()
                ),
            ));
        }

        let labels: Vec<u32> = raw_labels.into_iter().map(u32::from).collect();
        let name = images_path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let class_names = if images_path.to_string_lossy().to_lowercase().contains("fashion") {
            FASHION_MNIST_CLASSES.iter().map(|s| s.to_string()).collect()
        } else {
            numbered_names(&labels)
        };
        tracing::debug!(file = %images_path.display(), n, rows, cols, "read IDX images");
        Ok(IdxDataset { source: name, pixels, labels, rows, cols, class_names })
    }

    /// Replaces the class names; every label must index into them.
    pub fn with_class_names(mut self, class_names: Vec<String>) -> Result<IdxDataset, DataError> {
        if let Some(max) = self.labels.iter().max() {
            if *max as usize >= class_names.len() {
                return Err(DataError::Config(format!(
                    "label {max} of {} needs at least {} class names, found {}",
                    self.source,
                    max + 1,
                    class_names.len()
                )));
            }
        }
        self.class_names = class_names;
        Ok(self)
    }

    /// Image height and width in pixels.
    pub fn image_size(&self) -> (u32, u32) {
        (self.rows, self.cols)
    }

    /// The raw grey pixels of example `index`, row-major.
    pub fn raw(&self, index: usize) -> &[u8] {
        let size = (self.rows * self.cols) as usize;
        &self.pixels[index * size..(index + 1) * size]
    }
}

impl Dataset for IdxDataset {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn label(&self, index: usize) -> u32 {
        self.labels[index]
    }

    fn class_names(&self) -> &[String] {
        &self.class_names
    }

    fn load(&self, index: usize) -> Result<RgbImage, DataError> {
        self.load_pixels(index).map(Pixels::into_rgb)
    }

    fn describe(&self, index: usize) -> String {
        format!("idx:{}#{index}", self.source)
    }

    fn load_pixels(&self, index: usize) -> Result<Pixels, DataError> {
        let image = GrayImage::from_raw(self.cols, self.rows, self.raw(index).to_vec());
        // The buffer length is checked when the file is read, so this cannot fail.
        Ok(Pixels::Grey(image.expect("IDX image buffer has rows × cols bytes")))
    }
}

/// Reads an IDX file of unsigned bytes: returns its dimensions and its data.
fn read_idx(path: &Path) -> Result<(Vec<u32>, Vec<u8>), DataError> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let bytes = if raw.starts_with(&[0x1F, 0x8B]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| DataError::io(path, e))?;
        out
    } else {
        raw
    };

    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(DataError::format(path, "not an IDX file: expected magic 0x0000 0xTT 0xNN"));
    }
    if bytes[2] != 0x08 {
        return Err(DataError::format(
            path,
            format!("expected unsigned-byte data (type 0x08), found type 0x{:02x}", bytes[2]),
        ));
    }
    let ndims = bytes[3] as usize;
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(DataError::format(path, format!("truncated header of {ndims} dimensions")));
    }
    let dims: Vec<u32> = (0..ndims)
        .map(|d| u32::from_be_bytes(bytes[4 + 4 * d..8 + 4 * d].try_into().expect("4 bytes")))
        .collect();

    let expected: u64 = dims.iter().map(|&d| u64::from(d)).product();
    let found = (bytes.len() - header) as u64;
    if found != expected {
        return Err(DataError::format(
            path,
            format!("dimensions {dims:?} need {expected} data bytes, found {found}"),
        ));
    }
    let mut bytes = bytes;
    bytes.drain(..header);
    Ok((dims, bytes))
}
