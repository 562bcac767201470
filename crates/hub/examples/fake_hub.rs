//! Serves the fake Hub with a small model repository until killed, for trying `funmatch
//! fetch` or Python's huggingface_hub by hand:
//!
//! ```text
//! cargo run -p funmatch-hub --features fake-hub --example fake_hub
//! HF_ENDPOINT=<printed URL> funmatch fetch demo/tiny
//! ```

use funmatch_hub::fake_hub::{FakeFile, FakeHub};

fn main() {
    let hub = FakeHub::start();
    let header = r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
    let mut weights = (header.len() as u64).to_le_bytes().to_vec();
    weights.extend_from_slice(header.as_bytes());
    weights.extend_from_slice(&[0u8; 16]);
    // FAKE_HUB_EXTRA_MB=N adds `big.safetensors` of N MiB, to watch progress and speed.
    let extra_mb: usize =
        std::env::var("FAKE_HUB_EXTRA_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let n = extra_mb << 18;
    let big_header =
        format!(r#"{{"w":{{"dtype":"F32","shape":[{n}],"data_offsets":[0,{}]}}}}"#, 4 * n);
    let mut big = (big_header.len() as u64).to_le_bytes().to_vec();
    big.extend_from_slice(big_header.as_bytes());
    big.extend((0..4 * n).map(|i| (i % 251) as u8));
    let config = r#"{"architecture": "resnetv2_50x1_bit", "num_classes": 4}"#;
    let commit = hub.commit(
        "demo/tiny",
        &["main", "v1"],
        vec![
            FakeFile::regular("config.json", config),
            FakeFile::regular("sub/notes.txt", "nested\n"),
            FakeFile::lfs("model.safetensors", weights),
        ],
    );
    hub.commit("demo/big", &["main"], vec![FakeFile::lfs("model.safetensors", big)]);
    hub.commit("demo/pickled", &["main"], vec![FakeFile::lfs("pytorch_model.bin", vec![0x80, 2])]);
    println!("{}", hub.endpoint());
    eprintln!("demo/tiny at commit {commit}; demo/big has {extra_mb} MiB of weights; demo/pickled is pickle-only; Ctrl-C to stop");
    loop {
        std::thread::park();
    }
}
