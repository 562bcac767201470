//! Eval sets in every layout, built from real Fashion-MNIST test images written as JPEG and
//! PNG, scored by a tiny model; every metric is checked against values computed here from
//! the model's logits, independently of the crate's tally.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use funmatch_data::decode::decode_file;
use funmatch_data::view::eval_view;
use funmatch_data::{fashion_mnist, Dataset, IdxDataset, MnistSplit, FASHION_MNIST_DIR};
use funmatch_eval::labels::ClassTable;
use funmatch_eval::{
    evaluate, find_set, EvalError, EvalModel, EvalSet, OpenOptions, Preprocess, ProgressMode,
    RunOptions, SetDescriptor,
};
use funmatch_models::{
    init_params, save_model_folder, BitConfig, Interpolation, PretrainedCfg, StemKind,
};

// ---------------------------------------------------------------- fixtures

fn fmnist() -> IdxDataset {
    fashion_mnist(Path::new(FASHION_MNIST_DIR), MnistSplit::Test)
        .expect("Fashion-MNIST test split (Debian's dataset-fashion-mnist) must be installed")
}

/// A tiny BiT with a strong random head (so logits are well separated) saved as a folder.
fn tiny_model(dir: &Path, classes: usize, seed: u64) -> PathBuf {
    let mut cfg = BitConfig::bit(&[1], 1, classes);
    cfg.channels = vec![32];
    cfg.stem_width = 16;
    cfg.stem = StemKind::Small;
    cfg.groups = 8;
    let mut params = init_params(&cfg, seed, &Device::Cpu).unwrap();
    let head = params["head.fc.weight"].affine(300.0, 0.0).unwrap();
    params.insert("head.fc.weight".into(), head);
    let pre = PretrainedCfg {
        input_size: [3, 32, 32],
        interpolation: Interpolation::Bilinear,
        crop_pct: 1.0,
        mean: [0.5; 3],
        std: [0.5; 3],
    };
    let out = dir.join(format!("model-{classes}-{seed}"));
    save_model_folder(&out, &cfg, &pre, None, &params).unwrap();
    out
}

fn load(path: &Path) -> EvalModel {
    EvalModel::load(&path.display().to_string(), path, &Device::Cpu, &Preprocess::default())
        .unwrap()
}

fn quiet() -> RunOptions {
    RunOptions { batch_size: 7, workers: 2, progress: ProgressMode::Quiet }
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn open(name: &str, root: &Path) -> Result<EvalSet, EvalError> {
    let opts = OpenOptions { root: Some(root.to_path_buf()), ..Default::default() };
    EvalSet::open(&find_set(name).unwrap(), &opts, &no_env)
}

/// Writes Fashion-MNIST test image `i` as a JPEG or PNG file.
fn write_image(data: &IdxDataset, i: usize, path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let grey = image::GrayImage::from_raw(28, 28, data.raw(i).to_vec()).unwrap();
    image::DynamicImage::ImageLuma8(grey).to_rgb8().save(path).unwrap();
}

fn imagenet_wnids() -> Vec<String> {
    ClassTable::load(&find_set("imagenet").unwrap()).unwrap().wnids
}

/// Logits computed here: decode, eval view, one forward pass of all images.
fn direct_logits(model: &EvalModel, files: &[PathBuf]) -> Vec<Vec<f32>> {
    let mut data = Vec::new();
    for f in files {
        let pixels = decode_file(f).unwrap();
        data.extend(eval_view(&pixels, &model.view).unwrap());
    }
    let (h, w) = (model.view.height as usize, model.view.width as usize);
    let x = Tensor::from_vec(data, (files.len(), 3, h, w), &Device::Cpu).unwrap();
    model.net.forward(&x).unwrap().to_vec2().unwrap()
}

/// Reference metrics from logits rows: (top-1 %, top-5 %, mean loss), labels as positions.
fn reference(rows: &[Vec<f64>], labels: &[usize]) -> (f64, f64, f64) {
    let (mut top1, mut top5, mut loss) = (0usize, 0usize, 0.0f64);
    for (z, &y) in rows.iter().zip(labels) {
        let mut order: Vec<usize> = (0..z.len()).collect();
        order.sort_by(|&a, &b| z[b].total_cmp(&z[a]).then(a.cmp(&b)));
        top1 += usize::from(order[0] == y);
        top5 += usize::from(order[..5].contains(&y));
        let max = z.iter().cloned().fold(f64::MIN, f64::max);
        let lse = max + z.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        loss += lse - z[y];
    }
    let n = rows.len() as f64;
    (100.0 * top1 as f64 / n, 100.0 * top5 as f64 / n, loss / n)
}

fn to_f64(rows: &[Vec<f32>]) -> Vec<Vec<f64>> {
    rows.iter().map(|r| r.iter().map(|&v| f64::from(v)).collect()).collect()
}

fn assert_close(what: &str, got: f64, want: f64, tol: f64) {
    assert!((got - want).abs() <= tol, "{what}: got {got}, expected {want} (tolerance {tol})");
}

/// Files of a set in the dataset's order, with their labels.
fn files_and_labels(set: &EvalSet) -> (Vec<PathBuf>, Vec<u32>) {
    let d = &set.dataset;
    (
        (0..d.len()).map(|i| PathBuf::from(d.describe(i))).collect(),
        (0..d.len()).map(|i| d.label(i)).collect(),
    )
}

/// Fashion class k → ImageNet class index used in these tests.
fn imagenet_class(k: u32) -> u32 {
    k * 97 + 3
}

// ---------------------------------------------------------------- layouts and metrics

/// Class ranking of a logits row, best first (ties to the lower index).
fn ranking(z: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..z.len()).collect();
    order.sort_by(|&a, &b| z[b].total_cmp(&z[a]).then(a.cmp(&b)));
    order
}

