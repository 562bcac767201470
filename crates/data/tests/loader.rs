//! The loader: batch contents, mixup, determinism across threads and restarts, bad files.

mod common;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use funmatch_data::view::render;
use funmatch_data::{
    fashion_mnist, Batch, DataError, Dataset, FileDataset, Loader, LoaderConfig, MnistSplit,
    Subset, ViewConfig, ViewMode,
};

use common::*;

fn fashion() -> Arc<dyn Dataset> {
    Arc::new(fashion_mnist(&fashion_dir(), MnistSplit::Test).unwrap())
}

fn photos(count: usize) -> Arc<dyn Dataset> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(photos_dir()).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.truncate(count);
    let labels = (0..files.len() as u32).map(|i| i % 5).collect();
    let names = (0..5).map(|i| format!("c{i}")).collect();
    Arc::new(FileDataset::from_parts(files, labels, names).unwrap())
}

fn small_view() -> ViewConfig {
    ViewConfig::square(32)
}

fn assert_same_batch(a: &Batch, b: &Batch, what: &str) {
    assert_eq!((a.epoch, a.step, a.step_in_epoch), (b.epoch, b.step, b.step_in_epoch), "{what}");
    assert_eq!(a.indices, b.indices, "{what}: indices at step {}", a.step);
    assert_eq!(a.labels, b.labels, "{what}: labels at step {}", a.step);
    assert_eq!(a.mixup, b.mixup, "{what}: mixup at step {}", a.step);
    assert!(a.student == b.student, "{what}: student images differ at step {}", a.step);
    assert!(a.teacher == b.teacher, "{what}: teacher images differ at step {}", a.step);
}

#[test]
fn batches_are_identical_for_any_thread_count_and_prefetch() {
    let data = photos(48);
    let mut config = LoaderConfig::train(8, small_view());
    config.seed = 5;
    config.mixup = Some(1.0);
    config.teacher = Some(ViewConfig::square(48));

    let mut one = config.clone();
    one.workers = 1;
    one.prefetch = 0;
    let mut two = config.clone();
    two.workers = 2;
    two.prefetch = 3;
    let a: Vec<Batch> =
        Loader::new(data.clone(), one).unwrap().iter_from(0).take(8).map(Result::unwrap).collect();
    let b: Vec<Batch> =
        Loader::new(data, two).unwrap().iter_from(0).take(8).map(Result::unwrap).collect();
    for (x, y) in a.iter().zip(&b) {
        assert_same_batch(x, y, "1 worker vs 2 workers");
    }
    assert_eq!(a[7].epoch, 1, "the run crossed an epoch boundary");
}

#[test]
fn a_restart_at_a_mid_epoch_step_sees_the_same_batches() {
    let data = fashion();
    let mut config = LoaderConfig::train(100, small_view());
    config.seed = 9;
    config.mixup = Some(0.5);
    config.mode = ViewMode::Independent;
    let loader = Loader::new(data.clone(), config.clone()).unwrap();
    assert_eq!(loader.steps_per_epoch(), 100);

    let straight: Vec<Batch> = loader.iter_from(95).take(10).map(Result::unwrap).collect();
    let resumed_loader = Loader::new(data, config).unwrap();
    let resumed: Vec<Batch> = resumed_loader.iter_from(98).take(7).map(Result::unwrap).collect();
    for (x, y) in straight[3..].iter().zip(&resumed) {
        assert_same_batch(x, y, "uninterrupted vs resumed at step 98");
    }
    assert_eq!(straight[5].epoch, 1);
    assert_eq!(straight[5].step_in_epoch, 0);
    assert_eq!(resumed_loader.batch(103).unwrap().indices, straight[8].indices);
}

#[test]
fn an_epoch_visits_every_example_once_in_a_new_order_each_epoch() {
    let data = fashion();
    let loader = Loader::new(data.clone(), LoaderConfig::train(256, small_view())).unwrap();
    let epoch = |e| -> Vec<usize> { loader.epoch(e).flat_map(|b| b.unwrap().indices).collect() };
    let first = epoch(0);
    assert_eq!(first.len(), 39 * 256, "drop_last keeps whole batches only");
    assert_eq!(first.iter().collect::<HashSet<_>>().len(), first.len(), "an index came twice");
    let second = epoch(1);
    assert_ne!(first, second, "the order must change between epochs");

    let eval = Loader::new(data.clone(), LoaderConfig::eval(256, small_view())).unwrap();
    let order: Vec<usize> = eval.epoch(0).flat_map(|b| b.unwrap().indices).collect();
    assert_eq!(
        order,
        (0..data.len()).collect::<Vec<_>>(),
        "eval keeps the dataset order and the last batch"
    );
}

