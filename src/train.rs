//! `funmatch train` and `funmatch distill`: supervised training and distillation runs, from a
//! recipe with command-line overrides, into a resumable run folder.

use std::path::PathBuf;

use anyhow::Context;
use funmatch_distill::{Outcome, RunConfig, RunOptions, Summary, Task};

/// Options shared by `train` and `distill`.
#[derive(clap::Args, Debug)]
pub struct CommonArgs {
    /// Run folder: config.toml, metrics.jsonl, checkpoint, plots, and the final model/.
    #[arg(long, short, value_name = "DIR", required_unless_present = "resume")]
    pub out: Option<PathBuf>,
    /// Continue the run in DIR from its last checkpoint (its config.toml is used; only
    /// device, data.workers, data.prefetch and run.* may be overridden).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["out", "recipe", "size"])]
    pub resume: Option<PathBuf>,
    /// Recipe: a TOML file setting any option (see models/recipes/).
    #[arg(long, value_name = "FILE")]
    pub recipe: Option<PathBuf>,
    /// A named size of the recipe (its [size.NAME] table), e.g. `smoke`.
    #[arg(long, value_name = "NAME", requires = "recipe")]
    pub size: Option<String>,
    /// Override any option: KEY=VALUE with a dotted key and a TOML value, e.g.
    /// `--set optim.lr=0.01 --set student.layers=[2,2,2]` (repeatable; applied last).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Training data (data.train): fashion-mnist[:train|:test][:DIR] or a folder of class
    /// folders.
    #[arg(long, value_name = "DATASET")]
    pub data: Option<String>,
    /// Held-out data (data.eval): `split` (a share of the training data), `none`, or a
    /// dataset.
    #[arg(long, value_name = "DATASET")]
    pub eval_data: Option<String>,
    /// cpu, cuda or cuda:N (device).
    #[arg(long)]
    pub device: Option<String>,
    /// Seed of initialisation, data order, augmentation and mixup (seed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Total steps (optim.steps; overrides epochs).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Total epochs (optim.epochs).
    #[arg(long)]
    pub epochs: Option<f64>,
    /// Examples per step (optim.batch_size).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Peak learning rate (optim.lr).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Progress display: auto, bar, lines or quiet (run.progress).
    #[arg(long)]
    pub progress: Option<String>,
}

/// Train a model with softmax cross-entropy (label smoothing and mixup optional).
///
/// Used for teachers on small data and for from-scratch baselines. Ctrl-C writes a
/// checkpoint and exits with status 130; `--resume DIR` continues bit for bit.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The model to train (student.arch): `custom` (student.* keys), a registered
    /// architecture (from scratch), or a MODEL to start from.
    #[arg(long, value_name = "ARCH_OR_MODEL")]
    pub model: Option<String>,
}

/// Distil one or more teachers into a student by function matching (T²·KL).
///
/// Ctrl-C writes a checkpoint and exits with status 130; `--resume DIR` continues bit for
/// bit.
#[derive(clap::Args, Debug)]
pub struct DistillArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Teacher MODEL (folder, weights file, zoo name or Hub id); repeat for an ensemble
    /// whose logits are averaged (teacher.models).
    #[arg(long, value_name = "MODEL")]
    pub teacher: Vec<String>,
    /// The student (student.arch): `custom` (student.* keys), a registered architecture
    /// (from scratch), or a MODEL to start from.
    #[arg(long, value_name = "ARCH_OR_MODEL")]
    pub student: Option<String>,
    /// function-matching (shared view + mixup), consistent (shared view), independent
    /// (two views) or fixed (teacher outputs computed once per image) (loss.variant).
    #[arg(long)]
    pub variant: Option<String>,
    /// Distillation temperature (loss.temperature).
    #[arg(long)]
    pub temperature: Option<f64>,
    /// File mapping each data class to a teacher class, one per line (teacher.class_map).
    #[arg(long, value_name = "FILE")]
    pub class_map: Option<PathBuf>,
}

/// Runs `funmatch train`.
pub fn run_train(args: TrainArgs) -> anyhow::Result<()> {
    let mut sets = Vec::new();
    push_str(&mut sets, "student.arch", args.model.as_deref());
    run(Task::Supervised, &args.common, sets)
}

