//! Every dataset kind: class folders, list files, IDX, the ImageNet eval layouts, splits.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use funmatch_data::{
    fashion_mnist, imagenet, split, DataError, Dataset, FileDataset, IdxDataset, MnistSplit,
    Pixels, FASHION_MNIST_CLASSES,
};

use common::*;

fn labels_of(d: &dyn Dataset) -> Vec<u32> {
    (0..d.len()).map(|i| d.label(i)).collect()
}

fn names_of(d: &FileDataset) -> Vec<String> {
    (0..d.len()).map(|i| d.path(i).file_name().unwrap().to_string_lossy().into_owned()).collect()
}

#[test]
fn image_folder_sorts_classes_and_walks_nested_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_jpeg(&root.join("zebra/b.jpg"), &pattern(8, 8, 0));
    write_jpeg(&root.join("zebra/a.JPG"), &pattern(8, 8, 1));
    write_jpeg(&root.join("apple/deep/er/c.jpg"), &pattern(8, 8, 2));
    write_jpeg(&root.join("apple/a.jpeg"), &pattern(8, 8, 3));
    std::fs::write(root.join("apple/notes.txt"), "not an image").unwrap();
    std::fs::create_dir_all(root.join("mango")).unwrap();

    let d = FileDataset::image_folder(root).unwrap();
    assert_eq!(d.class_names(), ["apple", "mango", "zebra"]);
    assert_eq!(names_of(&d), ["a.jpeg", "c.jpg", "a.JPG", "b.jpg"]);
    assert_eq!(labels_of(&d), [0, 0, 2, 2]);
    assert!(d.describe(1).ends_with("apple/deep/er/c.jpg"), "{}", d.describe(1));
    let image = d.load(0).unwrap();
    assert_eq!(image.dimensions(), (8, 8));
}

#[test]
fn image_folder_without_class_folders_is_an_error_naming_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let err = FileDataset::image_folder(dir.path()).unwrap_err();
    assert!(err.to_string().contains(&dir.path().display().to_string()), "{err}");
}

#[test]
fn numeric_folders_sort_numerically_not_as_strings() {
    let dir = tempfile::tempdir().unwrap();
    for class in ["10", "2", "0", "1"] {
        write_jpeg(&dir.path().join(class).join("x.jpg"), &pattern(4, 4, 0));
    }
    let d = imagenet::numeric_folders(dir.path()).unwrap();
    assert_eq!(labels_of(&d), [0, 1, 2, 10]);
    assert_eq!(d.class_names().len(), 11);

    std::fs::create_dir_all(dir.path().join("extra")).unwrap();
    let err = imagenet::numeric_folders(dir.path()).unwrap_err();
    assert!(err.to_string().contains("\"extra\""), "{err}");
}

#[test]
fn wnid_folders_map_into_the_callers_classes() {
    let dir = tempfile::tempdir().unwrap();
    for wnid in ["n01498041", "n01443537"] {
        write_jpeg(&dir.path().join(wnid).join("x.jpg"), &pattern(4, 4, 0));
    }
    let map: HashMap<String, u32> =
        [("n01443537".to_string(), 1), ("n01498041".to_string(), 6), ("n99999999".into(), 999)]
            .into();
    let d = imagenet::wnid_folders(dir.path(), Some(&map)).unwrap();
    assert_eq!(labels_of(&d), [1, 6]);
    assert_eq!(d.class_names().len(), 1000);
    assert_eq!(d.class_names()[6], "n01498041");

    // Without a map: sorted position, as for the 1000 synset folders.
    let d = imagenet::wnid_folders(dir.path(), None).unwrap();
    assert_eq!(labels_of(&d), [0, 1]);
    assert_eq!(
        imagenet::synset_folders(dir.path()).unwrap().class_names(),
        ["n01443537", "n01498041"]
    );

    let partial: HashMap<String, u32> = [("n01443537".to_string(), 1)].into();
    let err = imagenet::wnid_folders(dir.path(), Some(&partial)).unwrap_err();
    assert!(err.to_string().contains("n01498041"), "{err}");
}

#[test]
fn flat_val_files_take_labels_from_the_ground_truth_through_the_id_table() {
    let dir = tempfile::tempdir().unwrap();
    for n in [3, 1, 2] {
        write_jpeg(&dir.path().join(format!("ILSVRC2012_val_{n:08}.JPEG")), &pattern(4, 4, n));
    }
    std::fs::write(dir.path().join("README.txt"), "ignored").unwrap();
    let gt = dir.path().join("ground_truth.txt");
    std::fs::write(&gt, "490\n361\n171\n822\n").unwrap();
    // ILSVRC id → class index: a made-up table where id k maps to class 1000 − k.
    let table: Vec<u32> = (1..=1000).map(|id| 1000 - id).collect();
    let names: Vec<String> = (0..1000).map(|i| format!("class{i}")).collect();

    let d = imagenet::flat_val(dir.path(), &gt, &table, names.clone()).unwrap();
    assert_eq!(d.len(), 3);
    assert!(d.describe(0).ends_with("ILSVRC2012_val_00000001.JPEG"));
    assert_eq!(labels_of(&d), [510, 639, 829]);

    std::fs::write(&gt, "490\n").unwrap();
    let err = imagenet::flat_val(dir.path(), &gt, &table, names.clone()).unwrap_err();
    assert!(err.to_string().contains("needs line 2"), "{err}");
    std::fs::write(&gt, "490\n1001\n171\n").unwrap();
    let err = imagenet::flat_val(dir.path(), &gt, &table, names).unwrap_err();
    assert!(err.to_string().contains("ILSVRC id 1001"), "{err}");
}