#[test]
fn synset_folders_score_like_logits_computed_directly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fmnist();
    let wnids = imagenet_wnids();
    let model = load(&tiny_model(tmp.path(), 1000, 1));

    // Half the images go to the folder of the model's own best class and a quarter to its
    // third best, so top-1 and top-5 are far from zero and a wrong label map shows.
    let staged: Vec<PathBuf> = (0..32)
        .map(|i| {
            let ext = if i % 2 == 0 { "JPEG" } else { "png" };
            let path = tmp.path().join("staging").join(format!("img{i:03}.{ext}"));
            write_image(&data, i, &path);
            path
        })
        .collect();
    let staged_logits = direct_logits(&model, &staged);
    let root = tmp.path().join("val");
    for (i, file) in staged.iter().enumerate() {
        let order = ranking(&staged_logits[i]);
        let class = match i % 4 {
            0 | 2 => order[0],
            1 => order[2],
            _ => imagenet_class(data.label(i)) as usize,
        };
        let to = root.join(&wnids[class]).join(file.file_name().unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(file, to).unwrap();
    }
    // IMAGENET_ROOT usually names the folder holding train/ and val/: found through subdirs.
    std::fs::create_dir_all(tmp.path().join("train")).unwrap();
    std::fs::remove_dir_all(tmp.path().join("staging")).unwrap();
    let set = open("imagenet", tmp.path()).unwrap();
    assert_eq!(set.dir, root);
    assert_eq!(set.dataset.len(), 32);

    let run = evaluate(&model, &set, None, &quiet(), false).unwrap();
    let (files, labels) = files_and_labels(&set);
    for (f, &l) in files.iter().zip(&labels) {
        let wnid = f.parent().unwrap().file_name().unwrap().to_str().unwrap();
        assert_eq!(wnids[l as usize], wnid, "label of {}", f.display());
    }
    let logits = to_f64(&direct_logits(&model, &files));
    let labels: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
    let (top1, top5, loss) = reference(&logits, &labels);
    let m = &run.metrics;
    assert_eq!(m.images, 32);
    assert!(top1 >= 50.0 && top5 >= 75.0, "fixture: top1 {top1}, top5 {top5}");
    assert_close("top1", m.top1, top1, 1e-9);
    assert_close("top5", m.top5, top5, 1e-9);
    assert_close("loss", m.loss, loss, 1e-4 * loss.abs().max(1.0));
    assert!(run.images_per_s > 0.0);
}

