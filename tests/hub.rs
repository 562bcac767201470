//! `funmatch fetch` end to end, against the loopback fake Hub.

use std::path::Path;
use std::process::{Command, Output};

use funmatch_hub::fake_hub::{FakeFile, FakeHub};

const REPO: &str = "timm/tiny_bit";

/// A valid safetensors file with one f32 tensor of `n` values.
fn safetensors(n: usize) -> Vec<u8> {
    let header = format!(r#"{{"w":{{"dtype":"F32","shape":[{n}],"data_offsets":[0,{}]}}}}"#, 4 * n);
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend((0..4 * n).map(|i| (i % 251) as u8));
    out
}

fn model_repo(hub: &FakeHub) -> String {
    hub.commit(
        REPO,
        &["main"],
        vec![
            FakeFile::regular("config.json", r#"{"architecture":"resnetv2_50x1_bit"}"#),
            FakeFile::regular("README.md", "# tiny"),
            FakeFile::lfs("model.safetensors", safetensors(1000)),
            FakeFile::lfs("pytorch_model.bin", vec![0x80, 0x02]),
        ],
    )
}

/// Runs `funmatch` with a clean Hub environment pointing at `hub` and `home`.
fn funmatch(hub: &FakeHub, home: &Path, extra_env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_funmatch"));
    for var in
        ["HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN", "HF_TOKEN_PATH", "HF_HUB_OFFLINE"]
    {
        cmd.env_remove(var);
    }
    cmd.env_remove("TRANSFORMERS_OFFLINE").env_remove("RUST_LOG");
    cmd.env("HF_HOME", home).env("HF_ENDPOINT", hub.endpoint());
    cmd.envs(extra_env.iter().copied()).args(args);
    cmd.output().expect("run funmatch")
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn fetch_prints_the_snapshot_folder_of_a_model() {
    let hub = FakeHub::start();
    let home = tempfile::tempdir().unwrap();
    let commit = model_repo(&hub);

    let out = funmatch(&hub, home.path(), &[], &["fetch", REPO]);

    assert!(out.status.success(), "{}", show(&out));
    let snapshot = home.path().join("hub/models--timm--tiny_bit/snapshots").join(&commit);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), snapshot.display().to_string());
    assert!(snapshot.join("config.json").is_file() && snapshot.join("model.safetensors").is_file());
    assert!(!snapshot.join("README.md").exists(), "a model fetch takes only what the model needs");
    assert!(!snapshot.join("pytorch_model.bin").exists(), "pickle is never fetched for a model");
}

#[test]
fn fetch_all_and_single_files() {
    let hub = FakeHub::start();
    let home = tempfile::tempdir().unwrap();
    model_repo(&hub);

    let out = funmatch(&hub, home.path(), &[], &["fetch", REPO, "--file", "README.md"]);
    assert!(out.status.success(), "{}", show(&out));
    let snapshot = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
    assert!(Path::new(&snapshot).join("README.md").is_file(), "{}", show(&out));
    assert!(!Path::new(&snapshot).join("config.json").exists());

    let out = funmatch(&hub, home.path(), &[], &["fetch", &format!("{REPO}@main"), "--all"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(Path::new(&snapshot).join("pytorch_model.bin").is_file(), "--all fetches every file");
}

#[test]
fn offline_fetch_serves_the_cache_and_names_missing_files() {
    let hub = FakeHub::start();
    let home = tempfile::tempdir().unwrap();
    model_repo(&hub);

    let out = funmatch(&hub, home.path(), &[("HF_HUB_OFFLINE", "1")], &["fetch", REPO]);
    assert!(!out.status.success(), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("offline") && stderr.contains("model.safetensors"), "{}", show(&out));

    let online = funmatch(&hub, home.path(), &[], &["fetch", REPO]);
    assert!(online.status.success(), "{}", show(&online));
    let before = hub.requests().len();
    let out = funmatch(&hub, home.path(), &[("HF_HUB_OFFLINE", "1")], &["fetch", REPO]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(out.stdout, online.stdout);
    assert_eq!(hub.requests().len(), before, "offline sends no request");

    let out =
        funmatch(&hub, home.path(), &[], &["fetch", REPO, "--offline", "--file", "README.md"]);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("README.md"), "{}", show(&out));
}

#[test]
fn the_token_never_appears_in_output_or_logs() {
    let hub = FakeHub::start();
    let home = tempfile::tempdir().unwrap();
    model_repo(&hub);
    hub.gate(REPO, "hf_good_token_abcdef");

    let out = funmatch(
        &hub,
        home.path(),
        &[("HF_TOKEN", "hf_bad_token_123456")],
        &["-vv", "fetch", REPO],
    );
    assert!(!out.status.success(), "{}", show(&out));
    let text = show(&out);
    assert!(text.contains("gated") && text.contains("HF_TOKEN"), "{text}");
    assert!(!text.contains("hf_bad_token_123456"), "token leaked:\n{text}");

    let out = funmatch(
        &hub,
        home.path(),
        &[("HF_TOKEN", "hf_good_token_abcdef")],
        &["-vv", "fetch", REPO],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(!show(&out).contains("hf_good_token_abcdef"), "token leaked:\n{}", show(&out));
}

#[test]
fn a_pickle_only_repo_is_refused_with_its_safetensors_alternative() {
    let hub = FakeHub::start();
    let home = tempfile::tempdir().unwrap();
    hub.commit("google/bit-50", &["main"], vec![FakeFile::lfs("pytorch_model.bin", vec![0x80])]);
    hub.commit(
        "google/bit-50",
        &["refs/pr/7"],
        vec![FakeFile::lfs("model.safetensors", safetensors(4))],
    );

    let out = funmatch(&hub, home.path(), &[], &["fetch", "google/bit-50"]);

    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("google/bit-50@refs/pr/7"),
        "{}",
        show(&out)
    );
}

/// Largest absolute difference between the `logits` tensors of two safetensors files.
fn max_logit_diff(a: &Path, b: &Path) -> f32 {
    let load = |p: &Path| candle_core::safetensors::load(p, &candle_core::Device::Cpu).unwrap();
    let (a, b) = (load(a), load(b));
    let diff = (&a["logits"] - &b["logits"]).unwrap().abs().unwrap();
    diff.flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn predict_accepts_a_hub_id_and_gives_the_reference_logits() {
    let hub = FakeHub::start();
    let home = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity");
    let cases = [
        ("timm/tiny_bit", "timm_small", &["config.json", "model.safetensors"][..]),
        ("google/bit-tiny", "transformers_bit", &["config.json", "model.safetensors"][..]),
        ("google/bit-npz", "npz", &["model.npz"][..]),
    ];
    for (repo, case, files) in cases {
        let served = files
            .iter()
            .map(|f| {
                let bytes = std::fs::read(fixtures.join(case).join(f)).unwrap();
                match f.ends_with(".json") {
                    true => FakeFile::regular(f, bytes),
                    false => FakeFile::lfs(f, bytes),
                }
            })
            .collect();
        hub.commit(repo, &["main", "v1"], served);
    }

    for (repo, case, _) in cases {
        let io = fixtures.join(case).join("io.safetensors");
        let logits = home.path().join(format!("{case}.safetensors"));
        let spec = format!("{repo}@v1");
        let args = ["predict", &spec, io.to_str().unwrap(), "--output", logits.to_str().unwrap()];
        let out = funmatch(&hub, home.path(), &[], &args);

        assert!(out.status.success(), "{repo}: {}", show(&out));
        let diff = max_logit_diff(&logits, &io);
        assert!(diff < 1e-4, "{repo}: logits differ from the reference by {diff}");
    }
}

#[test]
fn two_processes_fetching_one_model_download_it_once() {
    let hub = FakeHub::start();
    let home = tempfile::tempdir().unwrap();
    hub.commit(REPO, &["main"], vec![FakeFile::lfs("model.safetensors", safetensors(300_000))]);
    hub.set_cdn_delay(Some(std::time::Duration::from_millis(10)));

    let spawn = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_funmatch"));
        cmd.env_remove("HF_HUB_CACHE").env_remove("HF_TOKEN").env_remove("HF_HUB_OFFLINE");
        cmd.env("HF_HOME", home.path()).env("HF_ENDPOINT", hub.endpoint());
        cmd.args(["fetch", REPO]).stdout(std::process::Stdio::piped());
        cmd.stderr(std::process::Stdio::piped()).spawn().unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());

    assert!(a.status.success() && b.status.success(), "{}\n{}", show(&a), show(&b));
    assert_eq!(a.stdout, b.stdout);
    let snapshot = String::from_utf8_lossy(&a.stdout).trim_end().to_string();
    let bytes = std::fs::read(Path::new(&snapshot).join("model.safetensors")).unwrap();
    assert_eq!(bytes, safetensors(300_000));
    let gets = hub.requests().iter().filter(|r| r.host == "cdn" && r.method == "GET").count();
    assert_eq!(gets, 1, "the second process waits for the first one's download");
}