#[test]
fn list_file_resolves_paths_and_reports_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    write_jpeg(&dir.path().join("imgs/a.jpg"), &pattern(4, 4, 0));
    write_jpeg(&dir.path().join("imgs/b c.jpg"), &pattern(4, 4, 1));
    let list = dir.path().join("train.tsv");
    std::fs::write(&list, "# path\tlabel\nimgs/b c.jpg\t3\n\nimgs/a.jpg\t0\n").unwrap();

    let d = FileDataset::list_file(&list, None).unwrap();
    assert_eq!(labels_of(&d), [3, 0]);
    assert_eq!(d.class_names().len(), 4);
    assert!(d.load(0).is_ok(), "{}", d.describe(0));
    let named = d.with_class_names(vec!["a".into(), "b".into(), "c".into(), "d".into()]).unwrap();
    assert_eq!(named.class_names()[3], "d");

    std::fs::write(&list, "imgs/a.jpg\t0\nimgs/b.jpg three\n").unwrap();
    let err = FileDataset::list_file(&list, None).unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
    std::fs::write(&list, "imgs/a.jpg\tzero\n").unwrap();
    let err = FileDataset::list_file(&list, None).unwrap_err();
    assert!(err.to_string().contains("integer label"), "{err}");
}

#[test]
fn fashion_mnist_reads_the_debian_files() {
    let root = fashion_dir();
    let train = fashion_mnist(&root, MnistSplit::Train).unwrap();
    let test = fashion_mnist(&root, MnistSplit::Test).unwrap();
    assert_eq!((train.len(), test.len()), (60_000, 10_000));
    assert_eq!(train.class_names(), FASHION_MNIST_CLASSES);
    assert_eq!(train.image_size(), (28, 28));

    let mut counts = [0usize; 10];
    for i in 0..train.len() {
        counts[train.label(i) as usize] += 1;
    }
    assert_eq!(counts, [6000; 10]);

    // Grey stays grey in memory and becomes RGB by replicating the channel.
    let Pixels::Grey(grey) = train.load_pixels(0).unwrap() else { panic!("expected grey") };
    let rgb = train.load(0).unwrap();
    assert!(grey.pixels().zip(rgb.pixels()).all(|(g, c)| c.0 == [g.0[0]; 3]));
    assert!(grey.pixels().any(|p| p.0[0] > 0), "the first image is all black");
    assert_eq!(train.describe(5), "idx:train-images-idx3-ubyte.gz#5");
}

fn write_idx(path: &Path, dims: &[u32], data: &[u8]) {
    let mut bytes = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn idx_files_read_uncompressed_and_reject_wrong_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("mnist-images");
    let labels = dir.path().join("mnist-labels");
    let pixels: Vec<u8> = (0..3 * 2 * 4).map(|v| v as u8).collect();
    write_idx(&images, &[3, 2, 4], &pixels);
    write_idx(&labels, &[3], &[7, 0, 3]);

    let d = IdxDataset::open(&images, &labels).unwrap();
    assert_eq!(d.len(), 3);
    assert_eq!(d.image_size(), (2, 4));
    assert_eq!(labels_of(&d), [7, 0, 3]);
    assert_eq!(d.class_names().len(), 8, "numbered names up to the largest label");
    assert_eq!(d.raw(1), &pixels[8..16]);
    assert_eq!(d.load(1).unwrap().dimensions(), (4, 2));

    write_idx(&labels, &[2], &[7, 0]);
    let err = IdxDataset::open(&images, &labels).unwrap_err();
    assert!(err.to_string().contains("expected 3 labels"), "{err}");
    write_idx(&images, &[3, 2, 4], &pixels[..20]);
    let err = IdxDataset::open(&images, &labels).unwrap_err();
    assert!(matches!(err, DataError::Format { .. }) && err.to_string().contains("24"), "{err}");
}

#[test]
fn split_is_seeded_stable_stratified_and_disjoint() {
    let data: Arc<dyn Dataset> = Arc::new(fashion_mnist(&fashion_dir(), MnistSplit::Test).unwrap());
    let (train, held) = split(data.clone(), 0.1, 42).unwrap();
    let (train_again, held_again) = split(data.clone(), 0.1, 42).unwrap();
    let (_, held_other) = split(data.clone(), 0.1, 43).unwrap();

    assert_eq!(held.indices(), held_again.indices());
    assert_eq!(train.indices(), train_again.indices());
    assert_ne!(held.indices(), held_other.indices(), "another seed gives another split");
    assert_eq!(held.len(), 1000);
    assert_eq!(train.len() + held.len(), data.len());

    let mut seen = vec![false; data.len()];
    for &i in train.indices().iter().chain(held.indices()) {
        assert!(!seen[i], "index {i} is in both parts");
        seen[i] = true;
    }
    let mut per_class = [0usize; 10];
    for i in 0..held.len() {
        per_class[held.label(i) as usize] += 1;
    }
    assert_eq!(per_class, [100; 10], "each class holds out its share");
    assert_eq!(held.describe(0), data.describe(held.indices()[0]));
    assert!(split(data, 1.5, 0).is_err());
}
