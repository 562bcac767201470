//! `funmatch train` and `funmatch distill` end to end on a small real task: Fashion-MNIST
//! (a few hundred images from Debian's package) and tiny models, with the recipes' smoke
//! sizes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use candle_core::Device;
use funmatch_distill::checkpoint::read_checkpoint;
use funmatch_models::{init_params, save_model_folder, BitConfig, PretrainedCfg, StemKind};

fn recipe(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/recipes").join(name).display().to_string()
}

fn command(args: &[String]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_funmatch"));
    // One compute thread: resumed runs must match bit for bit, and the machine is shared.
    cmd.env_remove("RUST_LOG").env("RAYON_NUM_THREADS", "1").args(args);
    cmd
}

fn funmatch(args: &[String]) -> Output {
    command(args).output().expect("run funmatch")
}

fn show(args: &[String], out: &Output) -> String {
    format!(
        "funmatch {}\nstatus {:?}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn args(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Lines of a run's metrics.jsonl.
fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn of_kind<'a>(records: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    records.iter().filter(|r| r["kind"] == kind).collect()
}

/// A teacher trained once by `funmatch train` with the teacher recipe's smoke size, shared
/// by the tests (its run folder is checked by the supervised test).
fn trained_teacher() -> &'static Path {
    static RUN: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, dir) = RUN.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("teacher");
        let a = args(&[
            "train",
            "--recipe",
            &recipe("fashion-mnist-teacher.toml"),
            "--size",
            "smoke",
            "--out",
            dir.to_str().unwrap(),
            "--progress",
            "lines",
        ]);
        let out = funmatch(&a);
        assert!(out.status.success(), "{}", show(&a, &out));
        (tmp, dir)
    });
    dir
}

fn distill_args(teacher: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut a = args(&[
        "distill",
        "--recipe",
        &recipe("fashion-mnist-distill.toml"),
        "--size",
        "smoke",
        "--teacher",
        teacher.join("model").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--progress",
        "quiet",
    ]);
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

#[test]
fn supervised_training_lowers_the_loss_and_beats_chance() {
    let dir = trained_teacher();
    let records = metrics(dir);
    let train = of_kind(&records, "train");
    let (first, last) =
        (train[0]["loss"].as_f64().unwrap(), train.last().unwrap()["loss"].as_f64().unwrap());
    assert!(last < first, "loss did not fall: {first} → {last}\n{records:#?}");
    // 16 steps on 256 images under the recipe's aggressive inception crops: well above
    // chance (0.1 ± 0.026 on 130 images), and the held-out cross-entropy falls.
    let evals = of_kind(&records, "eval");
    let top1 = evals.last().unwrap()["student_top1"].as_f64().unwrap();
    assert!(top1 > 0.18, "held-out top-1 {top1} is near chance (0.1)\n{records:#?}");
    let (ce0, ce1) =
        (evals[0]["ce"].as_f64().unwrap(), evals.last().unwrap()["ce"].as_f64().unwrap());
    assert!(ce1 < ce0 && ce1 < 10f64.ln() - 0.05, "held-out CE {ce0} → {ce1}\n{records:#?}");

    for file in
        ["config.toml", "loss.png", "accuracy.png", "model/config.json", "model/model.safetensors"]
    {
        assert!(dir.join(file).is_file(), "{file} missing in {}", dir.display());
    }
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(config.contains("steps = 16"), "effective config:\n{config}");
    funmatch_models::load_model(&dir.join("model"), &Device::Cpu).unwrap();
}

#[test]
fn distillation_lowers_the_loss_and_reports_agreement() {
    let teacher = trained_teacher();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("fm");
    let a = distill_args(teacher, &out, &["--set", "optim.steps=16"]);
    let result = funmatch(&a);
    assert!(result.status.success(), "{}", show(&a, &result));

    let records = metrics(&out);
    let train = of_kind(&records, "train");
    let (first, last) =
        (train[0]["loss"].as_f64().unwrap(), train.last().unwrap()["loss"].as_f64().unwrap());
    assert!(last < first, "distillation loss did not fall: {first} → {last}\n{records:#?}");
    let eval = *of_kind(&records, "eval").last().unwrap();
    for key in ["student_top1", "teacher_top1", "agreement", "kl"] {
        assert!(eval[key].is_number(), "eval record lacks {key}: {eval}");
    }
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert_eq!(stdout.trim(), out.join("model").display().to_string());
}

/// Waits until the run in `dir` has a checkpoint, or fails if the process ends first.
fn wait_for_checkpoint(child: &mut Child, dir: &Path) {
    let started = Instant::now();
    while !dir.join("checkpoint.safetensors").is_file() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before its first checkpoint");
        }
        assert!(started.elapsed() < Duration::from_secs(120), "no checkpoint after 2 minutes");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn killed_and_interrupted_runs_resume_to_bit_identical_weights() {
    let teacher = trained_teacher();
    let tmp = tempfile::tempdir().unwrap();
    let extra = ["--set", "optim.steps=12", "--set", "run.checkpoint_every=2"];

    let reference = tmp.path().join("reference");
    let a = distill_args(teacher, &reference, &extra);
    let out = funmatch(&a);
    assert!(out.status.success(), "{}", show(&a, &out));
    let want = std::fs::read(reference.join("model/model.safetensors")).unwrap();

    for signal in ["KILL", "INT"] {
        let dir = tmp.path().join(signal);
        let a = distill_args(teacher, &dir, &extra);
        let mut child = command(&a).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        wait_for_checkpoint(&mut child, &dir);
        let status =
            Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status();
        assert!(status.unwrap().success(), "kill -{signal} failed");
        let out = child.wait_with_output().unwrap();
        assert!(!dir.join("model").exists(), "{signal}: the run finished before it was stopped");
        let step =
            read_checkpoint(&dir.join("checkpoint.safetensors"), &Device::Cpu).unwrap().meta.step;
        assert!(step < 12, "{signal}: checkpoint at step {step}");
        if signal == "INT" {
            // Ctrl-C: a checkpoint after the current step, a clean exit, status 130.
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(130), "{}", show(&a, &out));
            assert!(stderr.contains("--resume"), "{stderr}");
        }

        let resume = args(&["distill", "--resume", dir.to_str().unwrap(), "--progress", "quiet"]);
        let out = funmatch(&resume);
        assert!(out.status.success(), "{}", show(&resume, &out));
        let got = std::fs::read(dir.join("model/model.safetensors")).unwrap();
        assert!(
            got == want,
            "{signal} at step {step}: resumed weights differ from the uninterrupted run"
        );
        let steps: Vec<u64> =
            of_kind(&metrics(&dir), "train").iter().map(|r| r["step"].as_u64().unwrap()).collect();
        assert_eq!(
            steps,
            of_kind(&metrics(&reference), "train")
                .iter()
                .map(|r| r["step"].as_u64().unwrap())
                .collect::<Vec<_>>()
        );
    }

    // Resuming a finished run trains nothing, keeps its model and says so (no rate of 0/s).
    let resume = args(&["distill", "--resume", reference.to_str().unwrap(), "--progress", "quiet"]);
    let out = funmatch(&resume);
    assert!(out.status.success(), "{}", show(&resume, &out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("12 steps of 12 (none left to run)"), "{stderr}");
    assert!(!stderr.contains("images/s"), "{stderr}");
    assert_eq!(std::fs::read(reference.join("model/model.safetensors")).unwrap(), want);
}

#[test]
fn a_non_finite_loss_stops_the_run_naming_the_step_and_keeps_the_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let a = args(&[
        "train",
        "--recipe",
        &recipe("fashion-mnist-teacher.toml"),
        "--size",
        "smoke",
        "--out",
        dir.to_str().unwrap(),
        "--progress",
        "quiet",
        "--set",
        "optim.lr=1e38",
        "--set",
        "optim.warmup_steps=0",
        "--set",
        "optim.clip_norm=0",
        "--set",
        "run.checkpoint_every=1",
    ]);
    let out = funmatch(&a);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", show(&a, &out));
    assert!(stderr.contains("not finite") && stderr.contains("at step"), "{}", show(&a, &out));
    let step =
        read_checkpoint(&dir.join("checkpoint.safetensors"), &Device::Cpu).unwrap().meta.step;
    assert!(stderr.contains(&format!("(step {step})")), "checkpoint step {step}: {stderr}");
    assert!(!dir.join("model").exists());
}

