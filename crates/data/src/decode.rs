//! Decoding image files to 8-bit pixels.
//!
//! Every format the `image` crate was built with is read; EXIF orientation is applied; grey
//! (with or without alpha, 8 or 16 bits) becomes [`Pixels::Grey`], everything else (RGB,
//! RGBA, 16-bit, CMYK JPEG) becomes [`Pixels::Rgb`]. Alpha is dropped, as PIL's
//! `convert("RGB")` does.
//!
//! JPEGs can be decoded at a reduced DCT scale (1/2, 1/4 or 1/8) when the caller's plan says
//! the crops stay at least at output resolution; that skips most of the inverse DCT and
//! colour conversion work for large photos and small views.

use std::io::Cursor;
use std::path::Path;

use image::metadata::Orientation;
use image::{DynamicImage, GrayImage, ImageDecoder, RgbImage};

use crate::dataset::{Loaded, Pixels, ViewNeeds};
use crate::DataError;

/// Decodes an image held in memory; `what` names it in errors.
pub fn decode_bytes(bytes: &[u8], what: &str) -> Result<Pixels, DataError> {
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DataError::decode(what, e))?;
    let mut decoder = reader.into_decoder().map_err(|e| DataError::decode(what, e))?;

    // A broken EXIF block should not cost the picture: fall back to no rotation.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| DataError::decode(what, e))?;
    image.apply_orientation(orientation);

    Ok(to_pixels(image))
}

/// Reads and decodes an image file.
pub fn decode_file(path: &Path) -> Result<Pixels, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_bytes(&bytes, &path.display().to_string())
}

/// Reads and decodes an image file at the smallest scale `plan` allows (see
/// [`crate::Dataset::load_for_views`]).
pub fn load_file_for_views(
    path: &Path,
    plan: &mut dyn FnMut(u32, u32) -> ViewNeeds,
) -> Result<Loaded, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_for_views(&bytes, &path.display().to_string(), plan)
}

/// Decodes an image held in memory at the smallest scale `plan` allows.
pub fn decode_for_views(
    bytes: &[u8],
    what: &str,
    plan: &mut dyn FnMut(u32, u32) -> ViewNeeds,
) -> Result<Loaded, DataError> {
    if let Some(header) = jpeg_header(bytes) {
        let (full_width, full_height) = header.oriented_size();
        let needs = plan(full_width, full_height);
        let scale = supported_scale(needs.min_scale);
        let pixels = if scale < 1.0 && header.reducible {
            decode_jpeg_scaled(bytes, what, &header, scale)?
        } else {
            match header.cut_at(bytes, needs.rows) {
                Some(cut) => decode_bytes(&cut, what)?,
                None => decode_bytes(bytes, what)?,
            }
        };
        let scale = if pixels.width() == full_width { 1.0 } else { scale };
        return Ok(Loaded { pixels, scale, full_width, full_height });
    }

    let pixels = decode_bytes(bytes, what)?;
    let (full_width, full_height) = (pixels.width(), pixels.height());
    plan(full_width, full_height);
    Ok(Loaded { pixels, scale: 1.0, full_width, full_height })
}

fn to_pixels(image: DynamicImage) -> Pixels {
    match image {
        DynamicImage::ImageLuma8(g) => Pixels::Grey(g),
        DynamicImage::ImageRgb8(rgb) => Pixels::Rgb(rgb),
        DynamicImage::ImageLumaA8(_)
        | DynamicImage::ImageLuma16(_)
        | DynamicImage::ImageLumaA16(_) => Pixels::Grey(image.to_luma8()),
        other => Pixels::Rgb(other.to_rgb8()),
    }
}

/// What the JPEG header says, read without decoding the image data.
struct JpegHeader {
    width: u32,
    height: u32,
    orientation: Orientation,
    /// One or three components (the reduced-scale decoder's well-tested formats); CMYK and
    /// anything unusual go through the full decoder.
    reducible: bool,
    /// The offset of the height field of the baseline (SOF0/SOF1) frame header; `None` for
    /// progressive and other frames, which cannot be cut short.
    baseline_height_at: Option<usize>,
}

