//! `funmatch eval` end to end: real Fashion-MNIST images written as JPEG/PNG into an
//! ImageNet-style folder, tiny models, every output format, the results folder and
//! `--compare`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{Device, Tensor};
use funmatch_data::{fashion_mnist, Dataset, IdxDataset, MnistSplit, FASHION_MNIST_DIR};
use funmatch_models::{
    init_params, load_model, save_model_folder, BitConfig, Interpolation, Mode, PretrainedCfg,
    ResNetV2, StemKind,
};

const TIMM_COLUMNS: [&str; 9] = [
    "model",
    "img_size",
    "top1",
    "top1_err",
    "top5",
    "top5_err",
    "param_count",
    "crop_pct",
    "interpolation",
];

fn fmnist() -> IdxDataset {
    fashion_mnist(Path::new(FASHION_MNIST_DIR), MnistSplit::Test)
        .expect("Fashion-MNIST test split (Debian's dataset-fashion-mnist) must be installed")
}

/// A tiny BiT (small stem, one stage) with a strong random head, saved as a model folder.
fn tiny_model(dir: &Path, name: &str, classes: usize, seed: u64) -> PathBuf {
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
    let out = dir.join(name);
    save_model_folder(&out, &cfg, &pre, None, &params).unwrap();
    out
}

fn wnids() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("eval-sets/labels/imagenet_synsets.txt");
    std::fs::read_to_string(path).unwrap().lines().map(String::from).collect()
}

/// Val-style synset folders with `n` Fashion-MNIST test images (JPEG and PNG); returns the
/// files and their ImageNet class indices.
fn synset_val(root: &Path, n: usize) -> Vec<(PathBuf, usize)> {
    let data = fmnist();
    let wnids = wnids();
    (0..n)
        .map(|i| {
            let class = data.label(i) as usize * 83 + 11;
            let ext = if i % 3 == 0 { "png" } else { "JPEG" };
            let path = root.join(&wnids[class]).join(format!("ILSVRC2012_val_{:08}.{ext}", i + 1));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let grey = image::GrayImage::from_raw(28, 28, data.raw(i).to_vec()).unwrap();
            image::DynamicImage::ImageLuma8(grey).to_rgb8().save(&path).unwrap();
            (path, class)
        })
        .collect()
}

fn funmatch(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_funmatch"));
    for var in ["IMAGENET_ROOT", "IMAGENET_VAL_ROOT", "FUNMATCH_DATA", "RUST_LOG"] {
        cmd.env_remove(var);
    }
    cmd.env("RAYON_NUM_THREADS", "2").args(args).output().unwrap()
}