#[test]
fn shared_views_crop_once_and_resize_twice() {
    let data = fashion();
    let mut config = LoaderConfig::train(16, small_view());
    let teacher =
        ViewConfig::square(56).with_mean_std(ViewConfig::IMAGENET_MEAN, ViewConfig::IMAGENET_STD);
    config.teacher = Some(teacher.clone());
    let loader = Loader::new(data.clone(), config).unwrap();
    let batch = loader.batch(3).unwrap();
    let teacher_images = batch.teacher.as_ref().expect("a distinct teacher view");
    assert_eq!(teacher_images.shape(), [16, 3, 56, 56]);

    for (k, &i) in batch.indices.iter().enumerate() {
        let pixels = data.load_pixels(i).unwrap();
        let v = loader.views_of(batch.epoch, i, 28, 28);
        assert_eq!(v.teacher, Some(v.student));
        let mut want = vec![0.0; small_view().floats()];
        render(&pixels, v.student, v.student_flip, &small_view(), &mut want).unwrap();
        assert_eq!(batch.student.image(k), &want[..], "student view of example {i}");
        let mut want = vec![0.0; teacher.floats()];
        render(&pixels, v.student, v.student_flip, &teacher, &mut want).unwrap();
        assert_eq!(teacher_images.image(k), &want[..], "teacher view of example {i}");
    }

    // The same config for both models: one tensor serves both.
    let mut same = LoaderConfig::train(16, small_view());
    same.teacher = Some(small_view());
    assert!(Loader::new(data, same).unwrap().batch(0).unwrap().teacher.is_none());
}

#[test]
fn independent_views_differ_and_fixed_teacher_views_repeat() {
    let data = fashion();
    let mut config = LoaderConfig::train(32, small_view());
    config.mode = ViewMode::Independent;
    let batch = Loader::new(data.clone(), config.clone()).unwrap().batch(0).unwrap();
    let teacher = batch.teacher.as_ref().unwrap();
    let differing =
        (0..batch.len()).filter(|&k| teacher.image(k) != batch.student.image(k)).count();
    assert!(differing >= 30, "only {differing} of 32 independent views differ");

    config.mode = ViewMode::Fixed;
    config.shuffle = false;
    let loader = Loader::new(data, config).unwrap();
    let first = loader.batch(0).unwrap();
    let next_epoch = loader.batch(loader.steps_per_epoch()).unwrap();
    assert_eq!(first.indices, next_epoch.indices);
    assert!(first.teacher == next_epoch.teacher, "fixed teacher views changed between epochs");
    assert!(first.student != next_epoch.student, "student views must change between epochs");
}

#[test]
fn mixup_mixes_each_image_with_its_predecessor_in_both_views() {
    let data = fashion();
    let mut config = LoaderConfig::train(16, small_view());
    config.teacher = Some(ViewConfig::square(40));
    let plain_loader = Loader::new(data.clone(), config.clone()).unwrap();
    config.mixup = Some(1.0);
    let mixed_loader = Loader::new(data, config).unwrap();

    let mut coefficients = Vec::new();
    for step in 0..200 {
        let mixed = mixed_loader.batch(step).unwrap();
        let a = mixed.mixup.expect("mixup is on");
        assert!((0.5..=1.0).contains(&a), "coefficient {a} at step {step}");
        coefficients.push(a);
        if step < 3 {
            let plain = plain_loader.batch(step).unwrap();
            assert_eq!(plain.indices, mixed.indices);
            for (get, name) in [
                (Box::new(|b: &Batch| b.student.clone()) as Box<dyn Fn(&Batch) -> _>, "student"),
                (Box::new(|b: &Batch| b.teacher.clone().unwrap()), "teacher"),
            ] {
                let (x, m) = (get(&plain), get(&mixed));
                for i in 0..mixed.len() {
                    let p = mixed.mixup_partner(i);
                    assert_eq!(p, (i + 15) % 16);
                    for (j, value) in m.image(i).iter().enumerate() {
                        let want = a * x.image(i)[j] + (1.0 - a) * x.image(p)[j];
                        assert!(
                            (value - want).abs() < 1e-5,
                            "{name} image {i} value {j}: {value} vs {want}"
                        );
                    }
                }
            }
        }
    }
    let mean = coefficients.iter().sum::<f32>() / coefficients.len() as f32;
    assert!(
        (0.71..0.79).contains(&mean),
        "with Beta(1, 1), max(a, 1 − a) averages 0.75; found {mean}"
    );

    let batch = mixed_loader.batch(0).unwrap();
    let soft = batch.soft_labels(10);
    let a = batch.mixup.unwrap();
    for i in 0..batch.len() {
        let row = &soft[i * 10..(i + 1) * 10];
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(row[batch.labels[i] as usize] >= a - 1e-6);
    }
}