/// Runs `funmatch distill`.
pub fn run_distill(args: DistillArgs) -> anyhow::Result<()> {
    let mut sets = Vec::new();
    if !args.teacher.is_empty() {
        let list: Vec<toml::Value> =
            args.teacher.iter().cloned().map(toml::Value::String).collect();
        sets.push(format!("teacher.models={}", toml::Value::Array(list)));
    }
    push_str(&mut sets, "student.arch", args.student.as_deref());
    if let Some(v) = &args.variant {
        v.parse::<funmatch_distill::Variant>().map_err(anyhow::Error::msg)?;
    }
    push_str(&mut sets, "loss.variant", args.variant.as_deref());
    push(&mut sets, "loss.temperature", args.temperature);
    let class_map = args.class_map.as_ref().map(|p| p.display().to_string());
    push_str(&mut sets, "teacher.class_map", class_map.as_deref());
    run(Task::Distill, &args.common, sets)
}

fn push<T: std::fmt::Display>(sets: &mut Vec<String>, key: &str, value: Option<T>) {
    if let Some(v) = value {
        sets.push(format!("{key}={v}"));
    }
}

/// A string value, quoted so that it stays a string whatever it looks like.
fn push_str(sets: &mut Vec<String>, key: &str, value: Option<&str>) {
    if let Some(v) = value {
        sets.push(format!("{key}={}", toml::Value::String(v.to_string())));
    }
}

fn run(task: Task, common: &CommonArgs, mut sets: Vec<String>) -> anyhow::Result<()> {
    push_str(&mut sets, "data.train", common.data.as_deref());
    push_str(&mut sets, "data.eval", common.eval_data.as_deref());
    push_str(&mut sets, "device", common.device.as_deref());
    push(&mut sets, "seed", common.seed);
    push(&mut sets, "optim.steps", common.steps);
    push(&mut sets, "optim.epochs", common.epochs.map(|e| format!("{e:?}")));
    push(&mut sets, "optim.batch_size", common.batch_size);
    push(&mut sets, "optim.lr", common.lr.map(|v| format!("{v:?}")));
    push_str(&mut sets, "run.progress", common.progress.as_deref());
    sets.extend(common.set.iter().cloned());

    let (config, dir, resume) = match &common.resume {
        Some(dir) => {
            let config = funmatch_distill::resume_config(dir, &sets)?;
            (config, dir.clone(), true)
        }
        None => {
            let config = RunConfig::load(common.recipe.as_deref(), common.size.as_deref(), &sets)?;
            let dir = common.out.clone().context("--out DIR is required for a new run")?;
            (config, dir, false)
        }
    };

    let options = RunOptions {
        run_dir: dir.clone(),
        resume,
        resolver: Some(Box::new(|spec: &str| {
            crate::model_arg::resolve(spec).map_err(|e| format!("{e:#}"))
        })),
        stop: Some(funmatch_distill::stop_on_ctrl_c()?),
        on_step: None,
    };
    let summary = funmatch_distill::train(task, &config, options)
        .with_context(|| format!("run folder {}", dir.display()))?;
    report(&summary, config.data.eval_name());
    match summary.outcome {
        Outcome::Finished => {
            if let Some(model) = &summary.model_dir {
                println!("{}", model.display());
            }
            Ok(())
        }
        // Everything is written and closed by now; 130 tells scripts the run is unfinished.
        Outcome::Interrupted => std::process::exit(130),
    }
}

fn report(s: &Summary, eval: &str) {
    let mut line = format!("{} steps of {}", s.steps, s.total_steps);
    if s.steps_per_s > 0.0 {
        line += &format!("; {:.2} steps/s, {:.0} images/s", s.steps_per_s, s.images_per_s);
    } else if s.total_steps > 0 {
        // A resumed run that had already finished: no step ran, so there is no rate.
        line += " (none left to run)";
    }
    if let Some(e) = &s.eval {
        line += &format!("; {eval} student top-1 {:.2}%", 100.0 * e.student_top1);
        if let Some(t) = e.teacher_top1 {
            line += &format!(", teacher {:.2}%", 100.0 * t);
        }
        if let Some(a) = e.agreement {
            line += &format!(", agreement {:.2}%", 100.0 * a);
        }
    }
    eprintln!("{line}");
    if s.steps == 0 && s.total_steps == 0 {
        // Nothing to train is legal but worth saying.
        eprintln!("warning: the configuration gives no training steps");
    }
}
