//! Statistics of the augmentations and the properties of rendering a view.

mod common;

use std::sync::Arc;

use funmatch_data::view::{eval_crop, eval_view, render, INCEPTION_AREA, INCEPTION_RATIO};
use funmatch_data::{
    fashion_mnist, Crop, Dataset, Interpolation, Loader, LoaderConfig, MnistSplit, Pixels,
    ViewConfig, ViewMode,
};
use image::{GrayImage, Luma, RgbImage};

use common::*;

const N: usize = 20_000;
const W: u32 = 500;
const H: u32 = 375;

fn loader(mode: ViewMode, teacher: Option<ViewConfig>, train: bool) -> Loader {
    let data: Arc<dyn Dataset> =
        Arc::new(fashion_mnist(&fashion_dir(), MnistSplit::Train).unwrap());
    let mut config = if train {
        LoaderConfig::train(64, ViewConfig::square(224))
    } else {
        LoaderConfig::eval(64, ViewConfig::square(224))
    };
    config.mode = mode;
    config.teacher = teacher;
    config.seed = 11;
    Loader::new(data, config).unwrap()
}

#[test]
fn inception_crops_stay_within_the_area_and_aspect_bounds() {
    let loader = loader(ViewMode::Shared, None, true);
    let (mut areas, mut fallbacks, mut flips) = (Vec::new(), 0, 0);
    let (mut left_edge, mut right_edge) = (0, 0);
    for i in 0..N {
        let v = loader.views_of(0, i, W, H);
        let c = v.student;
        assert!(
            c.x >= 0.0 && c.y >= 0.0 && c.x + c.width <= W as f64 && c.y + c.height <= H as f64,
            "crop {c:?} leaves the {W}×{H} image"
        );
        let area = c.width * c.height / (W * H) as f64;
        let ratio = c.width / c.height;
        // Crops are whole pixels, so ratio and area carry a rounding error of about 1 %.
        assert!(area >= INCEPTION_AREA.0 * 0.98 && area <= 1.0, "area share {area} of {c:?}");
        assert!(
            ratio >= INCEPTION_RATIO.0 * 0.98 && ratio <= INCEPTION_RATIO.1 * 1.02,
            "ratio {ratio} of {c:?}"
        );
        if c.width == W as f64 && c.height == H as f64 {
            fallbacks += 1;
        }
        left_edge += usize::from(c.x == 0.0);
        right_edge += usize::from(c.x + c.width == W as f64);
        flips += usize::from(v.student_flip);
        areas.push(area);
    }
    let mean_area = areas.iter().sum::<f64>() / N as f64;
    let small = areas.iter().filter(|&&a| a < 0.1).count() as f64 / N as f64;
    let flip_rate = flips as f64 / N as f64;
    // Areas are uniform in [5 %, 100 %] less the large crops rejected for not fitting.
    assert!((0.40..0.55).contains(&mean_area), "mean area share {mean_area}");
    assert!((0.04..0.07).contains(&small), "share of crops under 10 % of the area: {small}");
    assert!(fallbacks < N / 50, "{fallbacks} of {N} crops fell back to the whole image");
    assert!(
        left_edge > 100 && right_edge > 100,
        "positions: {left_edge} at the left edge, {right_edge} at the right"
    );
    assert!((0.48..0.52).contains(&flip_rate), "flip rate {flip_rate}");
}

#[test]
fn crops_change_with_the_epoch_but_not_with_the_call() {
    let loader = loader(ViewMode::Shared, None, true);
    let mut changed = 0;
    for i in 0..1000 {
        assert_eq!(loader.views_of(3, i, W, H), loader.views_of(3, i, W, H));
        changed +=
            usize::from(loader.views_of(3, i, W, H).student != loader.views_of(4, i, W, H).student);
    }
    assert!(changed > 990, "only {changed} of 1000 crops changed between epochs");
}

#[test]
fn shared_mode_gives_both_models_the_same_crop_and_flip() {
    let loader = loader(ViewMode::Shared, Some(ViewConfig::square(384)), true);
    for i in 0..2000 {
        let v = loader.views_of(0, i, W, H);
        assert_eq!(v.teacher, Some(v.student), "example {i}");
        assert_eq!(v.teacher_flip, v.student_flip, "example {i}");
    }
    // Same view config for both: no separate teacher view at all.
    let same = loader_with_same_teacher();
    assert_eq!(same.views_of(0, 0, W, H).teacher, None);
}

fn loader_with_same_teacher() -> Loader {
    loader(ViewMode::Shared, Some(ViewConfig::square(224)), true)
}

#[test]
fn independent_mode_gives_the_teacher_other_crops_and_flips() {
    let loader = loader(ViewMode::Independent, None, true);
    let (mut same_crop, mut same_flip) = (0, 0);
    for i in 0..N {
        let v = loader.views_of(0, i, W, H);
        let teacher = v.teacher.expect("independent mode always has a teacher crop");
        same_crop += usize::from(teacher == v.student);
        same_flip += usize::from(v.teacher_flip == v.student_flip);
    }
    assert!(same_crop < N / 100, "{same_crop} of {N} teacher crops equal the student's");
    let agreement = same_flip as f64 / N as f64;
    assert!((0.47..0.53).contains(&agreement), "flips agree {agreement} of the time");
}