#[test]
fn undecodable_files_are_skipped_reported_and_stop_the_run_past_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    write_class_folders(dir.path(), &["cat", "dog"], 5, 40, 30);
    let broken = dir.path().join("dog/img_002.jpg");
    std::fs::write(&broken, b"\xFF\xD8 truncated").unwrap();
    let data: Arc<dyn Dataset> = Arc::new(FileDataset::image_folder(dir.path()).unwrap());

    let mut config = LoaderConfig::eval(4, small_view());
    config.max_failed_share = 0.2;
    let loader = Loader::new(data.clone(), config.clone()).unwrap();
    let batches: Vec<Batch> = loader.epoch(0).map(Result::unwrap).collect();
    let seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
    assert_eq!(seen.len(), 9, "the broken file is left out, the rest kept: {seen:?}");
    let short = batches.iter().find(|b| b.len() == 3).expect("one batch lost an example");
    assert_eq!(short.student.n, 3);
    assert_eq!(short.student.data.len(), 3 * small_view().floats());

    let report = loader.failure_report();
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].what, broken.display().to_string());
    assert!(report.to_string().contains("img_002.jpg"), "{report}");

    config.max_failed_share = 0.05;
    config.prefetch = 2;
    let results: Vec<Result<Batch, DataError>> =
        Loader::new(data, config).unwrap().epoch(0).collect();
    let err = results.last().unwrap().as_ref().unwrap_err();
    assert!(matches!(err, DataError::TooManyFailures { failed: 1, total: 10, .. }), "{err}");
    assert!(err.to_string().contains("img_002.jpg"), "{err}");
    assert!(results.len() < 3, "iteration stops at the error");
}

#[test]
fn configuration_errors_are_reported() {
    let data = fashion();
    let mut config = LoaderConfig::train(0, small_view());
    assert!(Loader::new(data.clone(), config.clone()).is_err());
    config.batch_size = 20_000;
    let err = Loader::new(data.clone(), config.clone()).err().unwrap();
    assert!(err.to_string().contains("10000 examples"), "{err}");
    let mut eval = LoaderConfig::eval(8, small_view());
    eval.mixup = Some(1.0);
    assert!(Loader::new(data.clone(), eval).is_err());
    let subset = Subset::new(data, vec![0, 1, 2]).unwrap();
    assert_eq!(subset.len(), 3);
}

#[test]
fn photo_views_equal_views_of_a_full_decode_although_decoding_stops_early() {
    let data = photos(24);
    let mut config = LoaderConfig::train(24, ViewConfig::square(224));
    let teacher =
        ViewConfig::square(160).with_interpolation(funmatch_data::Interpolation::Bilinear);
    config.teacher = Some(teacher.clone());
    let loader = Loader::new(data.clone(), config).unwrap();
    let batch = loader.batch(0).unwrap();
    for (k, &i) in batch.indices.iter().enumerate() {
        let pixels =
            funmatch_data::decode::decode_file(std::path::Path::new(&data.describe(i))).unwrap();
        let v = loader.views_of(0, i, pixels.width(), pixels.height());
        let mut want = vec![0.0; ViewConfig::square(224).floats()];
        render(&pixels, v.student, v.student_flip, &ViewConfig::square(224), &mut want).unwrap();
        assert!(
            batch.student.image(k) == &want[..],
            "student view of {} ({:?})",
            data.describe(i),
            v.student
        );
        let mut want = vec![0.0; teacher.floats()];
        render(&pixels, v.student, v.student_flip, &teacher, &mut want).unwrap();
        assert!(
            batch.teacher.as_ref().unwrap().image(k) == &want[..],
            "teacher view of {}",
            data.describe(i)
        );
    }
}
