//! Views: where to crop, and how to turn a crop into a normalised NCHW float image.

use std::cell::RefCell;
use std::mem::MaybeUninit;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::dataset::Pixels;
use crate::rng::Rng;
use crate::DataError;

/// Area range of the inception crop, as a share of the image area (the recipe's 5–100 %).
pub const INCEPTION_AREA: (f64, f64) = (0.05, 1.0);
/// Aspect-ratio (width / height) range of the inception crop.
pub const INCEPTION_RATIO: (f64, f64) = (3.0 / 4.0, 4.0 / 3.0);
/// Attempts at a random crop that fits before falling back to a centre crop.
const INCEPTION_ATTEMPTS: usize = 10;

/// Resampling filter of a resize. Both antialias when downscaling (the filter support grows
/// with the scale factor, as PIL does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interpolation {
    /// Triangle filter.
    Bilinear,
    /// Catmull–Rom cubic (a = −0.5), PIL's and timm's "bicubic".
    Bicubic,
}

/// The input a model expects: size, resampling, normalisation and eval crop.
#[derive(Clone, Debug, PartialEq)]
pub struct ViewConfig {
    /// Output height in pixels.
    pub height: u32,
    /// Output width in pixels.
    pub width: u32,
    /// Resampling filter.
    pub interpolation: Interpolation,
    /// Per-channel mean subtracted from pixels in `[0, 1]`.
    pub mean: [f32; 3],
    /// Per-channel standard deviation that pixels are divided by after the mean.
    pub std: [f32; 3],
    /// Eval view: the short side is resized to `floor(size / crop_pct)` and centre-cropped.
    pub crop_pct: f32,
}

impl ViewConfig {
    /// ImageNet's mean (timm's `IMAGENET_DEFAULT_MEAN`).
    pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
    /// ImageNet's standard deviation (timm's `IMAGENET_DEFAULT_STD`).
    pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

    /// A `height × width` view with the BiT defaults: bicubic, pixels to `[−1, 1]`
    /// (mean 0.5, std 0.5), crop_pct 0.875.
    pub fn new(height: u32, width: u32) -> ViewConfig {
        ViewConfig {
            height,
            width,
            interpolation: Interpolation::Bicubic,
            mean: [0.5; 3],
            std: [0.5; 3],
            crop_pct: 0.875,
        }
    }

    /// A square view with the defaults of [`ViewConfig::new`].
    pub fn square(size: u32) -> ViewConfig {
        ViewConfig::new(size, size)
    }

    /// Sets the normalisation.
    pub fn with_mean_std(mut self, mean: [f32; 3], std: [f32; 3]) -> ViewConfig {
        self.mean = mean;
        self.std = std;
        self
    }

    /// Sets the resampling filter.
    pub fn with_interpolation(mut self, interpolation: Interpolation) -> ViewConfig {
        self.interpolation = interpolation;
        self
    }

    /// Sets the eval crop share.
    pub fn with_crop_pct(mut self, crop_pct: f32) -> ViewConfig {
        self.crop_pct = crop_pct;
        self
    }

    /// Floats in one image of this view (3 × height × width).
    pub fn floats(&self) -> usize {
        3 * self.height as usize * self.width as usize
    }

    /// Checks the ranges; `what` names the view in the message.
    pub fn validate(&self, what: &str) -> Result<(), DataError> {
        if self.height == 0 || self.width == 0 {
            return Err(DataError::Config(format!(
                "{what} view size must be positive, found {}×{}",
                self.height, self.width
            )));
        }
        if !(self.crop_pct > 0.0 && self.crop_pct <= 1.0) {
            return Err(DataError::Config(format!(
                "{what} crop_pct must be in (0, 1], found {}",
                self.crop_pct
            )));
        }
        if let Some(s) = self.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(DataError::Config(format!("{what} std must be positive, found {s}")));
        }
        Ok(())
    }
}

/// A rectangle of an image in pixel coordinates; fractional edges are allowed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Crop {
    /// Left edge.
    pub x: f64,
    /// Top edge.
    pub y: f64,
    /// Width.
    pub width: f64,
    /// Height.
    pub height: f64,
}

impl Crop {
    /// The whole `width × height` image.
    pub fn whole(width: u32, height: u32) -> Crop {
        Crop { x: 0.0, y: 0.0, width: width.into(), height: height.into() }
    }