#[test]
fn numeric_folders_sort_numerically_and_label_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fmnist();
    for i in 0..20 {
        // Folder names 3, 100, 197, …: as strings "100" < "3"; the label is the number.
        let class = imagenet_class(data.label(i));
        write_image(&data, i, &tmp.path().join(class.to_string()).join(format!("{i}.png")));
    }
    let set = open("imagenet-v2", tmp.path()).unwrap();
    let (files, labels) = files_and_labels(&set);
    for (f, l) in files.iter().zip(&labels) {
        let folder: u32 =
            f.parent().unwrap().file_name().unwrap().to_str().unwrap().parse().unwrap();
        assert_eq!(folder, *l, "{}", f.display());
    }
    assert!(labels.windows(2).all(|w| w[0] <= w[1]), "numeric order: {labels:?}");
}

/// Writes flat `ILSVRC2012_val_%08d.JPEG` files for Fashion images 0..n; returns the class
/// index of each file number (1-based position - 1).
fn flat_folder(dir: &Path, n: usize) -> Vec<u32> {
    let data = fmnist();
    (0..n)
        .map(|i| {
            write_image(&data, i, &dir.join(format!("ILSVRC2012_val_{:08}.JPEG", i + 1)));
            imagenet_class(data.label(i))
        })
        .collect()
}

/// ILSVRC ids in this test's fake devkit: id `i` (1-based) is class `(i − 1) × 7 mod 1000`.
fn class_of_id(id: u32) -> u32 {
    ((id - 1) * 7) % 1000
}

fn id_of_class(class: u32) -> u32 {
    (1..=1000).find(|&id| class_of_id(id) == class).unwrap()
}

#[test]
fn flat_val_with_devkit_ids_and_meta_mat() {
    let tmp = tempfile::tempdir().unwrap();
    let val = tmp.path().join("val");
    let classes = flat_folder(&val, 12);
    let devkit = tmp.path().join("ILSVRC2012_devkit_t12/data");
    std::fs::create_dir_all(&devkit).unwrap();
    let ids: String = classes.iter().map(|&c| format!("{}\n", id_of_class(c))).collect();
    std::fs::write(devkit.join("ILSVRC2012_validation_ground_truth.txt"), ids).unwrap();
    std::fs::write(devkit.join("meta.mat"), mat::meta_mat(&imagenet_wnids(), class_of_id, true))
        .unwrap();

    let set = open("imagenet", &val).unwrap();
    assert_eq!(files_and_labels(&set).1, classes);
}

#[test]
fn meta_mat_reads_uncompressed_files_too() {
    let wnids = imagenet_wnids();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("meta.mat");
    std::fs::write(&path, mat::meta_mat(&wnids, class_of_id, false)).unwrap();
    let table = ClassTable::load(&find_set("imagenet").unwrap()).unwrap();
    let map = funmatch_eval::devkit::meta_id_to_index(&path, &table).unwrap();
    assert_eq!(map.len(), 1000);
    for id in [1u32, 2, 500, 1000] {
        assert_eq!(map[id as usize - 1], class_of_id(id), "ILSVRC id {id}");
    }
}

#[test]
fn flat_val_with_kaggle_solution_or_a_label_list() {
    let wnids = imagenet_wnids();
    for form in ["LOC_val_solution.csv", "val.txt"] {
        let tmp = tempfile::tempdir().unwrap();
        let classes = flat_folder(tmp.path(), 8);
        let text: String = match form {
            "LOC_val_solution.csv" => std::iter::once("ImageId,PredictionString\n".to_string())
                .chain(classes.iter().enumerate().rev().map(|(i, &c)| {
                    format!("ILSVRC2012_val_{:08},{} 1 2 30 40\n", i + 1, wnids[c as usize])
                }))
                .collect(),
            // Caffe's form: class indices; one line names a wnid instead.
            _ => classes
                .iter()
                .enumerate()
                .map(|(i, &c)| match i {
                    0 => format!("ILSVRC2012_val_{:08}.JPEG {}\n", i + 1, wnids[c as usize]),
                    _ => format!("ILSVRC2012_val_{:08}.JPEG {c}\n", i + 1),
                })
                .collect(),
        };
        std::fs::write(tmp.path().join(form), text).unwrap();
        let set = open("imagenet", tmp.path()).unwrap();
        assert_eq!(files_and_labels(&set).1, classes, "{form}");
    }
}

#[test]
fn flat_val_without_ground_truth_says_what_it_looked_for() {
    let tmp = tempfile::tempdir().unwrap();
    flat_folder(tmp.path(), 2);
    let err = open("imagenet", tmp.path()).err().expect("no ground truth").to_string();
    assert!(err.contains("LOC_val_solution.csv") && err.contains("meta.mat"), "{err}");
}

