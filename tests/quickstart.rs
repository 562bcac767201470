//! The README's first command end to end at the smoke size: `scripts/quickstart` trains a
//! tiny teacher, distils it, evaluates both on the Fashion-MNIST test set, exports the student
//! and writes the report. Every artifact must exist and load, and the exported student must
//! classify real test images exactly as the trained student does. Also: the shipped teacher
//! and the default recipe keep their promises (accuracy, size, a tenth of the FLOPs).

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::Device;
use funmatch_data::{fashion_mnist, Dataset, MnistSplit, FASHION_MNIST_DIR};
use funmatch_distill::RunConfig;
use funmatch_models::{load_model, BitConfig};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("start the command");
    let text = format!(
        "{cmd:?}\nstatus {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    String::from_utf8(out.stdout).unwrap()
}

fn funmatch(args: &[&str]) -> String {
    run(Command::new(env!("CARGO_BIN_EXE_funmatch")).env_remove("RUST_LOG").args(args))
}

/// Top-1 class index of every input, in order, from `funmatch predict --json`.
fn predicted(model: &Path, images: &[PathBuf]) -> Vec<u64> {
    let mut args = vec!["predict".to_string(), model.display().to_string()];
    args.extend(images.iter().map(|p| p.display().to_string()));
    args.extend(["--json".into(), "--top-k".into(), "3".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let json: serde_json::Value = serde_json::from_str(&funmatch(&args)).unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), images.len(), "one prediction per image: {json}");
    rows.iter()
        .zip(images)
        .map(|(row, image)| {
            assert!(row["input"]
                .as_str()
                .unwrap()
                .ends_with(image.file_name().unwrap().to_str().unwrap()));
            row["top"][0]["index"].as_u64().unwrap()
        })
        .collect()
}

#[test]
fn the_quickstart_runs_end_to_end_and_its_exported_student_predicts_images() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("quickstart");
    let stdout = run(Command::new("bash")
        .arg(root().join("scripts/quickstart"))
        .env("QUICKSTART_SIZE", "smoke")
        .env("QUICKSTART_OUT", &out)
        .env("FUNMATCH_BIN", env!("CARGO_BIN_EXE_funmatch"))
        .env("RAYON_NUM_THREADS", "2")
        .env_remove("RUST_LOG"));
    assert!(stdout.contains("REPORT.md"), "{stdout}");

    // Every artifact is there.
    for file in [
        "REPORT.md",
        "eval.md",
        "results/rows.jsonl",
        "teacher/model/model.safetensors",
        "student/config.toml",
        "student/metrics.jsonl",
        "student/loss.png",
        "student/accuracy.png",
        "student/checkpoint.safetensors",
        "student/model/config.json",
        "student/model/model.safetensors",
        "export/model.safetensors",
        "export/config.json",
        "export/README.md",
    ] {
        let path = out.join(file);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(size > 0, "{} is missing or empty", path.display());
    }
    // Model folders are for sharing: weights readable by everyone, like the rest.
    #[cfg(unix)]
    for weights in ["student/model/model.safetensors", "export/model.safetensors"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join(weights)).unwrap().permissions().mode();
        assert_eq!(mode & 0o644, 0o644, "{weights} has mode {mode:o}");
    }
    for png in ["student/loss.png", "student/accuracy.png"] {
        image::open(out.join(png)).unwrap_or_else(|e| panic!("{png}: {e}"));
    }

    // The report and the evaluation name both models, with agreement and FLOPs.
    let report = std::fs::read_to_string(out.join("REPORT.md")).unwrap();
    let needles = ["teacher/model", "student/model", "GMACs", "agree top1", "student/loss.png"];
    // The commands it suggests name the binary that ran, which need not be on the PATH.
    let binary = format!("`{}`: the funmatch binary", env!("CARGO_BIN_EXE_funmatch"));
    for needle in needles.iter().copied().chain([binary.as_str()]) {
        assert!(report.contains(needle), "REPORT.md lacks {needle:?}:\n{report}");
    }
    let rows = std::fs::read_to_string(out.join("results/rows.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> =
        rows.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2, "teacher and student rows");
    assert!(rows.iter().all(|r| r["images"] == 10_000), "the whole test set: {rows:?}");
    assert!(rows[1]["agree_top1"].as_f64().is_some(), "student agreement: {}", rows[1]);

    // Every model folder loads.
    for dir in ["teacher/model", "student/model", "export"] {
        load_model(&out.join(dir), &Device::Cpu).unwrap_or_else(|e| panic!("{dir}: {e}"));
    }

    // Real test images as PNG files: the export predicts each one, as the trained student does.
    let test = fashion_mnist(Path::new(FASHION_MNIST_DIR), MnistSplit::Test).unwrap();
    let images: Vec<PathBuf> = (0..8)
        .map(|i| {
            let rgb = test.load(i * 1000).unwrap();
            let path = tmp.path().join(format!("test-{i}-{}.png", test.label(i * 1000)));
            rgb.save(&path).unwrap();
            path
        })
        .collect();
    let exported = predicted(&out.join("export"), &images);
    let trained = predicted(&out.join("student/model"), &images);
    assert_eq!(exported, trained, "the export predicts what the trained student predicts");
    assert!(exported.iter().all(|&c| c < 10), "Fashion-MNIST classes: {exported:?}");
}

