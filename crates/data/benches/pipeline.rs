//! Throughput of the data pipeline: `cargo bench -p funmatch-data [-- photos|fashion]`.
//!
//! - photos: read + decode + inception crop + flip + resize to 224 + normalise, on the 200
//!   JPEGs of `shared/data/photos-500x375` (override with `FUNMATCH_PHOTOS=DIR`), through the
//!   loader with one worker thread;
//! - fashion: one 60 000-image Fashion-MNIST epoch, 28×28 grey to 32×32 RGB views with
//!   inception crop, flip and mixup, one worker thread.
//!
//! Rates are given per CPU-second of the process (user + system time from /proc), which is
//! "images/s per core" and stays meaningful on a machine shared with other jobs; wall-clock
//! rates are printed beside them. Compare with `scripts/bench_data_reference.py`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use funmatch_data::decode::decode_file;
use funmatch_data::{
    fashion_mnist, Dataset, FileDataset, Interpolation, Loader, LoaderConfig, MnistSplit,
    ViewConfig, FASHION_MNIST_DIR,
};

const PASSES: usize = 5;
/// Epochs of the 200 photos per timed pass: about a second, so that the 10 ms resolution of
/// the CPU clock costs under 1 %.
const PHOTO_EPOCHS_PER_PASS: usize = 4;

/// User + system CPU time of this process in seconds (Linux), if readable.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of proc(5), utime and stime, in clock ticks of 1/100 s on Linux.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

struct Rate {
    wall: f64,
    cpu: Option<f64>,
}

fn measure(images: usize, work: impl FnOnce()) -> Rate {
    let (start, cpu_start) = (Instant::now(), cpu_seconds());
    work();
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_start.zip(cpu_seconds()).map(|(a, b)| b - a).filter(|&s| s > 0.0);
    Rate { wall: images as f64 / wall, cpu: cpu.map(|s| images as f64 / s) }
}

fn report(what: &str, rates: &[Rate]) {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let wall = median(rates.iter().map(|r| r.wall).collect());
    let cpu: Vec<f64> = rates.iter().filter_map(|r| r.cpu).collect();
    let cpu_text = if cpu.len() == rates.len() {
        format!("{:>6.0} images per CPU-second", median(cpu))
    } else {
        "CPU time unavailable".to_string()
    };
    println!("{what:<52} {cpu_text}, {wall:>6.0} images/s wall (median of {})", rates.len());
}

fn photo_files() -> Vec<PathBuf> {
    let dir = std::env::var_os("FUNMATCH_PHOTOS").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/photos-500x375")
    });
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading the photos in {}: {e}", dir.display()))
        .map(|e| e.expect("listing the photos").path())
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("jpg")))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no JPEGs in {}", dir.display());
    files
}

fn bench_photos() {
    let files = photo_files();
    let n = files.len();
    let labels = vec![0; n];
    let data: Arc<dyn Dataset> =
        Arc::new(FileDataset::from_parts(files.clone(), labels, vec!["photo".into()]).unwrap());
    println!("photos: {n} JPEGs, 1 worker thread, batch 50");

    // Warm the page cache and the allocator.
    for f in &files {
        decode_file(f).unwrap();
    }

    let rates: Vec<Rate> = (0..PASSES)
        .map(|_| {
            measure(n * PHOTO_EPOCHS_PER_PASS, || {
                for _ in 0..PHOTO_EPOCHS_PER_PASS {
                    for f in &files {
                        std::hint::black_box(decode_file(f).unwrap());
                    }
                }
            })
        })
        .collect();
    report("  read + decode only", &rates);

    for interpolation in [Interpolation::Bilinear, Interpolation::Bicubic] {
        let mut config =
            LoaderConfig::train(50, ViewConfig::square(224).with_interpolation(interpolation));
        config.workers = 1;
        config.prefetch = 0;
        let loader = Loader::new(data.clone(), config).unwrap();
        let spe = loader.steps_per_epoch();
        let rates: Vec<Rate> = (0..PASSES)
            .map(|pass| {
                measure(spe * 50 * PHOTO_EPOCHS_PER_PASS, || {
                    for epoch in 0..PHOTO_EPOCHS_PER_PASS {
                        for batch in loader.epoch(pass * PHOTO_EPOCHS_PER_PASS + epoch) {
                            std::hint::black_box(batch.unwrap());
                        }
                    }
                })
            })
            .collect();
        report(&format!("  decode + inception crop + flip + 224 {interpolation:?}"), &rates);
    }
}

fn bench_fashion() {
    let data: Arc<dyn Dataset> = Arc::new(
        fashion_mnist(std::path::Path::new(FASHION_MNIST_DIR), MnistSplit::Train).unwrap(),
    );
    let n = data.len();
    println!("fashion-mnist: {n} images, 1 worker thread, batch 256");
    for (what, size, mixup) in
        [("28 -> 32, shared view + mixup", 32, Some(1.0)), ("28 -> 28, shared view", 28, None)]
    {
        let mut config = LoaderConfig::train(
            256,
            ViewConfig::square(size).with_interpolation(Interpolation::Bilinear),
        );
        config.workers = 1;
        config.prefetch = 0;
        config.mixup = mixup;
        let loader = Loader::new(data.clone(), config).unwrap();
        let images = loader.steps_per_epoch() * 256;
        let rates: Vec<Rate> = (0..3)
            .map(|epoch| {
                measure(images, || {
                    for batch in loader.epoch(epoch) {
                        std::hint::black_box(batch.unwrap());
                    }
                })
            })
            .collect();
        report(&format!("  one epoch, {what}"), &rates);
    }
}

fn main() {
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let wants = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));
    if wants("photos") {
        bench_photos();
    }
    if wants("fashion") {
        bench_fashion();
    }
}