#[test]
fn real_labels_score_any_listed_class_and_leave_empty_lists_out() {
    let tmp = tempfile::tempdir().unwrap();
    let classes = flat_folder(tmp.path(), 16);
    std::fs::write(
        tmp.path().join("val.txt"),
        classes
            .iter()
            .enumerate()
            .map(|(i, c)| format!("ILSVRC2012_val_{:08}.JPEG {c}\n", i + 1))
            .collect::<String>(),
    )
    .unwrap();
    let model = load(&tiny_model(tmp.path(), 1000, 2));
    let files: Vec<PathBuf> =
        (1..=16).map(|n| tmp.path().join(format!("ILSVRC2012_val_{n:08}.JPEG"))).collect();
    let logits = direct_logits(&model, &files);

    // Lists: empty for every 4th image; the model's own argmax for every 3rd (so some hits);
    // the true label plus a second class otherwise.
    let argmax = |z: &[f32]| (0..z.len()).fold(0, |b, j| if z[j] > z[b] { j } else { b }) as u32;
    let lists: Vec<Vec<u32>> = (0..16)
        .map(|i| match i {
            _ if i % 4 == 0 => vec![],
            _ if i % 3 == 0 => vec![classes[i], argmax(&logits[i])],
            _ => vec![classes[i], (classes[i] + 1) % 1000],
        })
        .collect();
    std::fs::write(tmp.path().join("real.json"), serde_json::to_string(&lists).unwrap()).unwrap();

    let set = open("imagenet-real", tmp.path()).unwrap();
    let run = evaluate(&model, &set, None, &quiet(), false).unwrap();
    let (mut n, mut top1, mut top5) = (0, 0, 0);
    for (z, list) in logits.iter().zip(&lists) {
        if list.is_empty() {
            continue;
        }
        let mut order: Vec<u32> = (0..1000).collect();
        order.sort_by(|&a, &b| z[b as usize].total_cmp(&z[a as usize]).then(a.cmp(&b)));
        n += 1;
        top1 += usize::from(list.contains(&order[0]));
        top5 += usize::from(order[..5].iter().any(|p| list.contains(p)));
    }
    let m = &run.metrics;
    assert_eq!((m.images, m.excluded), (n, 4));
    assert!(top1 > 0, "the fixture should give some ReaL hits");
    assert_close("ReaL top1", m.top1, 100.0 * top1 as f64 / n as f64, 1e-9);
    assert_close("ReaL top5", m.top5, 100.0 * top5 as f64 / n as f64, 1e-9);
}

fn subset_wnids(file: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../eval-sets/labels").join(file);
    std::fs::read_to_string(path).unwrap().lines().map(String::from).collect()
}

#[test]
fn imagenet_a_scores_only_its_200_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fmnist();
    let a = subset_wnids("imagenet_a_synsets.txt");
    let model = load(&tiny_model(tmp.path(), 1000, 3));
    let table = ClassTable::load(&find_set("imagenet").unwrap()).unwrap();
    let mut columns: Vec<usize> = a.iter().map(|w| table.index[w] as usize).collect();
    columns.sort();
    for i in 0..24 {
        let staged = tmp.path().join(format!("staged{i}.jpg"));
        write_image(&data, i, &staged);
        // Even images: the best class among the 200 (a hit only when scoring the subset).
        let wnid = if i % 2 == 0 {
            let z = &direct_logits(&model, std::slice::from_ref(&staged))[0];
            let best =
                columns.iter().copied().fold(columns[0], |b, c| if z[c] > z[b] { c } else { b });
            table.wnids[best].clone()
        } else {
            a[(data.label(i) as usize * 19) % 200].clone()
        };
        let to = tmp.path().join("imagenet-a").join(wnid).join(format!("{i}.jpg"));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::rename(&staged, to).unwrap();
    }
    let set = open("imagenet-a", tmp.path()).unwrap();
    let run = evaluate(&model, &set, None, &quiet(), false).unwrap();

    let (files, labels) = files_and_labels(&set);
    let logits = direct_logits(&model, &files);
    let restricted: Vec<Vec<f64>> =
        logits.iter().map(|z| columns.iter().map(|&c| f64::from(z[c])).collect()).collect();
    let positions: Vec<usize> =
        labels.iter().map(|&l| columns.iter().position(|&c| c == l as usize).unwrap()).collect();
    let (top1, top5, loss) = reference(&restricted, &positions);
    let m = &run.metrics;
    assert!(top1 >= 50.0, "fixture: restricted top1 {top1}");
    assert_close("A top1", m.top1, top1, 1e-9);
    assert_close("A top5", m.top5, top5, 1e-9);
    assert_close("A loss", m.loss, loss, 1e-4 * loss.abs().max(1.0));
    // Scoring all 1000 columns would give another loss: the restriction is real.
    let (_, _, full_loss) =
        reference(&to_f64(&logits), &labels.iter().map(|&l| l as usize).collect::<Vec<_>>());
    assert!((full_loss - loss).abs() > 1e-3, "restricted {loss} vs full {full_loss}");
}