/// The student a recipe trains from scratch, as the trainer builds it.
fn recipe_student(recipe: &str) -> BitConfig {
    let config =
        RunConfig::load(Some(&root().join("models/recipes").join(recipe)), None, &[]).unwrap();
    let s = &config.student;
    assert_eq!(s.arch, "custom", "{recipe}");
    let mut cfg = BitConfig::bit(&s.layers, 1, 10);
    cfg.channels = s.channels.clone();
    cfg.stem_width = s.stem_width;
    cfg.stem = s.stem;
    cfg.groups = s.groups;
    cfg.validate().unwrap();
    cfg
}

#[test]
fn the_shipped_teacher_is_small_and_the_default_student_costs_a_tenth_of_its_flops() {
    let dir = root().join("models/fashion-mnist-teacher");
    let size = std::fs::metadata(dir.join("model.safetensors")).unwrap().len();
    assert!(size <= 8_000_000, "model.safetensors is {size} bytes");
    let card = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(card.contains("fashion-mnist-teacher.toml"), "the card names its recipe");

    let teacher = load_model(&dir, &Device::Cpu).unwrap();
    // The shipped folder is what the teacher recipe trains.
    let trained = recipe_student("fashion-mnist-teacher.toml");
    assert_eq!(teacher.config.layers, trained.layers);
    assert_eq!(teacher.config.channels, trained.channels);
    let student = recipe_student("fashion-mnist-distill.toml");
    let (t, s) = (teacher.config.forward_macs(28), student.forward_macs(28));
    assert!(10 * s <= t, "student {s} MACs vs teacher {t}: more than a tenth");
    // The scratch baseline trains the very same student.
    assert_eq!(recipe_student("fashion-mnist-student-scratch.toml"), student);
    // The default recipe's teacher is the shipped one, by its zoo name.
    let config =
        RunConfig::load(Some(&root().join("models/recipes/fashion-mnist-distill.toml")), None, &[])
            .unwrap();
    assert_eq!(config.teacher.models, vec!["fashion-mnist-teacher".to_string()]);
}

#[test]
fn the_shipped_teacher_reaches_the_accuracy_its_card_states() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("teacher.json");
    // By its zoo name, as the default recipe refers to it.
    funmatch(&[
        "eval",
        "fashion-mnist-teacher",
        "--sets",
        "fashion-mnist",
        "--root",
        FASHION_MNIST_DIR,
        "--progress",
        "quiet",
        "--json",
        json.to_str().unwrap(),
    ]);
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let top1 = rows[0]["top1"].as_f64().unwrap();
    assert_eq!(rows[0]["images"], 10_000);
    // The project's goal is 94 %; the card states what the shipped teacher reaches.
    assert!(top1 >= 94.0, "shipped teacher: {top1}% top-1 on the Fashion-MNIST test set");
    let card =
        std::fs::read_to_string(root().join("models/fashion-mnist-teacher/README.md")).unwrap();
    assert!(card.contains(&format!("{top1:.2} %")), "the card states the measured {top1:.2} %");
}