#[test]
fn fixed_mode_teacher_view_is_the_same_every_epoch() {
    let teacher = ViewConfig::square(224).with_crop_pct(1.0);
    let loader = loader(ViewMode::Fixed, Some(teacher.clone()), true);
    for i in 0..500 {
        let first = loader.views_of(0, i, W, H);
        assert_eq!(first.teacher, Some(eval_crop(W, H, &teacher)));
        assert!(!first.teacher_flip);
        for epoch in 1..4 {
            let later = loader.views_of(epoch, i, W, H);
            assert_eq!(later.teacher, first.teacher, "example {i}, epoch {epoch}");
            assert_ne!(later.student, first.student, "the student still gets fresh crops");
        }
    }
}

#[test]
fn eval_views_are_centre_crops_without_flips() {
    let loader = loader(ViewMode::Shared, None, false);
    let want = eval_crop(W, H, &ViewConfig::square(224));
    for i in 0..100 {
        let v = loader.views_of(i % 3, i, W, H);
        assert_eq!(v.student, want);
        assert!(!v.student_flip);
    }
    // timm: short side to floor(224 / 0.875) = 256, then a 224 centre crop.
    let side = 224.0 * 375.0 / 256.0;
    assert!((want.width - side).abs() < 1e-9 && (want.height - side).abs() < 1e-9, "{want:?}");
    assert!(
        (want.x - (500.0 - side) / 2.0).abs() < 1e-9
            && (want.y - (375.0 - side) / 2.0).abs() < 1e-9
    );
}

fn render_rgb(image: &RgbImage, crop: Crop, flip: bool, view: &ViewConfig) -> Vec<f32> {
    let mut out = vec![0.0; view.floats()];
    render(&Pixels::Rgb(image.clone()), crop, flip, view, &mut out).unwrap();
    out
}

#[test]
fn flipping_mirrors_every_row() {
    let image = pattern(60, 40, 3);
    let view = ViewConfig::new(24, 30);
    let crop = Crop { x: 5.0, y: 3.0, width: 41.0, height: 30.0 };
    let plain = render_rgb(&image, crop, false, &view);
    let flipped = render_rgb(&image, crop, true, &view);
    for c in 0..3 {
        for y in 0..24 {
            for x in 0..30 {
                let a = plain[(c * 24 + y) * 30 + x];
                let b = flipped[(c * 24 + y) * 30 + (29 - x)];
                assert_eq!(a, b, "channel {c}, row {y}, column {x}");
            }
        }
    }
    assert_ne!(plain, flipped);
}

#[test]
fn normalisation_uses_the_views_mean_and_std() {
    let image = RgbImage::from_pixel(10, 10, image::Rgb([255, 0, 51]));
    let view = ViewConfig::square(4).with_mean_std([0.5, 0.5, 0.1], [0.5, 0.25, 0.2]);
    let out = render_rgb(&image, Crop::whole(10, 10), false, &view);
    let want = [(1.0 - 0.5) / 0.5, (0.0 - 0.5) / 0.25, (0.2 - 0.1) / 0.2];
    for c in 0..3 {
        for v in &out[c * 16..(c + 1) * 16] {
            assert!((v - want[c]).abs() < 1e-5, "channel {c}: {v} vs {}", want[c]);
        }
    }
}

#[test]
fn downscaling_antialiases_with_both_filters() {
    // One-pixel stripes: point sampling would give pure 0 or 255, an antialiased resize grey.
    let image =
        RgbImage::from_fn(256, 256, |x, _| image::Rgb([if x % 2 == 0 { 0 } else { 255 }; 3]));
    for interpolation in [Interpolation::Bilinear, Interpolation::Bicubic] {
        let view = ViewConfig::square(32)
            .with_interpolation(interpolation)
            .with_mean_std([0.0; 3], [1.0; 3]);
        let out = render_rgb(&image, Crop::whole(256, 256), false, &view);
        let worst = out.iter().map(|v| (v - 0.5).abs()).fold(0.0f32, f32::max);
        assert!(worst < 0.05, "{interpolation:?}: a value is {worst} away from mid-grey");
    }
}

#[test]
fn grey_images_fill_three_equal_planes() {
    let grey = GrayImage::from_fn(28, 28, |x, y| Luma([(x * 9 + y) as u8]));
    let view = ViewConfig::square(32);
    let out = eval_view(&Pixels::Grey(grey.clone()), &view.clone().with_crop_pct(1.0)).unwrap();
    let plane = 32 * 32;
    assert_eq!(&out[..plane], &out[plane..2 * plane]);
    assert_eq!(&out[..plane], &out[2 * plane..]);
    // The same picture as RGB gives the same floats.
    let rgb = Pixels::Grey(grey).into_rgb();
    let from_rgb = eval_view(&Pixels::Rgb(rgb), &view.with_crop_pct(1.0)).unwrap();
    let worst = out.iter().zip(&from_rgb).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-6, "grey and RGB paths differ by {worst}");
}

#[test]
fn a_wrong_output_buffer_is_an_error() {
    let mut out = vec![0.0; 10];
    let err = render(
        &Pixels::Rgb(pattern(8, 8, 0)),
        Crop::whole(8, 8),
        false,
        &ViewConfig::square(4),
        &mut out,
    )
    .unwrap_err();
    assert!(err.to_string().contains("48"), "{err}");
}