#[test]
fn a_folder_outside_the_200_classes_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fmnist();
    let wnids = imagenet_wnids();
    let outside =
        wnids.iter().find(|w| !subset_wnids("imagenet_a_synsets.txt").contains(w)).unwrap();
    write_image(&data, 0, &tmp.path().join(outside).join("0.jpg"));
    let err = open("imagenet-a", tmp.path()).err().expect("an outside class").to_string();
    assert!(err.contains(outside.as_str()), "{err}");
}

#[test]
fn clean_sets_keep_only_the_subset_classes_of_val() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fmnist();
    let r = subset_wnids("imagenet_r_synsets.txt");
    let wnids = imagenet_wnids();
    let outside = wnids.iter().find(|w| !r.contains(w)).unwrap();
    for i in 0..10 {
        let wnid = if i % 2 == 0 { &r[i * 3] } else { outside };
        write_image(&data, i, &tmp.path().join(wnid).join(format!("{i}.png")));
    }
    let set = open("imagenet-r-clean", tmp.path()).unwrap();
    assert_eq!(set.dataset.len(), 5);
    let (files, _) = files_and_labels(&set);
    assert!(files.iter().all(|f| !f.starts_with(tmp.path().join(outside))));
    assert_eq!(set.scoring.columns.as_ref().unwrap().len(), 200);
}

#[test]
fn wrong_layout_names_what_was_found() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fmnist();
    for i in 0..3 {
        write_image(&data, i, &tmp.path().join(i.to_string()).join("a.png"));
    }
    let err = open("imagenet", tmp.path()).err().expect("numeric folders are not ImageNet val");
    let text = err.to_string();
    assert!(matches!(err, EvalError::Layout { .. }), "{text}");
    assert!(
        text.contains("wnid folders") && text.contains("3 numbered folders (0, 1, 2)"),
        "{text}"
    );

    let err = open("imagenet-v2", &tmp.path().join("missing")).err().unwrap().to_string();
    assert!(err.contains("no such folder"), "{err}");
}

