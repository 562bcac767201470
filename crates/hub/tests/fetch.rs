//! Fetching against the loopback fake Hub: the protocol, the cache layout huggingface_hub
//! expects, and each failure the Hub or the network can produce.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use funmatch_hub::fake_hub::{git_sha1_hex, sha256_hex, FakeFile, FakeHub};
use funmatch_hub::{
    fetch, fetch_file, resolve_model, FileSelection, HubError, HubOptions, ProgressMode, RepoId,
    Token,
};

const REPO: &str = "timm/tiny_bit";
const CONFIG: &str = r#"{"architecture": "resnetv2_50x1_bit", "num_classes": 10}"#;

/// Options that point at the fake Hub and a fresh cache, untouched by the environment.
fn options(hub: &FakeHub, cache: &Path) -> HubOptions {
    let mut opts = HubOptions::from_vars(|_| None);
    opts.endpoint = hub.endpoint();
    opts.cache_dir = cache.to_path_buf();
    opts.progress = ProgressMode::Quiet;
    opts.retries = 0;
    opts.timeout = Duration::from_secs(10);
    opts
}

/// A valid safetensors file with one f32 tensor of `n` values (deterministic contents).
fn safetensors(n: usize) -> Vec<u8> {
    let header = format!(r#"{{"w":{{"dtype":"F32","shape":[{n}],"data_offsets":[0,{}]}}}}"#, 4 * n);
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend((0..4 * n).map(|i| (i * 31 % 251) as u8));
    out
}

fn repo(id: &str) -> RepoId {
    RepoId::parse(id).unwrap()
}

fn model_repo(hub: &FakeHub, weights: &[u8]) -> String {
    hub.commit(
        REPO,
        &["main"],
        vec![FakeFile::regular("config.json", CONFIG), FakeFile::lfs("model.safetensors", weights)],
    )
}

fn cdn_gets(hub: &FakeHub) -> Vec<funmatch_hub::fake_hub::Recorded> {
    hub.requests().into_iter().filter(|r| r.host == "cdn" && r.method == "GET").collect()
}

#[test]
fn a_fetched_model_has_the_huggingface_hub_cache_layout() {
    let hub = FakeHub::start();
    let cache = tempfile::tempdir().unwrap();
    let weights = safetensors(50_000);
    let commit = model_repo(&hub, &weights);

    let snapshot = resolve_model(REPO, &options(&hub, cache.path())).unwrap();

    let folder = cache.path().join("models--timm--tiny_bit");
    assert_eq!(snapshot, folder.join("snapshots").join(&commit));
    assert_eq!(fs::read_to_string(folder.join("refs/main")).unwrap(), commit);
    let sha = sha256_hex(&weights);
    let link = fs::read_link(snapshot.join("model.safetensors")).unwrap();
    assert_eq!(link, PathBuf::from(format!("../../blobs/{sha}")));
    assert_eq!(fs::read(snapshot.join("model.safetensors")).unwrap(), weights);
    let config_link = fs::read_link(snapshot.join("config.json")).unwrap();
    assert_eq!(
        config_link,
        PathBuf::from(format!("../../blobs/{}", git_sha1_hex(CONFIG.as_bytes())))
    );
    assert_eq!(fs::read_to_string(snapshot.join("config.json")).unwrap(), CONFIG);
    assert!(cache
        .path()
        .join(".locks/models--timm--tiny_bit")
        .join(format!("{sha}.lock"))
        .exists());
    let tag = fs::read_to_string(cache.path().join("CACHEDIR.TAG")).unwrap();
    assert!(tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55"), "{tag}");
    let leftovers: Vec<_> = fs::read_dir(folder.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("incomplete") || n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind: {leftovers:?}");
    let tree = fs::read_to_string(folder.join("trees").join(format!("{commit}.json"))).unwrap();
    assert!(tree.contains("\"format_version\": 1") && tree.contains(&sha), "{tree}");
}

#[test]
fn the_cdn_never_sees_the_token_and_the_hub_does() {
    let hub = FakeHub::start();
    let cache = tempfile::tempdir().unwrap();
    model_repo(&hub, &safetensors(1000));
    let mut opts = options(&hub, cache.path());
    opts.token = Token::new("hf_secret_token_value");

    resolve_model(REPO, &opts).unwrap();

    let requests = hub.requests();
    let hub_auth = requests
        .iter()
        .filter(|r| r.host == "hub")
        .all(|r| r.header("authorization") == Some("Bearer hf_secret_token_value"));
    assert!(hub_auth, "every Hub request carries the token: {requests:#?}");
    let cdn: Vec<_> = requests.iter().filter(|r| r.host == "cdn").collect();
    assert!(!cdn.is_empty() && cdn.iter().all(|r| r.header("authorization").is_none()), "{cdn:#?}");
}

#[test]
fn files_in_subfolders_link_back_to_the_blobs() {
    let hub = FakeHub::start();
    let cache = tempfile::tempdir().unwrap();
    hub.commit(REPO, &["main"], vec![FakeFile::regular("sub/dir/labels.txt", "a\nb\n")]);

    let path = fetch_file(&repo(REPO), "main", "sub/dir/labels.txt", &options(&hub, cache.path()))
        .unwrap();

    let target = fs::read_link(&path).unwrap();
    assert_eq!(target, PathBuf::from(format!("../../../../blobs/{}", git_sha1_hex(b"a\nb\n"))));
    assert_eq!(fs::read_to_string(&path).unwrap(), "a\nb\n");
}

#[test]
fn an_interrupted_download_resumes_where_it_stopped() {
    let hub = FakeHub::start();
    let cache = tempfile::tempdir().unwrap();
    let weights = safetensors(100_000);
    let sha = sha256_hex(&weights);
    model_repo(&hub, &weights);
    let opts = options(&hub, cache.path());

    hub.drop_connection_once(&sha, 150_000);
    let err = resolve_model(REPO, &opts).unwrap_err();
    assert!(matches!(err, HubError::Network { .. }), "first try fails: {err}");
    let partial = cache.path().join(format!("models--timm--tiny_bit/blobs/{sha}.incomplete"));
    assert_eq!(fs::metadata(&partial).unwrap().len(), 150_000, "the partial file is kept");

    let snapshot = resolve_model(REPO, &opts).unwrap();

    assert_eq!(fs::read(snapshot.join("model.safetensors")).unwrap(), weights);
    let gets = cdn_gets(&hub);
    assert_eq!(gets.last().unwrap().header("range"), Some("bytes=150000-"), "{gets:#?}");
    assert!(!partial.exists());
}

#[test]
fn a_broken_connection_is_resumed_within_one_call() {
    let hub = FakeHub::start();
    let cache = tempfile::tempdir().unwrap();
    let weights = safetensors(100_000);
    hub.drop_connection_once(&sha256_hex(&weights), 70_000);
    model_repo(&hub, &weights);
    let mut opts = options(&hub, cache.path());
    opts.retries = 2;

    let snapshot = resolve_model(REPO, &opts).unwrap();

    assert_eq!(fs::read(snapshot.join("model.safetensors")).unwrap(), weights);
    let ranges: Vec<_> =
        cdn_gets(&hub).iter().map(|r| r.header("range").map(str::to_string)).collect();
    assert_eq!(ranges, vec![None, Some("bytes=70000-".to_string())]);
}

#[test]
fn a_server_that_ignores_range_restarts_the_file_instead_of_appending() {
    let hub = FakeHub::start();
    let cache = tempfile::tempdir().unwrap();
    let weights = safetensors(50_000);
    hub.drop_connection_once(&sha256_hex(&weights), 60_000);
    hub.set_cdn_ignores_range(true);
    model_repo(&hub, &weights);
    let mut opts = options(&hub, cache.path());
    opts.retries = 1;

    let snapshot = resolve_model(REPO, &opts).unwrap();

    assert_eq!(fs::read(snapshot.join("model.safetensors")).unwrap(), weights);
    let gets = cdn_gets(&hub);
    assert_eq!(gets.last().unwrap().header("range"), Some("bytes=60000-"), "{gets:#?}");
}

#[test]
fn corrupted_bytes_never_enter_the_cache() {
    let hub = FakeHub::start();
    let cache = tempfile::tempdir().unwrap();
    let weights = safetensors(20_000);
    let sha = sha256_hex(&weights);
    model_repo(&hub, &weights);
    let opts = options(&hub, cache.path());
    hub.corrupt(&sha, true);

    let err = resolve_model(REPO, &opts).unwrap_err();

    assert!(matches!(err, HubError::ChecksumMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&sha), "names the expected hash: {err}");
    let blobs = cache.path().join("models--timm--tiny_bit/blobs");
    assert!(!blobs.join(&sha).exists());
    assert!(
        !blobs.join(format!("{sha}.incomplete")).exists(),
        "bad bytes are not kept for resuming"
    );
    let snapshot_files: Vec<_> =
        fs::read_dir(cache.path().join("models--timm--tiny_bit/snapshots"))
            .unwrap()
            .flat_map(|d| fs::read_dir(d.unwrap().path()).unwrap())
            .map(|e| e.unwrap().file_name())
            .collect();
    assert!(!snapshot_files.iter().any(|n| n == "model.safetensors"), "{snapshot_files:?}");

    hub.corrupt(&sha, false);
    let snapshot = resolve_model(REPO, &opts).unwrap();
    assert_eq!(fs::read(snapshot.join("model.safetensors")).unwrap(), weights);
}

#[test]
fn a_corrupted_small_file_is_caught_by_its_git_hash() {
    // A partial file that an earlier (broken) run left behind with wrong bytes.
    let hub = FakeHub::start();
    let cache = tempfile::tempdir().unwrap();
    hub.commit(REPO, &["main"], vec![FakeFile::regular("config.json", CONFIG)]);
    let blobs = cache.path().join("models--timm--tiny_bit/blobs");
    fs::create_dir_all(&blobs).unwrap();
    let etag = git_sha1_hex(CONFIG.as_bytes());
    fs::write(blobs.join(format!("{etag}.incomplete")), "XXXX").unwrap();

    let err =
        fetch_file(&repo(REPO), "main", "config.json", &options(&hub, cache.path())).unwrap_err();
    assert!(matches!(err, HubError::ChecksumMismatch { algorithm: "git sha1", .. }), "{err}");

    let path =
        fetch_file(&repo(REPO), "main", "config.json", &options(&hub, cache.path())).unwrap();
    assert_eq!(fs::read_to_string(path).unwrap(), CONFIG);
}

#[test]
fn revisions_pin_branches_tags_commits_and_pull_requests() {
    let hub = FakeHub::start();
    let cache = tempfile::tempdir().unwrap();
    let old = hub.commit(
        REPO,
        &["main", "v1"],
        vec![FakeFile::lfs("model.safetensors", safetensors(10))],
    );
    let new =
        hub.commit(REPO, &["main"], vec![FakeFile::lfs("model.safetensors", safetensors(20))]);
    let pr =
        hub.commit(REPO, &["refs/pr/4"], vec![FakeFile::lfs("model.safetensors", safetensors(30))]);
    let opts = options(&hub, cache.path());
    let folder = cache.path().join("models--timm--tiny_bit");

    let main = resolve_model(REPO, &opts).unwrap();
    let tag = resolve_model(&format!("{REPO}@v1"), &opts).unwrap();
    let pinned = resolve_model(&format!("{REPO}@{old}"), &opts).unwrap();
    let pull = resolve_model(&format!("{REPO}@refs/pr/4"), &opts).unwrap();

    assert_eq!(main, folder.join("snapshots").join(&new));
    assert_eq!(tag, folder.join("snapshots").join(&old));
    assert_eq!(pinned, tag);
    assert_eq!(pull, folder.join("snapshots").join(&pr));
    assert_eq!(fs::read(tag.join("model.safetensors")).unwrap(), safetensors(10));
    assert_eq!(fs::read_to_string(folder.join("refs/v1")).unwrap(), old);
    assert_eq!(fs::read_to_string(folder.join("refs/refs/pr/4")).unwrap(), pr);
    assert!(!folder.join("refs").join(&old).exists(), "a commit needs no ref file");
}

#[test]
fn a_cached_commit_needs_no_network() {
    let hub = FakeHub::start();
    let cache = tempfile::tempdir().unwrap();
    let commit = model_repo(&hub, &safetensors(10));
    let mut opts = options(&hub, cache.path());
    fetch_file(&repo(REPO), &commit, "model.safetensors", &opts).unwrap();

    opts.endpoint = "http://127.0.0.1:9".to_string();
    let path = fetch_file(&repo(REPO), &commit, "model.safetensors", &opts).unwrap();
    assert_eq!(fs::read(path).unwrap(), safetensors(10));
}

#[test]
fn an_unreachable_hub_falls_back_to_a_complete_cached_snapshot() {
    let hub = FakeHub::start();
    let cache = tempfile::tempdir().unwrap();
    model_repo(&hub, &safetensors(10));
    let mut opts = options(&hub, cache.path());
    let snapshot = resolve_model(REPO, &opts).unwrap();

    opts.endpoint = "http://127.0.0.1:9".to_string();
    assert_eq!(resolve_model(REPO, &opts).unwrap(), snapshot);

    let err = resolve_model("timm/never_fetched", &opts).unwrap_err();
    assert!(matches!(err, HubError::Network { .. }), "the connection is the problem: {err}");
}

#[test]
fn offline_mode_serves_the_cache_and_names_what_is_missing() {
    let hub = FakeHub::start();
    let cache = tempfile::tempdir().unwrap();
    let commit = model_repo(&hub, &safetensors(100));
    let online = options(&hub, cache.path());
    let mut offline = online.clone();
    offline.offline = true;

    // Miss: nothing cached.
    let err = resolve_model(REPO, &offline).unwrap_err();
    assert!(matches!(err, HubError::OfflineMissing { .. }), "{err}");
    assert!(hub.requests().is_empty(), "offline sends nothing: {:#?}", hub.requests());

    // Partial: only the config.
    fetch_file(&repo(REPO), "main", "config.json", &online).unwrap();
    let err = resolve_model(REPO, &offline).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("model.safetensors") && !text.contains("config.json,"), "{text}");

    // Hit: everything cached, and the Hub is not asked.
    let snapshot = resolve_model(REPO, &online).unwrap();
    let before = hub.requests().len();
    assert_eq!(resolve_model(REPO, &offline).unwrap(), snapshot);
    assert_eq!(fetch(&repo(REPO), "main", &FileSelection::All, &offline).unwrap(), snapshot);
    let path = fetch_file(&repo(REPO), &commit, "config.json", &offline).unwrap();
    assert_eq!(fs::read_to_string(path).unwrap(), CONFIG);
    assert_eq!(hub.requests().len(), before);

    // A file that was never fetched is named.
    let err = fetch(&repo(REPO), "main", &FileSelection::Files(vec!["README.md".into()]), &offline)
        .unwrap_err();
    assert!(err.to_string().contains("README.md"), "{err}");
}

#[test]
fn offline_all_names_each_missing_file_from_the_recorded_listing() {
    let hub = FakeHub::start();
    let cache = tempfile::tempdir().unwrap();
    hub.commit(
        REPO,
        &["main"],
        vec![
            FakeFile::regular("config.json", CONFIG),
            FakeFile::regular("README.md", "# tiny"),
            FakeFile::lfs("model.safetensors", safetensors(10)),
        ],
    );
    let mut opts = options(&hub, cache.path());
    resolve_model(REPO, &opts).unwrap();
    opts.offline = true;

    let err = fetch(&repo(REPO), "main", &FileSelection::All, &opts).unwrap_err();

    match err {
        HubError::OfflineMissing { missing, .. } => {
            assert_eq!(missing, vec!["README.md".to_string()])
        }
        other => panic!("expected OfflineMissing, got {other}"),
    }
}

#[test]
fn two_threads_fetching_one_file_download_it_once() {
    let hub = FakeHub::start();
    let cache = tempfile::tempdir().unwrap();
    let weights = safetensors(200_000);
    model_repo(&hub, &weights);
    hub.set_cdn_delay(Some(Duration::from_millis(20)));
    let opts = options(&hub, cache.path());

    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2).map(|_| s.spawn(|| resolve_model(REPO, &opts))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    for r in &results {
        let snapshot = r.as_ref().unwrap();
        assert_eq!(fs::read(snapshot.join("model.safetensors")).unwrap(), weights);
    }
    assert_eq!(cdn_gets(&hub).len(), 1, "the second fetch waits and reuses the blob");
}

#[test]
fn file_names_that_escape_the_cache_are_refused() {
    let hub = FakeHub::start();
    let cache = tempfile::tempdir().unwrap();
    hub.commit(
        REPO,
        &["main"],
        vec![FakeFile::regular("config.json", CONFIG), FakeFile::regular("../../escape.txt", "x")],
    );
    let opts = options(&hub, cache.path());

    let err = fetch(&repo(REPO), "main", &FileSelection::All, &opts).unwrap_err();
    assert!(matches!(err, HubError::UnsafePath { .. }), "{err}");
    assert!(!cache.path().join("escape.txt").exists());
    assert!(cdn_gets(&hub).is_empty() && !hub.requests().iter().any(|r| r.method == "HEAD"));

    for bad in ["/etc/passwd", "a/../../b", "..", "C:/x"] {
        let err = fetch_file(&repo(REPO), "main", bad, &opts).unwrap_err();
        assert!(matches!(err, HubError::UnsafePath { .. }), "{bad}: {err}");
    }
}

#[cfg(unix)]
#[test]
fn a_planted_symlink_in_a_snapshot_is_not_followed() {
    let hub = FakeHub::start();
    let cache = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let commit = hub.commit(REPO, &["main"], vec![FakeFile::regular("sub/f.txt", "x")]);
    let snapshot = cache.path().join("models--timm--tiny_bit/snapshots").join(&commit);
    fs::create_dir_all(&snapshot).unwrap();
    std::os::unix::fs::symlink(outside.path(), snapshot.join("sub")).unwrap();

    let err =
        fetch_file(&repo(REPO), "main", "sub/f.txt", &options(&hub, cache.path())).unwrap_err();

    assert!(matches!(err, HubError::UnsafePath { .. }), "{err}");
    assert!(fs::read_dir(outside.path()).unwrap().next().is_none(), "nothing written outside");
}

#[test]
fn a_pickle_only_repo_is_refused_and_a_safetensors_pr_is_named() {
    let hub = FakeHub::start();
    let cache = tempfile::tempdir().unwrap();
    let pickle = vec![0x80, 0x02, b'c', b'o', b's'];
    hub.commit(
        "google/bit-50",
        &["main"],
        vec![
            FakeFile::regular("config.json", CONFIG),
            FakeFile::lfs("pytorch_model.bin", pickle.clone()),
        ],
    );
    hub.commit("google/bit-50", &["refs/pr/1"], vec![FakeFile::regular("README.md", "unrelated")]);
    hub.commit(
        "google/bit-50",
        &["refs/pr/2"],
        vec![
            FakeFile::regular("config.json", CONFIG),
            FakeFile::lfs("model.safetensors", safetensors(10)),
        ],
    );
    let opts = options(&hub, cache.path());

    let err = resolve_model("google/bit-50", &opts).unwrap_err();

    match &err {
        HubError::PickleOnly { files, alternative, .. } => {
            assert_eq!(files, &vec!["pytorch_model.bin".to_string()]);
            assert_eq!(alternative.as_deref(), Some("google/bit-50@refs/pr/2"));
        }
        other => panic!("expected PickleOnly, got {other}"),
    }
    assert!(err.to_string().contains("google/bit-50@refs/pr/2"), "{err}");
    let touched_pickle = hub.requests().iter().any(|r| r.target.contains("pytorch_model.bin"));
    assert!(!touched_pickle, "the pickle file is never downloaded");

    let snapshot = resolve_model("google/bit-50@refs/pr/2", &opts).unwrap();
    assert!(snapshot.join("model.safetensors").is_file());
}

#[test]
fn a_pickle_only_repo_without_alternative_says_so() {
    let hub = FakeHub::start();
    let cache = tempfile::tempdir().unwrap();
    hub.commit("a/pickled", &["main"], vec![FakeFile::lfs("weights.pth", vec![1, 2, 3])]);

    let err = resolve_model("a/pickled", &options(&hub, cache.path())).unwrap_err();

    assert!(matches!(&err, HubError::PickleOnly { alternative: None, .. }), "{err}");
    assert!(err.to_string().contains("no safetensors version was found"), "{err}");
}

#[test]
fn gated_repos_explain_the_licence_and_the_token() {
    let hub = FakeHub::start();
    let cache = tempfile::tempdir().unwrap();
    model_repo(&hub, &safetensors(10));
    hub.gate(REPO, "hf_right_token");
    let mut opts = options(&hub, cache.path());

    let err = resolve_model(REPO, &opts).unwrap_err();
    assert!(matches!(err, HubError::Gated { authenticated: false, .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("licence") && text.contains("HF_TOKEN"), "{text}");

    opts.token = Token::new("hf_wrong_token_12345");
    let err = resolve_model(REPO, &opts).unwrap_err();
    assert!(matches!(err, HubError::Gated { authenticated: true, .. }), "{err}");
    let shown = format!("{err} {err:?} {opts:?}");
    assert!(!shown.contains("hf_wrong_token_12345"), "the token leaks: {shown}");

    opts.token = Token::new("hf_right_token");
    let snapshot = resolve_model(REPO, &opts).unwrap();
    assert!(snapshot.join("model.safetensors").is_file());
}

#[test]
fn missing_repos_revisions_and_files_get_distinct_errors() {
    let hub = FakeHub::start();
    let cache = tempfile::tempdir().unwrap();
    let commit = model_repo(&hub, &safetensors(10));
    let opts = options(&hub, cache.path());

    let err = resolve_model("nobody/nothing", &opts).unwrap_err();
    assert!(matches!(err, HubError::RepoNotFound { .. }), "{err}");
    let err = resolve_model(&format!("{REPO}@no-such-branch"), &opts).unwrap_err();
    assert!(matches!(err, HubError::RevisionNotFound { .. }), "{err}");
    let err = fetch_file(&repo(REPO), "main", "nope.json", &opts).unwrap_err();
    assert!(matches!(err, HubError::EntryNotFound { .. }), "{err}");
    assert!(err.to_string().contains("nope.json"), "{err}");
    let marker =
        cache.path().join("models--timm--tiny_bit/.no_exist").join(&commit).join("nope.json");
    assert!(marker.exists(), "the absence is recorded as huggingface_hub does");

    let err = fetch_file(&repo("nobody/nothing"), "main", "x", &opts).unwrap_err();
    assert!(matches!(err, HubError::RepoNotFound { .. }), "{err}");
    let err = fetch_file(&repo(REPO), "nope", "config.json", &opts).unwrap_err();
    assert!(matches!(err, HubError::RevisionNotFound { .. }), "{err}");
}

#[test]
fn a_renamed_repo_is_followed_through_its_relative_redirect() {
    let hub = FakeHub::start();
    let cache = tempfile::tempdir().unwrap();
    hub.commit("new-owner/model", &["main"], vec![FakeFile::regular("config.json", CONFIG)]);
    hub.rename("old-owner/model", "new-owner/model");

    let path =
        fetch_file(&repo("old-owner/model"), "main", "config.json", &options(&hub, cache.path()))
            .unwrap();

    assert_eq!(fs::read_to_string(&path).unwrap(), CONFIG);
    assert!(path.starts_with(cache.path().join("models--old-owner--model")), "{}", path.display());
}

#[test]
fn sharded_safetensors_fetch_every_shard() {
    let hub = FakeHub::start();
    let cache = tempfile::tempdir().unwrap();
    let index = r#"{"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}"#;
    hub.commit(
        REPO,
        &["main"],
        vec![
            FakeFile::regular("model.safetensors.index.json", index),
            FakeFile::lfs("model-00001-of-00002.safetensors", safetensors(10)),
            FakeFile::lfs("model-00002-of-00002.safetensors", safetensors(20)),
            FakeFile::lfs("pytorch_model.bin", vec![0x80]),
        ],
    );

    let snapshot = resolve_model(REPO, &options(&hub, cache.path())).unwrap();

    assert_eq!(
        fs::read(snapshot.join("model-00002-of-00002.safetensors")).unwrap(),
        safetensors(20)
    );
    assert!(snapshot.join("model-00001-of-00002.safetensors").is_file());
    assert!(!snapshot.join("pytorch_model.bin").exists());
}

#[test]
fn a_bit_npz_repo_resolves() {
    let hub = FakeHub::start();
    let cache = tempfile::tempdir().unwrap();
    hub.commit(
        "google/bit-npz",
        &["main"],
        vec![FakeFile::lfs("BiT-M-R50x1.npz", b"PK\x03\x04npz".to_vec())],
    );

    let snapshot = resolve_model("google/bit-npz", &options(&hub, cache.path())).unwrap();

    assert!(snapshot.join("BiT-M-R50x1.npz").is_file());
}

#[test]
fn an_oversized_safetensors_header_is_refused() {
    let hub = FakeHub::start();
    let cache = tempfile::tempdir().unwrap();
    let mut bad = (u64::MAX / 4).to_le_bytes().to_vec();
    bad.extend_from_slice(b"{}");
    model_repo(&hub, &bad);

    let err = resolve_model(REPO, &options(&hub, cache.path())).unwrap_err();

    assert!(matches!(err, HubError::SafetensorsHeader { .. }), "{err}");
}

#[test]
fn options_follow_huggingface_hub_environment_rules() {
    let home = tempfile::tempdir().unwrap();
    let hf_home = home.path().join("hf");
    fs::create_dir_all(&hf_home).unwrap();
    fs::write(hf_home.join("token"), "hf_from_file\n").unwrap();
    let env = |pairs: Vec<(&'static str, String)>| {
        move |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone())
    };
    let home_s = home.path().display().to_string();
    let hf_home_s = hf_home.display().to_string();

    let o = HubOptions::from_vars(env(vec![("HOME", home_s.clone())]));
    assert_eq!(o.cache_dir, home.path().join(".cache/huggingface/hub"));
    assert_eq!(o.endpoint, "https://huggingface.co");
    assert!(!o.offline && o.token.is_none());

    let o = HubOptions::from_vars(env(vec![
        ("HF_HOME", hf_home_s.clone()),
        ("HF_ENDPOINT", "http://mirror.example/".into()),
        ("HF_HUB_OFFLINE", "yes".into()),
    ]));
    assert_eq!(o.cache_dir, hf_home.join("hub"));
    assert_eq!(o.endpoint, "http://mirror.example");
    assert!(o.offline);
    assert_eq!(o.token, Token::new("hf_from_file"));

    let o = HubOptions::from_vars(env(vec![
        ("HF_HOME", hf_home_s.clone()),
        ("HF_HUB_CACHE", "~/elsewhere".into()),
        ("HOME", home_s.clone()),
        ("HF_TOKEN", "hf_from_env".into()),
        ("HF_HUB_OFFLINE", "0".into()),
    ]));
    assert_eq!(o.cache_dir, home.path().join("elsewhere"));
    assert_eq!(o.token, Token::new("hf_from_env"));
    assert!(!o.offline);
    assert!(!format!("{o:?}").contains("hf_from_env"), "Debug redacts the token");

    let o = HubOptions::from_vars(env(vec![("XDG_CACHE_HOME", "/xdg".into())]));
    assert_eq!(o.cache_dir, PathBuf::from("/xdg/huggingface/hub"));
}