    /// The same rectangle in an image scaled by `sx` horizontally and `sy` vertically.
    pub fn scaled(self, sx: f64, sy: f64) -> Crop {
        Crop { x: self.x * sx, y: self.y * sy, width: self.width * sx, height: self.height * sy }
    }

    /// The smallest image scale at which this crop still covers `view` pixel for pixel.
    pub fn min_scale_for(&self, view: &ViewConfig) -> f64 {
        (f64::from(view.width) / self.width).max(f64::from(view.height) / self.height)
    }
}

/// An inception crop ("random resized crop") of a `width × height` image, with the recipe's
/// area range [`INCEPTION_AREA`]; see [`inception_crop_in`].
pub fn inception_crop(rng: &mut Rng, width: u32, height: u32) -> Crop {
    inception_crop_in(rng, width, height, INCEPTION_AREA)
}

/// An inception crop whose area share is drawn from `area` (`0 < lo ≤ hi ≤ 1`).
///
/// Up to ten tries draw an area share in `area` and a log-uniform aspect ratio in
/// [`INCEPTION_RATIO`], and keep the first rectangle (rounded to whole pixels) that fits,
/// at a uniform position. If none fits, the fallback is the largest centred crop whose aspect
/// ratio is clamped to the range (the whole image when its own ratio is inside).
pub fn inception_crop_in(rng: &mut Rng, width: u32, height: u32, area_share: (f64, f64)) -> Crop {
    let (w, h) = (f64::from(width), f64::from(height));
    let area = w * h;
    let (log_lo, log_hi) = (INCEPTION_RATIO.0.ln(), INCEPTION_RATIO.1.ln());

    for _ in 0..INCEPTION_ATTEMPTS {
        let target = area * rng.uniform_in(area_share.0, area_share.1);
        let ratio = rng.uniform_in(log_lo, log_hi).exp();
        let cw = (target * ratio).sqrt().round();
        let ch = (target / ratio).sqrt().round();
        if cw >= 1.0 && ch >= 1.0 && cw <= w && ch <= h {
            let x = rng.below((w - cw) as u64 + 1) as f64;
            let y = rng.below((h - ch) as u64 + 1) as f64;
            return Crop { x, y, width: cw, height: ch };
        }
    }

    let own_ratio = w / h;
    let (cw, ch) = if own_ratio < INCEPTION_RATIO.0 {
        (w, (w / INCEPTION_RATIO.0).round().min(h))
    } else if own_ratio > INCEPTION_RATIO.1 {
        ((h * INCEPTION_RATIO.1).round().min(w), h)
    } else {
        (w, h)
    };
    Crop { x: ((w - cw) / 2.0).floor(), y: ((h - ch) / 2.0).floor(), width: cw, height: ch }
}

/// The eval crop of a `width × height` image: what "resize the short side to
/// `floor(min(view size) / crop_pct)`, then centre-crop the view size" keeps of the original.
/// Resizing this rectangle once gives the same picture as timm's two steps.
pub fn eval_crop(width: u32, height: u32, view: &ViewConfig) -> Crop {
    let (w, h) = (f64::from(width), f64::from(height));
    let size = f64::from(view.height.min(view.width));
    let scale_size = (size / f64::from(view.crop_pct)).floor();
    let factor = scale_size / w.min(h);
    let cw = (f64::from(view.width) / factor).min(w);
    let ch = (f64::from(view.height) / factor).min(h);
    Crop { x: (w - cw) / 2.0, y: (h - ch) / 2.0, width: cw, height: ch }
}

thread_local! {
    // A resizer keeps buffers and detected CPU features; one per worker thread avoids
    // allocating them for every image.
    static SCRATCH: RefCell<(Resizer, Vec<u8>)> = RefCell::new((Resizer::new(), Vec::new()));
}

/// Resizes `crop` of `pixels` to `view`, optionally mirrors it left–right, and writes the
/// normalised result to `out` as three planes (CHW, `view.floats()` floats).
pub fn render(
    pixels: &Pixels,
    crop: Crop,
    flip: bool,
    view: &ViewConfig,
    out: &mut [f32],
) -> Result<(), DataError> {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and `render_uninit` only ever
    // writes initialised values, so `out` stays fully initialised.
    let out = unsafe { &mut *(out as *mut [f32] as *mut [MaybeUninit<f32>]) };
    render_uninit(pixels, crop, flip, view, out)
}