#[test]
fn fashion_mnist_and_teacher_agreement_match_direct_computation() {
    let tmp = tempfile::tempdir().unwrap();
    let desc = find_set("fashion-mnist").unwrap();
    let opts = OpenOptions { limit: Some(40), ..Default::default() };
    let set = EvalSet::open(&desc, &opts, &no_env).unwrap();
    assert_eq!(set.dataset.len(), 40);

    let student = load(&tiny_model(tmp.path(), 10, 4));
    let teacher = load(&tiny_model(tmp.path(), 10, 5));
    let t_run = evaluate(&teacher, &set, None, &quiet(), true).unwrap();
    let run = evaluate(&student, &set, t_run.outputs.as_ref(), &quiet(), false).unwrap();

    // Direct: the grey IDX images through the same eval view.
    let data = fmnist();
    let view_batch = |model: &EvalModel| {
        let mut x = Vec::new();
        for i in 0..40 {
            x.extend(eval_view(&data.load_pixels(i).unwrap(), &model.view).unwrap());
        }
        let x = Tensor::from_vec(x, (40, 3, 32, 32), &Device::Cpu).unwrap();
        to_f64(&model.net.forward(&x).unwrap().to_vec2::<f32>().unwrap())
    };
    let (s, t) = (view_batch(&student), view_batch(&teacher));
    let labels: Vec<usize> = (0..40).map(|i| data.label(i) as usize).collect();
    let (top1, top5, loss) = reference(&s, &labels);
    let m = &run.metrics;
    assert_close("top1", m.top1, top1, 1e-9);
    assert_close("top5", m.top5, top5, 1e-9);
    assert_close("loss", m.loss, loss, 1e-4 * loss.max(1.0));

    let (mut kl, mut a1, mut a5) = (0.0, 0, 0);
    for (zs, zt) in s.iter().zip(&t) {
        let lse = |z: &[f64]| {
            let m = z.iter().cloned().fold(f64::MIN, f64::max);
            m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
        };
        let (ls, lt) = (lse(zs), lse(zt));
        kl += zs.iter().zip(zt).map(|(a, b)| (b - lt).exp() * ((b - lt) - (a - ls))).sum::<f64>();
        let mut order: Vec<usize> = (0..10).collect();
        order.sort_by(|&a, &b| zs[b].total_cmp(&zs[a]).then(a.cmp(&b)));
        let t_best = (0..10).fold(0, |b, j| if zt[j] > zt[b] { j } else { b });
        a1 += usize::from(order[0] == t_best);
        a5 += usize::from(order[..5].contains(&t_best));
    }
    let a = m.agreement.as_ref().expect("teacher given");
    assert_eq!(a.images, 40);
    assert_close("KL", a.kl, kl / 40.0, 1e-4 * (kl / 40.0).max(1.0));
    assert_close("agree top1", a.top1, 100.0 * a1 as f64 / 40.0, 1e-9);
    assert_close("agree top5", a.top5, 100.0 * a5 as f64 / 40.0, 1e-9);
}

#[test]
fn unreadable_images_are_counted_not_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fmnist();
    let wnids = imagenet_wnids();
    for i in 0..6 {
        write_image(&data, i, &tmp.path().join(&wnids[5]).join(format!("{i}.png")));
    }
    std::fs::write(tmp.path().join(&wnids[5]).join("broken.jpg"), b"not a jpeg").unwrap();
    let set = open("imagenet", tmp.path()).unwrap();
    let model = load(&tiny_model(tmp.path(), 1000, 6));
    let run = evaluate(&model, &set, None, &quiet(), false).unwrap();
    assert_eq!(run.metrics.images, 6);
    assert_eq!(run.failures.failures.len(), 1);
    assert!(run.failures.failures[0].what.ends_with("broken.jpg"), "{}", run.failures);
}

#[test]
fn a_model_with_the_wrong_class_count_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let set = EvalSet::open(
        &find_set("fashion-mnist").unwrap(),
        &OpenOptions { limit: Some(3), ..Default::default() },
        &no_env,
    )
    .unwrap();
    let model = load(&tiny_model(tmp.path(), 1000, 7));
    let err = evaluate(&model, &set, None, &quiet(), false).err().unwrap().to_string();
    assert!(err.contains("10 classes") && err.contains("1000 outputs"), "{err}");
}

#[test]
fn environment_and_data_folder_locate_sets() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fmnist();
    let dir = tmp.path().join("imagenet-sketch/sketch");
    write_image(&data, 0, &dir.join(&imagenet_wnids()[7]).join("0.png"));
    let desc = find_set("imagenet-sketch").unwrap();

    let base = tmp.path().display().to_string();
    let via_data = EvalSet::open(&desc, &OpenOptions::default(), &|v| {
        (v == "FUNMATCH_DATA").then(|| base.clone())
    })
    .unwrap();
    assert_eq!(via_data.dir, dir);
    let root = tmp.path().join("imagenet-sketch").display().to_string();
    let via_env = EvalSet::open(&desc, &OpenOptions::default(), &|v| {
        (v == "IMAGENET_SKETCH_ROOT").then(|| root.clone())
    })
    .unwrap();
    assert_eq!(via_env.dir, dir);
    assert_eq!(via_env.dataset.label(0), 7);

    let err = EvalSet::open(&desc, &OpenOptions::default(), &no_env).err().unwrap().to_string();
    assert!(err.contains("IMAGENET_SKETCH_ROOT") && err.contains("--root"), "{err}");
}

