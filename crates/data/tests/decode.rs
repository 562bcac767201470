//! Decoding: EXIF orientation, grey, alpha, 16-bit and CMYK to 8-bit; bad files; reduced
//! DCT scale.

mod common;

use std::path::Path;

use funmatch_data::decode::{decode_bytes, decode_file, decode_for_views, load_file_for_views};
use funmatch_data::{DataError, Pixels, ViewNeeds};
use image::{DynamicImage, GrayImage, ImageBuffer, ImageEncoder, Luma, LumaA, Rgb, RgbImage, Rgba};

use common::*;

/// A minimal big-endian EXIF (TIFF) block holding only an orientation tag.
fn exif_with_orientation(orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one IFD entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // one value
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]); // padding of the value field
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    tiff
}

/// A 40×20 picture, dark except for a red block in its top-left corner.
fn marked_picture() -> RgbImage {
    RgbImage::from_fn(
        40,
        20,
        |x, y| if x < 8 && y < 8 { Rgb([250, 0, 0]) } else { Rgb([20, 20, 20]) },
    )
}

fn jpeg_with_orientation(image: &RgbImage, orientation: u16) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95);
    encoder.set_exif_metadata(exif_with_orientation(orientation)).unwrap();
    encoder
        .write_image(image.as_raw(), image.width(), image.height(), image::ExtendedColorType::Rgb8)
        .unwrap();
    bytes
}

fn rgb(pixels: Pixels) -> RgbImage {
    match pixels {
        Pixels::Rgb(i) => i,
        Pixels::Grey(_) => panic!("expected RGB pixels, found grey"),
    }
}

fn is_red(p: &Rgb<u8>) -> bool {
    p.0[0] > 200 && p.0[1] < 60 && p.0[2] < 60
}

#[test]
fn exif_orientation_is_applied() {
    // 6 = "rotate 90° clockwise to display": the top-left corner goes to the top right.
    let decoded = rgb(decode_bytes(&jpeg_with_orientation(&marked_picture(), 6), "rot6").unwrap());
    assert_eq!(decoded.dimensions(), (20, 40));
    assert!(is_red(decoded.get_pixel(17, 2)), "top right: {:?}", decoded.get_pixel(17, 2));
    assert!(!is_red(decoded.get_pixel(2, 2)), "top left: {:?}", decoded.get_pixel(2, 2));

    // 3 = rotate 180°: the mark goes to the bottom right.
    let decoded = rgb(decode_bytes(&jpeg_with_orientation(&marked_picture(), 3), "rot3").unwrap());
    assert_eq!(decoded.dimensions(), (40, 20));
    assert!(is_red(decoded.get_pixel(37, 17)), "{:?}", decoded.get_pixel(37, 17));

    // 1 = as stored.
    let decoded = rgb(decode_bytes(&jpeg_with_orientation(&marked_picture(), 1), "rot1").unwrap());
    assert!(is_red(decoded.get_pixel(2, 2)));
}

#[test]
fn exif_orientation_is_applied_when_decoding_at_a_reduced_scale() {
    let big = RgbImage::from_fn(320, 160, |x, y| {
        if x < 64 && y < 64 {
            Rgb([250, 0, 0])
        } else {
            Rgb([20, 20, 20])
        }
    });
    let bytes = jpeg_with_orientation(&big, 6);
    let mut planned = None;
    let loaded = decode_for_views(&bytes, "rot6", &mut |w, h| {
        planned = Some((w, h));
        ViewNeeds { min_scale: 0.25, rows: f64::INFINITY }
    })
    .unwrap();
    assert_eq!(planned, Some((160, 320)), "the plan sees the oriented full size");
    assert_eq!((loaded.full_width, loaded.full_height), (160, 320));
    let small = rgb(loaded.pixels);
    assert_eq!(small.dimensions(), (40, 80), "decoded at 1/4");
    assert!(is_red(small.get_pixel(36, 3)), "top right: {:?}", small.get_pixel(36, 3));
    assert!(!is_red(small.get_pixel(3, 3)), "top left: {:?}", small.get_pixel(3, 3));
}

