//! `funmatch eval`: models (teacher and students) on ImageNet, its variants and
//! Fashion-MNIST, side by side, with timm's result columns.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use funmatch_data::Interpolation;
use funmatch_eval::{
    find_set, results, run_suite, EvalModel, EvalSet, OpenOptions, Preprocess, ProgressMode,
    ResultRow, ResultsDir, RunOptions,
};

use crate::model_arg;

/// Evaluate models on eval sets and print a models × sets table.
///
/// Sets: imagenet, imagenet-real, imagenet-v2 (= imagenet-v2-matched-frequency),
/// imagenet-v2-threshold-0.7, imagenet-v2-top-images, imagenet-a, imagenet-r,
/// imagenet-a-clean, imagenet-r-clean, imagenet-sketch, fashion-mnist, or a descriptor file
/// (*.toml). A set's folder comes from --root, else its environment variable (e.g.
/// IMAGENET_ROOT, IMAGENET_A_ROOT), else FUNMATCH_DATA (or --data) holding the usual folder
/// names. Preprocessing follows each model's config unless overridden.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Models: local folders or weights files, zoo names, or Hub ids (owner/name[@rev]).
    #[arg(value_name = "MODEL")]
    pub models: Vec<String>,
    /// Comma-separated eval sets (names or descriptor files).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "SET[,SET…]",
        required_unless_present_any = ["compare", "list_sets"]
    )]
    pub sets: Vec<String>,
    /// A teacher: also evaluated, and every model gets KL and top-1/top-5 agreement with it.
    #[arg(long, value_name = "MODEL")]
    pub teacher: Option<String>,
    /// The set's folder (with one set), or SET=DIR (repeat for several sets).
    #[arg(long = "root", value_name = "[SET=]DIR")]
    pub roots: Vec<String>,
    /// A folder holding several sets under their usual names (default: $FUNMATCH_DATA).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Folder with the ImageNet devkit ground truth for the flat val layout.
    #[arg(long, value_name = "DIR")]
    pub devkit: Option<PathBuf>,
    /// Only the first N images of each set (a quick check; not a comparable number).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Decode threads (0: one per core, or RAYON_NUM_THREADS).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Override the input size (square) of every model.
    #[arg(long, value_name = "PX")]
    pub img_size: Option<u32>,
    /// Override the eval crop share of every model (short side resized to size / crop_pct).
    #[arg(long, value_name = "F")]
    pub crop_pct: Option<f32>,
    /// Override the resampling filter: bicubic or bilinear.
    #[arg(long, value_name = "NAME")]
    pub interpolation: Option<String>,
    /// Override the normalisation mean: one value or three, comma-separated.
    #[arg(long, value_name = "R,G,B")]
    pub mean: Option<String>,
    /// Override the normalisation std: one value or three, comma-separated.
    #[arg(long, value_name = "R,G,B")]
    pub std: Option<String>,
    /// Write the rows as CSV (timm's columns, then ours).
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Write the rows as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a markdown table.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Add the rows to a results folder (rows.jsonl plus CSV/JSON/markdown summaries).
    #[arg(long, value_name = "DIR")]
    pub results: Option<PathBuf>,
    /// Print the side-by-side table of a results folder (newest row per model and set).
    #[arg(long, value_name = "DIR")]
    pub compare: Option<PathBuf>,
    /// List the known sets and exit.
    #[arg(long)]
    pub list_sets: bool,
    /// Progress display: auto (bar on a terminal, lines otherwise), bar, lines, quiet.
    #[arg(long, default_value = "auto")]
    pub progress: String,
}

/// Runs `funmatch eval`.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    if args.list_sets {
        for set in funmatch_eval::builtin_sets() {
            let aliases = if set.aliases.is_empty() {
                String::new()
            } else {
                format!(" (also {})", set.aliases.join(", "))
            };
            let env = set.root_env.join(", ");
            println!(
                "{:<30} {}{aliases}; folder from {}",
                set.name,
                set.title,
                if env.is_empty() { "--root".into() } else { env }
            );
        }
        return Ok(());
    }
    if let Some(dir) = &args.compare {
        if args.models.is_empty() && args.teacher.is_none() {
            return compare(dir, &args);
        }
    }
    if args.models.is_empty() && args.teacher.is_none() {
        bail!("name at least one MODEL (or --teacher) to evaluate");
    }

    // Sets first: a wrong folder is reported before any model is loaded.
    let sets = open_sets(&args)?;
    let device = model_arg::device(&args.device)?;
    let pre = preprocess(&args)?;
    let load = |spec: &str| -> anyhow::Result<EvalModel> {
        let path = model_arg::resolve(spec)?;
        EvalModel::load(spec, &path, &device, &pre).with_context(|| format!("loading {spec}"))
    };
    let teacher = args.teacher.as_deref().map(load).transpose()?;
    let models = args.models.iter().map(|m| load(m)).collect::<anyhow::Result<Vec<_>>>()?;

    let opts = RunOptions {
        batch_size: args.batch_size,
        workers: args.workers,
        progress: progress_mode(&args.progress)?,
    };
    let rows = run_suite(&models, teacher.as_ref(), &sets, &opts, &mut |row, run| {
        if !run.failures.failures.is_empty() {
            eprintln!("{} on {}: {}", row.model, row.set, run.failures);
        }
        // The progress line already said it; the structured record is for -v.
        tracing::debug!(
            model = %row.model,
            set = %row.set,
            top1 = row.top1,
            top5 = row.top5,
            images = row.images,
            images_per_s = row.images_per_s,
            "evaluated"
        );
    })?;

    print!("{}", results::screen_table(&rows));
    let failed: usize = rows.iter().map(|r| r.failed).sum();
    if failed > 0 {
        println!("{failed} unreadable images were skipped (listed above)");
    }
    write_outputs(&rows, &args)?;
    if let Some(dir) = &args.results {
        ResultsDir::new(dir).append(&rows)?;
        println!("added {} rows to {}", rows.len(), dir.display());
    }
    if let Some(dir) = &args.compare {
        println!();
        compare(dir, &args)?;
    }
    Ok(())
}