impl JpegHeader {
    /// A copy of the file whose frame ends after `rows` displayed rows, when that saves
    /// work: baseline frames only, and only when stored rows are displayed rows (no EXIF
    /// rotation or vertical flip).
    fn cut_at(&self, bytes: &[u8], rows: f64) -> Option<Vec<u8>> {
        let at = self.baseline_height_at?;
        if !matches!(self.orientation, Orientation::NoTransforms | Orientation::FlipHorizontal) {
            return None;
        }
        if rows.is_nan() || rows >= f64::from(self.height) {
            return None;
        }
        // Whole MCU rows of 16 lines plus one more, so that chroma upsampling at the cut sees
        // its neighbours as in a full decode.
        let rows = ((rows.max(1.0) / 16.0).ceil() as u32 + 1) * 16;
        if rows >= self.height {
            return None;
        }
        let mut cut = bytes.to_vec();
        cut[at..at + 2].copy_from_slice(&(rows as u16).to_be_bytes());
        Some(cut)
    }

    fn oriented_size(&self) -> (u32, u32) {
        use Orientation::*;
        match self.orientation {
            Rotate90 | Rotate270 | Rotate90FlipH | Rotate270FlipH => (self.height, self.width),
            _ => (self.width, self.height),
        }
    }
}

fn jpeg_header(bytes: &[u8]) -> Option<JpegHeader> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.read_info().ok()?;
    let info = decoder.info()?;
    let orientation = decoder
        .exif_data()
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    let reducible = matches!(
        info.pixel_format,
        jpeg_decoder::PixelFormat::L8 | jpeg_decoder::PixelFormat::RGB24
    );
    Some(JpegHeader {
        width: info.width.into(),
        height: info.height.into(),
        orientation,
        reducible,
        baseline_height_at: baseline_height_offset(bytes),
    })
}

/// The offset of the height field in the file's SOF0/SOF1 (baseline or extended sequential,
/// Huffman) frame header, found by walking the marker segments before the first scan.
fn baseline_height_offset(bytes: &[u8]) -> Option<usize> {
    let mut at = 2; // after SOI
    while at + 4 <= bytes.len() {
        if bytes[at] != 0xFF {
            return None;
        }
        let marker = bytes[at + 1];
        if marker == 0xFF {
            at += 1; // fill byte
            continue;
        }
        let length = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
        match marker {
            // Segment: marker, length, precision, then the height.
            0xC0 | 0xC1 => return (at + 7 <= bytes.len()).then_some(at + 5),
            // DHT (C4), JPG (C8) and DAC (CC) share the range of the other frame types,
            // which (like a scan before any frame) mean: leave the file alone.
            0xC4 | 0xC8 | 0xCC => at += 2 + length,
            0xC2..=0xCF | 0xDA => return None,
            _ => at += 2 + length,
        }
    }
    None
}

/// The smallest DCT scale (1/8, 1/4, 1/2 or 1) that is at least `min_scale`.
fn supported_scale(min_scale: f64) -> f64 {
    [0.125, 0.25, 0.5].into_iter().find(|&s| s >= min_scale).unwrap_or(1.0)
}

fn decode_jpeg_scaled(
    bytes: &[u8],
    what: &str,
    header: &JpegHeader,
    scale: f64,
) -> Result<Pixels, DataError> {
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    let want_w = (header.width as f64 * scale).ceil() as u16;
    let want_h = (header.height as f64 * scale).ceil() as u16;
    let (w, h) = decoder.scale(want_w, want_h).map_err(|e| DataError::decode(what, e))?;
    let data = decoder.decode().map_err(|e| DataError::decode(what, e))?;
    let (w, h) = (u32::from(w), u32::from(h));

    let image = if data.len() == (w * h) as usize {
        GrayImage::from_raw(w, h, data).map(DynamicImage::ImageLuma8)
    } else {
        RgbImage::from_raw(w, h, data).map(DynamicImage::ImageRgb8)
    };
    let mut image = image.ok_or_else(|| {
        DataError::decode(what, format!("reduced decoder returned a buffer that is not {w}×{h}"))
    })?;
    image.apply_orientation(header.orientation);
    Ok(to_pixels(image))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_scale_never_goes_below_the_request() {
        assert_eq!(supported_scale(0.1), 0.125);
        assert_eq!(supported_scale(0.125), 0.125);
        assert_eq!(supported_scale(0.2), 0.25);
        assert_eq!(supported_scale(0.26), 0.5);
        assert_eq!(supported_scale(0.51), 1.0);
        assert_eq!(supported_scale(3.0), 1.0);
    }
}