#[test]
fn reduced_scale_decoding_matches_a_full_decode_and_is_only_used_when_allowed() {
    let path = photos_dir().join("img_0000.jpg");
    let full = rgb(decode_file(&path).unwrap());

    let at_full =
        load_file_for_views(&path, &mut |_, _| ViewNeeds { min_scale: 0.9, rows: 1e9 }).unwrap();
    assert_eq!(at_full.pixels.width(), full.width(), "a 0.9 plan must not reduce");

    let half =
        load_file_for_views(&path, &mut |_, _| ViewNeeds { min_scale: 0.5, rows: 1e9 }).unwrap();
    assert_eq!((half.full_width, half.full_height), full.dimensions());
    let half = rgb(half.pixels);
    assert_eq!(half.dimensions(), (full.width().div_ceil(2), full.height().div_ceil(2)));

    // Compare with 2×2 averages of the full decode: DCT scaling is a low-pass, so the mean
    // difference stays within a few grey levels.
    let mut total = 0.0;
    let mut count = 0.0;
    for y in 0..full.height() / 2 {
        for x in 0..full.width() / 2 {
            for c in 0..3 {
                let sum: u32 = [(0, 0), (1, 0), (0, 1), (1, 1)]
                    .iter()
                    .map(|(dx, dy)| u32::from(full.get_pixel(2 * x + dx, 2 * y + dy).0[c]))
                    .sum();
                total += (f64::from(sum) / 4.0 - f64::from(half.get_pixel(x, y).0[c])).abs();
                count += 1.0;
            }
        }
    }
    let mean = total / count;
    assert!(mean < 4.0, "mean difference to a 2×2 box average: {mean:.2} levels");
}

#[test]
fn baseline_jpegs_are_decoded_only_down_to_the_rows_the_views_need() {
    for name in ["img_0000.jpg", "img_0001.jpg", "img_0007.jpg"] {
        let path = photos_dir().join(name);
        let full = rgb(decode_file(&path).unwrap());
        let cut = load_file_for_views(&path, &mut |_, _| ViewNeeds { min_scale: 1.0, rows: 100.5 })
            .unwrap();
        assert_eq!((cut.full_width, cut.full_height), full.dimensions(), "{name}");
        assert_eq!(cut.scale, 1.0);
        let cut = rgb(cut.pixels);
        assert_eq!(cut.width(), full.width(), "{name}");
        assert!(
            (101..full.height()).contains(&cut.height()),
            "{name}: {} rows decoded",
            cut.height()
        );
        for y in 0..101 {
            for x in 0..full.width() {
                assert_eq!(cut.get_pixel(x, y), full.get_pixel(x, y), "{name}: pixel ({x}, {y})");
            }
        }
    }

    // Rotated pictures are decoded whole: their displayed rows are stored columns.
    let bytes = jpeg_with_orientation(&RgbImage::from_pixel(64, 256, Rgb([9, 9, 9])), 6);
    let loaded =
        decode_for_views(&bytes, "rot6", &mut |_, _| ViewNeeds { min_scale: 1.0, rows: 10.0 })
            .unwrap();
    assert_eq!((loaded.pixels.width(), loaded.pixels.height()), (256, 64));
}

#[test]
fn grey_jpeg_stays_grey() {
    let grey = GrayImage::from_fn(16, 8, |x, _| Luma([(x * 15) as u8]));
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 100)
        .encode_image(&grey)
        .unwrap();
    let Pixels::Grey(decoded) = decode_bytes(&bytes, "grey.jpg").unwrap() else {
        panic!("grey JPEG did not decode as grey")
    };
    assert_eq!(decoded.dimensions(), (16, 8));
    let rgb = Pixels::Grey(decoded.clone()).into_rgb();
    assert!(decoded.pixels().zip(rgb.pixels()).all(|(g, c)| c.0 == [g.0[0]; 3]));
}

fn png_bytes(image: &DynamicImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
    bytes
}