fn ok(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Top-1 of a model folder on `files`, computed here: decode, eval view, forward, argmax.
fn direct_top1(model: &Path, files: &[(PathBuf, usize)]) -> f64 {
    let loaded = load_model(model, &Device::Cpu).unwrap();
    let net = ResNetV2::new(&loaded.config, &loaded.params, Mode::Frozen).unwrap();
    let view = funmatch_data::ViewConfig::square(32)
        .with_crop_pct(1.0)
        .with_interpolation(funmatch_data::Interpolation::Bilinear);
    let mut x = Vec::new();
    for (f, _) in files {
        let pixels = funmatch_data::decode::decode_file(f).unwrap();
        x.extend(funmatch_data::view::eval_view(&pixels, &view).unwrap());
    }
    let x = Tensor::from_vec(x, (files.len(), 3, 32, 32), &Device::Cpu).unwrap();
    let logits: Vec<Vec<f32>> = net.forward(&x).unwrap().to_vec2().unwrap();
    let hits = logits
        .iter()
        .zip(files)
        .filter(|(z, (_, y))| (0..z.len()).fold(0, |b, j| if z[j] > z[b] { j } else { b }) == *y)
        .count();
    100.0 * hits as f64 / files.len() as f64
}

fn csv_rows(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = text.lines().map(|l| l.split(',').map(String::from).collect::<Vec<_>>());
    let header = lines.next().unwrap();
    (header, lines.collect())
}

#[test]
fn eval_writes_timm_columns_and_agreement_and_accumulates_results() {
    let tmp = tempfile::tempdir().unwrap();
    let files = synset_val(&tmp.path().join("imagenet/val"), 24);
    let student = tiny_model(tmp.path(), "student", 1000, 11);
    let teacher = tiny_model(tmp.path(), "teacher", 1000, 12);
    let (csv, json, md, results) = (
        tmp.path().join("out.csv"),
        tmp.path().join("out.json"),
        tmp.path().join("out.md"),
        tmp.path().join("results"),
    );
    let root = tmp.path().join("imagenet");
    let p = |p: &Path| p.to_str().unwrap().to_string();
    let out = funmatch(&[
        "eval",
        &p(&student),
        "--teacher",
        &p(&teacher),
        "--sets",
        "imagenet,imagenet-real",
        "--root",
        &format!("imagenet={}", p(&root)),
        "--root",
        &format!("imagenet-real={}", p(&root)),
        "--batch-size",
        "5",
        "--progress",
        "lines",
        "--csv",
        &p(&csv),
        "--json",
        &p(&json),
        "--markdown",
        &p(&md),
        "--results",
        &p(&results),
    ]);
    let stdout = ok(&out, "funmatch eval");
    assert!(stdout.contains("imagenet-real") && stdout.contains(&p(&student)), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("images/s"), "progress lines on stderr");

    // CSV: timm's columns first, one row per (model, set), teacher rows included.
    let (header, rows) = csv_rows(&std::fs::read_to_string(&csv).unwrap());
    assert_eq!(header[..9], TIMM_COLUMNS.map(String::from), "{header:?}");
    assert_eq!(rows.len(), 4, "{rows:?}");
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let student_row =
        rows.iter().find(|r| r[0] == p(&student) && r[col("set")] == "imagenet").unwrap();
    let top1: f64 = student_row[col("top1")].parse().unwrap();
    assert!((top1 - direct_top1(&student, &files)).abs() < 1e-3, "csv top1 {top1}");
    assert_eq!(student_row[col("img_size")], "32");
    assert_eq!(student_row[col("interpolation")], "bilinear");
    assert_eq!(student_row[col("teacher")], p(&teacher));
    assert!(!student_row[col("agree_top1")].is_empty() && !student_row[col("kl")].is_empty());
    let top1_err: f64 = student_row[col("top1_err")].parse().unwrap();
    assert!((top1 + top1_err - 100.0).abs() < 1e-2);

    // JSON: the same rows.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 4);
    assert!(json[0]["images_per_s"].as_f64().unwrap() > 0.0, "{}", json[0]);
    assert!(json[0]["gmacs"].as_f64().unwrap() > 0.0, "{}", json[0]);
    assert!(std::fs::read_to_string(&md)
        .unwrap()
        .contains("| model | params (M) | GMACs | imagenet | imagenet-real |"));

    // The results folder: per-set files with exactly timm's columns; a second run (another
    // student, another day) accumulates and --compare shows both.
    let timm = std::fs::read_to_string(results.join("results-imagenet.csv")).unwrap();
    assert_eq!(timm.lines().next().unwrap(), TIMM_COLUMNS.join(","));
    let other = tiny_model(tmp.path(), "student-b", 1000, 13);
    ok(
        &funmatch(&[
            "eval",
            &p(&other),
            "--sets",
            "imagenet",
            "--root",
            &p(&root),
            "--progress",
            "quiet",
            "--results",
            &p(&results),
        ]),
        "second run",
    );
    let compare = ok(&funmatch(&["eval", "--compare", &p(&results)]), "--compare");
    for model in [&student, &teacher, &other] {
        assert!(compare.contains(&p(model)), "{model:?} missing from:\n{compare}");
    }
    let log = std::fs::read_to_string(results.join("rows.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 5);
}

#[test]
fn wrong_layout_fails_with_what_was_found() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["0", "1", "2"] {
        std::fs::create_dir_all(tmp.path().join(name)).unwrap();
    }
    let model = tiny_model(tmp.path(), "m", 1000, 1);
    let out = funmatch(&[
        "eval",
        model.to_str().unwrap(),
        "--sets",
        "imagenet",
        "--root",
        tmp.path().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("wnid folders") && stderr.contains("3 numbered folders"), "{stderr}");
}

#[test]
fn fashion_mnist_runs_from_the_debian_package() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path(), "fm", 10, 3);
    let out = funmatch(&[
        "eval",
        model.to_str().unwrap(),
        "--sets",
        "fashion-mnist",
        "--limit",
        "50",
        "--progress",
        "quiet",
        "--json",
        tmp.path().join("r.json").to_str().unwrap(),
    ]);
    ok(&out, "fashion-mnist eval");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("r.json")).unwrap()).unwrap();
    assert_eq!(json[0]["images"], 50);
    assert_eq!(json[0]["set"], "fashion-mnist");
}