/// [`render`] into memory that need not be initialised: on success every value of `out`
/// has been written. The loader uses it so that batch buffers are never zeroed first (with
/// 224-pixel views that zeroing costs about a fifth of the pipeline's time).
pub(crate) fn render_uninit(
    pixels: &Pixels,
    crop: Crop,
    flip: bool,
    view: &ViewConfig,
    out: &mut [MaybeUninit<f32>],
) -> Result<(), DataError> {
    if out.len() != view.floats() {
        return Err(DataError::Config(format!(
            "output buffer holds {} floats, the {}×{} view needs {}",
            out.len(),
            view.height,
            view.width,
            view.floats()
        )));
    }
    let (src_w, src_h) = (pixels.width(), pixels.height());
    let (buffer, pixel_type) = match pixels {
        Pixels::Rgb(i) => (i.as_raw().as_slice(), PixelType::U8x3),
        Pixels::Grey(i) => (i.as_raw().as_slice(), PixelType::U8),
    };
    let crop = clamp(crop, src_w, src_h);

    SCRATCH.with(|scratch| {
        let (resizer, dst) = &mut *scratch.borrow_mut();
        let channels = pixel_type.size();
        dst.resize(view.width as usize * view.height as usize * channels, 0);

        let resize_error = |e: &dyn std::fmt::Display| {
            DataError::Config(format!(
                "resizing {crop:?} of a {src_w}×{src_h} image to {}×{}: {e}",
                view.width, view.height
            ))
        };
        let src = ImageRef::new(src_w, src_h, buffer, pixel_type).map_err(|e| resize_error(&e))?;
        let mut dst_image = Image::from_slice_u8(view.width, view.height, dst, pixel_type)
            .map_err(|e| resize_error(&e))?;
        let filter = match view.interpolation {
            Interpolation::Bilinear => FilterType::Bilinear,
            Interpolation::Bicubic => FilterType::CatmullRom,
        };
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(filter)).crop(
            crop.x,
            crop.y,
            crop.width,
            crop.height,
        );
        resizer.resize(&src, &mut dst_image, &options).map_err(|e| resize_error(&e))?;

        normalise(dst, channels, flip, view, out);
        Ok(())
    })
}

/// The eval view of `pixels` as CHW floats: the convenience used by prediction and eval.
pub fn eval_view(pixels: &Pixels, view: &ViewConfig) -> Result<Vec<f32>, DataError> {
    let mut out = vec![0.0; view.floats()];
    render(pixels, eval_crop(pixels.width(), pixels.height(), view), false, view, &mut out)?;
    Ok(out)
}

fn clamp(crop: Crop, width: u32, height: u32) -> Crop {
    let (w, h) = (f64::from(width), f64::from(height));
    let x = crop.x.clamp(0.0, w - 1.0);
    let y = crop.y.clamp(0.0, h - 1.0);
    Crop { x, y, width: crop.width.clamp(1.0, w - x), height: crop.height.clamp(1.0, h - y) }
}

/// Interleaved 8-bit pixels (1 or 3 channels) to normalised CHW planes; writes every value
/// of `out` exactly once.
fn normalise(
    src: &[u8],
    channels: usize,
    flip: bool,
    view: &ViewConfig,
    out: &mut [MaybeUninit<f32>],
) {
    let (w, h) = (view.width as usize, view.height as usize);
    let plane = w * h;
    // (v / 255 − mean) / std as one multiply-add per value.
    let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * view.std[c]));
    let offset: [f32; 3] = std::array::from_fn(|c| -view.mean[c] / view.std[c]);

    for (c, out_plane) in out.chunks_exact_mut(plane).enumerate() {
        let (s, o) = (scale[c], offset[c]);
        let channel = if channels == 3 { c } else { 0 };
        for (y, out_row) in out_plane.chunks_exact_mut(w).enumerate() {
            let src_row = &src[y * w * channels..(y + 1) * w * channels];
            let values = src_row.iter().skip(channel).step_by(channels);
            if flip {
                for (dst, &v) in out_row.iter_mut().rev().zip(values) {
                    dst.write(f32::from(v) * s + o);
                }
            } else {
                for (dst, &v) in out_row.iter_mut().zip(values) {
                    dst.write(f32::from(v) * s + o);
                }
            }
        }
    }
}