#[test]
fn user_descriptor_files_resolve_labels_next_to_them() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fmnist();
    for i in 0..4 {
        write_image(
            &data,
            i,
            &tmp.path().join("data").join(format!("c{}", i % 2)).join(format!("{i}.png")),
        );
    }
    let desc_path = tmp.path().join("mine.toml");
    std::fs::write(
        &desc_path,
        "name = \"mine\"\ntitle = \"Mine\"\nlayouts = [\"class-folders\"]\nnum_classes = 2\n",
    )
    .unwrap();
    let desc = SetDescriptor::from_file(&desc_path).unwrap();
    let set = EvalSet::open(
        &desc,
        &OpenOptions { root: Some(tmp.path().join("data")), ..Default::default() },
        &no_env,
    )
    .unwrap();
    assert_eq!(set.dataset.len(), 4);
    let set = Arc::clone(&set.dataset);
    assert_eq!((0..4).map(|i| set.label(i)).collect::<Vec<_>>(), vec![0, 0, 1, 1]);
}

// ---------------------------------------------------------------- a MATLAB v5 writer

/// Writes MAT v5 files with a `synsets` struct array the way MATLAB lays them out, written
/// from the format description, independently of the crate's reader.
mod mat {
    use super::*;

    fn tagged(kind: u32, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(kind.to_le_bytes());
        out.extend((data.len() as u32).to_le_bytes());
        out.extend(data);
        while out.len() % 8 != 0 {
            out.push(0);
        }
        out
    }

    fn small(kind: u32, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(((data.len() as u32) << 16 | kind).to_le_bytes());
        let mut d = data.to_vec();
        d.resize(4, 0);
        out.extend(d);
        out
    }

    fn matrix(class: u8, dims: &[i32], name: &str, parts: &[Vec<u8>]) -> Vec<u8> {
        let mut body = tagged(6, &[class, 0, 0, 0, 0, 0, 0, 0]);
        let dims: Vec<u8> = dims.iter().flat_map(|d| d.to_le_bytes()).collect();
        body.extend(tagged(5, &dims));
        body.extend(if name.len() <= 4 && !name.is_empty() {
            small(1, name.as_bytes())
        } else {
            tagged(1, name.as_bytes())
        });
        for p in parts {
            body.extend(p);
        }
        tagged(14, &body)
    }

    fn double(v: f64) -> Vec<u8> {
        // MATLAB stores integral doubles compactly, as uint8/uint16 data.
        matrix(6, &[1, 1], "", &[tagged(4, &(v as u16).to_le_bytes())])
    }

    fn chars(s: &str) -> Vec<u8> {
        let units: Vec<u8> = s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
        matrix(4, &[1, s.len() as i32], "", &[tagged(4, &units)])
    }

    pub fn meta_mat(wnids: &[String], class_of_id: fn(u32) -> u32, compress: bool) -> Vec<u8> {
        let fields = ["ILSVRC2012_ID", "WNID", "words", "children"];
        let len = 32usize;
        let mut names = Vec::new();
        for f in fields {
            let mut b = f.as_bytes().to_vec();
            b.resize(len, 0);
            names.extend(b);
        }
        // 1000 leaves, then two inner nodes with ids above 1000.
        let mut elements = Vec::new();
        for id in 1..=1002u32 {
            let wnid = if id <= 1000 {
                wnids[class_of_id(id) as usize].clone()
            } else {
                format!("n9999999{}", id - 1001)
            };
            elements.push(vec![
                double(f64::from(id)),
                chars(&wnid),
                chars("a, b"),
                matrix(6, &[0, 0], "", &[]),
            ]);
        }
        // Struct data is stored column-major over the 1 × n array: element by element.
        let mut parts = vec![small(5, &(len as i32).to_le_bytes()), tagged(1, &names)];
        for e in elements {
            parts.extend(e);
        }
        let var = matrix(2, &[1002, 1], "synsets", &parts);

        let mut out = b"MATLAB 5.0 MAT-file, written by the funmatch-eval tests".to_vec();
        out.resize(116, b' ');
        out.extend([0u8; 8]);
        out.extend(0x0100u16.to_le_bytes());
        out.extend(b"IM");
        if compress {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            z.write_all(&var).unwrap();
            let packed = z.finish().unwrap();
            out.extend(15u32.to_le_bytes());
            out.extend((packed.len() as u32).to_le_bytes());
            out.extend(packed);
        } else {
            out.extend(var);
        }
        out
    }
}
