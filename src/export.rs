//! `funmatch export MODEL_OR_RUN --out DIR`: a Hub-ready model folder.

use anyhow::Context;
use candle_core::Device;
use clap::{Args, ValueEnum};
use funmatch_export::{export, read_run, ExportOptions, Format, WeightDtype};
use std::path::{Path, PathBuf};

use crate::model_arg;

/// Arguments of `funmatch export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A run folder (of `funmatch train` or `funmatch distill`), a model folder, a weights
    /// file, a zoo name or a Hub id.
    pub source: String,
    /// The folder to write; it must not exist yet (or be empty).
    #[arg(long)]
    pub out: PathBuf,
    /// Folder layout: timm's names and config, or transformers' BitForImageClassification.
    #[arg(long, value_enum, default_value_t = LayoutArg::Timm)]
    pub format: LayoutArg,
    /// Storage type of the weights.
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    pub dtype: DtypeArg,
    /// The model's name in the model card (default: the output folder's name).
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LayoutArg {
    Timm,
    Transformers,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DtypeArg {
    F32,
    F16,
    Bf16,
}

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let source = Path::new(&args.source);
    let (model, run) = if source.join("run.json").is_file() {
        let (model_dir, info) = read_run(source)?;
        (funmatch_models::load_model(&model_dir, &Device::Cpu)?, Some(info))
    } else {
        (model_arg::load(&args.source, &Device::Cpu)?, None)
    };
    let name = args.name.clone().unwrap_or_else(|| {
        args.out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into())
    });
    let opts = ExportOptions {
        format: match args.format {
            LayoutArg::Timm => Format::Timm,
            LayoutArg::Transformers => Format::Transformers,
        },
        dtype: match args.dtype {
            DtypeArg::F32 => WeightDtype::F32,
            DtypeArg::F16 => WeightDtype::F16,
            DtypeArg::Bf16 => WeightDtype::BF16,
        },
        name,
        run,
    };
    let report = export(&model, &args.out, &opts)
        .with_context(|| format!("exporting {} to {}", args.source, args.out.display()))?;
    eprintln!(
        "exported; reloaded logits differ by at most {:.2e}{}",
        report.max_logit_diff,
        if report.timm_loadable { "" } else { " (timm cannot build this variant; see the card)" }
    );
    println!("{}", report.dir.display());
    Ok(())
}
