//! Helpers shared by the integration tests: small images written on the fly, and the paths
//! of the real data every machine of the project has.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};

/// The 200 benchmark photos (500×375 or 375×500 JPEGs).
pub fn photos_dir() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The shared folder sits beside the repository (…/main/crates/data → …/shared).
    let candidates = [
        here.join("../../../shared/data/photos-500x375"),
        PathBuf::from("/work/shared/data/photos-500x375"),
    ];
    candidates
        .into_iter()
        .find(|p| p.is_dir())
        .expect("the benchmark photos (shared/data/photos-500x375) are missing")
}

/// Fashion-MNIST as Debian installs it.
pub fn fashion_dir() -> PathBuf {
    let dir = PathBuf::from(funmatch_data::FASHION_MNIST_DIR);
    assert!(
        dir.join("train-images-idx3-ubyte.gz").is_file(),
        "Fashion-MNIST is missing from {}: install Debian's dataset-fashion-mnist",
        dir.display()
    );
    dir
}

/// A colourful test picture whose every pixel differs from its neighbours.
pub fn pattern(width: u32, height: u32, seed: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let v = x.wrapping_mul(7).wrapping_add(y.wrapping_mul(13)).wrapping_add(seed * 31);
        Rgb([(v % 251) as u8, ((x * 255) / width.max(1)) as u8, ((y * 255) / height.max(1)) as u8])
    })
}

/// Writes `image` as a JPEG of quality 95.
pub fn write_jpeg(path: &Path, image: &RgbImage) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(file, 95);
    encoder.encode_image(image).unwrap();
}

/// Writes a class-folder dataset: `classes[i]` gets `per_class` JPEGs of `w × h`.
pub fn write_class_folders(root: &Path, classes: &[&str], per_class: usize, w: u32, h: u32) {
    for (c, class) in classes.iter().enumerate() {
        for i in 0..per_class {
            write_jpeg(
                &root.join(class).join(format!("img_{i:03}.jpg")),
                &pattern(w, h, (c * 100 + i) as u32),
            );
        }
    }
}