#[test]
fn alpha_is_dropped_and_colours_are_kept() {
    let rgba =
        ImageBuffer::from_fn(6, 4, |x, y| Rgba([x as u8 * 40, y as u8 * 60, 7, (x * y) as u8]));
    let decoded =
        rgb(decode_bytes(&png_bytes(&DynamicImage::ImageRgba8(rgba.clone())), "rgba.png").unwrap());
    for (x, y, p) in decoded.enumerate_pixels() {
        let q = rgba.get_pixel(x, y).0;
        assert_eq!(p.0, [q[0], q[1], q[2]], "pixel ({x}, {y})");
    }

    let grey_alpha = ImageBuffer::from_fn(3, 3, |x, _| LumaA([x as u8 * 100, 128u8]));
    let Pixels::Grey(g) =
        decode_bytes(&png_bytes(&DynamicImage::ImageLumaA8(grey_alpha)), "la.png").unwrap()
    else {
        panic!("grey + alpha did not decode as grey")
    };
    assert_eq!(g.get_pixel(2, 1).0, [200]);
}

#[test]
fn sixteen_bit_images_are_scaled_to_eight_bits() {
    let rgb16: ImageBuffer<Rgb<u16>, Vec<u16>> =
        ImageBuffer::from_fn(4, 2, |x, _| Rgb([65535, 257 * 100, x as u16 * 257 * 50]));
    let decoded =
        rgb(decode_bytes(&png_bytes(&DynamicImage::ImageRgb16(rgb16)), "rgb16.png").unwrap());
    assert_eq!(decoded.get_pixel(3, 1).0, [255, 100, 150]);

    let grey16: ImageBuffer<Luma<u16>, Vec<u16>> =
        ImageBuffer::from_fn(2, 2, |_, _| Luma([257 * 77]));
    let Pixels::Grey(g) =
        decode_bytes(&png_bytes(&DynamicImage::ImageLuma16(grey16)), "l16.png").unwrap()
    else {
        panic!("16-bit grey did not decode as grey")
    };
    assert_eq!(g.get_pixel(1, 1).0, [77]);
}

#[test]
fn cmyk_jpeg_becomes_rgb() {
    // Left half cyan ink only, right half full black ink; stored Adobe-style (inverted).
    let (w, h) = (32u16, 16u16);
    let mut cmyk = Vec::new();
    for _y in 0..h {
        for x in 0..w {
            cmyk.extend_from_slice(if x < w / 2 { &[255, 0, 0, 0] } else { &[0, 0, 0, 255] });
        }
    }
    let mut bytes = Vec::new();
    jpeg_encoder::Encoder::new(&mut bytes, 100)
        .encode(&cmyk, w, h, jpeg_encoder::ColorType::Cmyk)
        .unwrap();

    let decoded = rgb(decode_bytes(&bytes, "cmyk.jpg").unwrap());
    assert_eq!(decoded.dimensions(), (32, 16));
    let cyan = decoded.get_pixel(4, 8).0;
    let black = decoded.get_pixel(28, 8).0;
    assert!(cyan[0] < 40 && cyan[1] > 215 && cyan[2] > 215, "cyan ink decoded as {cyan:?}");
    assert!(black.iter().all(|&v| v < 40), "black ink decoded as {black:?}");
}

#[test]
fn undecodable_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.jpg");
    std::fs::write(&path, b"\xFF\xD8\xFF\xE0 this is not really a JPEG").unwrap();
    let err = decode_file(&path).unwrap_err();
    assert!(matches!(err, DataError::Decode { .. }), "{err:?}");
    assert!(err.to_string().contains("broken.jpg"), "{err}");

    let err = decode_file(Path::new("/nonexistent/x.png")).unwrap_err();
    assert!(
        matches!(err, DataError::Io { .. }) && err.to_string().contains("/nonexistent/x.png"),
        "{err}"
    );

    std::fs::write(&path, b"plain text").unwrap();
    let err = load_file_for_views(&path, &mut |_, _| ViewNeeds::everything()).unwrap_err();
    assert!(err.to_string().contains("broken.jpg"), "{err}");
}