/// A random teacher with `classes` outputs, written as a model folder.
fn random_teacher(dir: &Path, classes: usize) -> PathBuf {
    let mut cfg = BitConfig::bit(&[1], 1, classes);
    cfg.channels = vec![32];
    cfg.stem_width = 8;
    cfg.stem = StemKind::Small;
    cfg.groups = 4;
    let params = init_params(&cfg, 3, &Device::Cpu).unwrap();
    let pretrained = PretrainedCfg { input_size: [3, 28, 28], ..Default::default() };
    save_model_folder(&dir.join("model"), &cfg, &pretrained, None, &params).unwrap();
    dir.to_path_buf()
}

#[test]
fn a_teacher_with_other_classes_is_refused_unless_a_class_map_is_given() {
    let tmp = tempfile::tempdir().unwrap();
    let teacher = random_teacher(&tmp.path().join("teacher7"), 7);
    let a = distill_args(&teacher, &tmp.path().join("refused"), &["--steps", "1"]);
    let out = funmatch(&a);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", show(&a, &out));
    assert!(
        stderr.contains("7 classes") && stderr.contains("10") && stderr.contains("class map"),
        "{stderr}"
    );

    let map = tmp.path().join("map.txt");
    std::fs::write(&map, "0\n1\n2\n3\n4\n5\n6\n0\n1\n2\n").unwrap();
    let out_dir = tmp.path().join("mapped");
    let a =
        distill_args(&teacher, &out_dir, &["--steps", "1", "--class-map", map.to_str().unwrap()]);
    let out = funmatch(&a);
    assert!(out.status.success(), "{}", show(&a, &out));
}

#[test]
fn a_failed_checkpoint_write_is_reported_and_the_run_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    // Something in the way of the temporary checkpoint file makes every write fail, as a
    // full disk would.
    std::fs::create_dir_all(dir.join("checkpoint.safetensors.tmp")).unwrap();
    let a = args(&[
        "train",
        "--recipe",
        &recipe("fashion-mnist-teacher.toml"),
        "--size",
        "smoke",
        "--out",
        dir.to_str().unwrap(),
        "--progress",
        "lines",
        "--steps",
        "4",
        "--set",
        "run.checkpoint_every=2",
        "--set",
        "run.eval_every=0",
    ]);
    let out = funmatch(&a);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}", show(&a, &out));
    assert!(stderr.contains("checkpoint of step 2") && stderr.contains("intact"), "{stderr}");
    assert!(dir.join("model/model.safetensors").is_file());
    assert!(!dir.join("checkpoint.safetensors").exists());
}

#[test]
fn unknown_configuration_keys_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let a = args(&[
        "train",
        "--out",
        tmp.path().join("r").to_str().unwrap(),
        "--set",
        "optim.learning_rate=1",
    ]);
    let out = funmatch(&a);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("learning_rate"), "{}", show(&a, &out));
}