fn open_sets(args: &EvalArgs) -> anyhow::Result<Vec<EvalSet>> {
    let descriptors =
        args.sets.iter().map(|s| find_set(s.trim())).collect::<Result<Vec<_>, _>>()?;

    // --root DIR (one set) or --root SET=DIR.
    let mut per_set: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut single = None;
    for root in &args.roots {
        match root.split_once('=') {
            Some((set, dir)) if descriptors.iter().any(|d| d.answers_to(set)) => {
                let name = descriptors.iter().find(|d| d.answers_to(set)).map(|d| d.name.clone());
                per_set.insert(name.unwrap_or_default(), PathBuf::from(dir));
            }
            _ => single = Some(PathBuf::from(root)),
        }
    }
    if single.is_some() && descriptors.len() > 1 {
        bail!("--root DIR names the folder of one set; with several sets use --root SET=DIR for each (or --data DIR)");
    }

    let env = |name: &str| std::env::var(name).ok();
    let mut sets = Vec::new();
    for desc in &descriptors {
        let opts = OpenOptions {
            root: per_set.get(&desc.name).cloned().or_else(|| single.clone()),
            data_dir: args.data.clone(),
            devkit: args.devkit.clone(),
            limit: args.limit,
        };
        let set = EvalSet::open(desc, &opts, &env)?;
        tracing::debug!(
            set = %desc.name,
            dir = %set.dir.display(),
            layout = ?set.layout,
            images = set.dataset.len(),
            "eval set"
        );
        for note in &set.notes {
            tracing::debug!(set = %desc.name, "{note}");
        }
        sets.push(set);
    }
    Ok(sets)
}

fn preprocess(args: &EvalArgs) -> anyhow::Result<Preprocess> {
    let interpolation = match args.interpolation.as_deref() {
        None => None,
        Some("bicubic") => Some(Interpolation::Bicubic),
        Some("bilinear") => Some(Interpolation::Bilinear),
        Some(other) => bail!("--interpolation {other:?}: expected bicubic or bilinear"),
    };
    Ok(Preprocess {
        img_size: args.img_size,
        crop_pct: args.crop_pct,
        interpolation,
        mean: args.mean.as_deref().map(|v| triple("--mean", v)).transpose()?,
        std: args.std.as_deref().map(|v| triple("--std", v)).transpose()?,
    })
}

/// `0.5` or `0.485,0.456,0.406` → three values.
fn triple(flag: &str, value: &str) -> anyhow::Result<[f32; 3]> {
    let parsed: Vec<f32> = value
        .split(',')
        .map(|v| v.trim().parse::<f32>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("{flag} {value:?}: expected numbers"))?;
    match parsed[..] {
        [v] => Ok([v; 3]),
        [r, g, b] => Ok([r, g, b]),
        _ => bail!("{flag} {value:?}: expected one value or three, found {}", parsed.len()),
    }
}

fn progress_mode(value: &str) -> anyhow::Result<ProgressMode> {
    Ok(match value {
        "auto" => ProgressMode::Auto,
        "bar" => ProgressMode::Bar,
        "lines" => ProgressMode::Lines,
        "quiet" => ProgressMode::Quiet,
        other => bail!("--progress {other:?}: expected auto, bar, lines or quiet"),
    })
}

fn write_outputs(rows: &[ResultRow], args: &EvalArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.csv {
        results::write_file(path, &results::full_csv(rows))?;
    }
    if let Some(path) = &args.json {
        results::write_file(path, &results::json(rows))?;
    }
    if let Some(path) = &args.markdown {
        results::write_file(path, &results::markdown(rows))?;
    }
    Ok(())
}

/// `--compare DIR`: the newest row of every (model, set) in a results folder.
fn compare(dir: &std::path::Path, args: &EvalArgs) -> anyhow::Result<()> {
    let rows = ResultsDir::new(dir)
        .latest()
        .with_context(|| format!("reading results folder {}", dir.display()))?;
    if rows.is_empty() {
        bail!("{}: no result rows yet", dir.display());
    }
    print!("{}", results::screen_table(&rows));
    if args.results.is_none() || args.results.as_deref() != Some(dir) {
        write_outputs(&rows, args)?;
    }
    Ok(())
}
