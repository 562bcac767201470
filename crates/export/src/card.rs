//! Model cards: YAML front matter for the Hub, then what the model is and how it was made.

use funmatch_models::LoadedModel;
use serde_json::Value;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::{ExportError, ExportOptions};

/// What a funmatch run folder tells about the model it made.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    /// The run's effective configuration (`config.toml`), verbatim.
    pub recipe: String,
    /// `distill` or `train`.
    pub task: Option<String>,
    pub teachers: Vec<String>,
    pub variant: Option<String>,
    /// Training data (`data.train`).
    pub dataset: Option<String>,
    /// The last evaluation in `metrics.jsonl`.
    pub eval: Option<Value>,
}

/// Reads a run folder: its final model folder and what the card should say.
pub fn read_run(dir: &Path) -> Result<(PathBuf, RunInfo), ExportError> {
    let bad = |msg: String| ExportError::Run { path: dir.into(), msg };
    let model = dir.join("model");
    if !model.join("model.safetensors").is_file() {
        return Err(bad(
            "no finished model (model/model.safetensors); let the run finish or resume it".into(),
        ));
    }
    let recipe_path = dir.join("config.toml");
    let recipe = std::fs::read_to_string(&recipe_path)
        .map_err(|e| ExportError::Io { path: recipe_path.clone(), source: e })?;
    let table: toml::Table = recipe
        .parse()
        .map_err(|e| ExportError::Run { path: recipe_path, msg: format!("not valid TOML: {e}") })?;
    let text = |section: &str, key: &str| {
        table.get(section).and_then(|s| s.get(key)).and_then(|v| v.as_str()).map(String::from)
    };
    let teachers = table
        .get("teacher")
        .and_then(|t| t.get("models"))
        .and_then(|m| m.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default();

    let task = std::fs::read_to_string(dir.join("run.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v.get("task").and_then(Value::as_str).map(|s| s.to_lowercase()));
    let eval = std::fs::read_to_string(dir.join("metrics.jsonl")).ok().and_then(|text| {
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("kind").and_then(Value::as_str) == Some("eval"))
            .last()
    });
    let info = RunInfo {
        recipe,
        task,
        teachers,
        variant: text("loss", "variant"),
        dataset: text("data", "train"),
        eval,
    };
    Ok((model, info))
}

/// The `README.md` of an exported folder.
pub(crate) fn model_card(model: &LoadedModel, opts: &ExportOptions, timm_loadable: bool) -> String {
    let cfg = &model.config;
    let params: usize = model.params.values().map(|t| t.elem_count()).sum();
    // The Hub offers loading snippets for the library named here: claim timm only when timm
    // can build the model (transformers' Bit has BiT's stem, so the same test applies).
    let library = match opts.format {
        _ if !timm_loadable => "funmatch",
        crate::Format::Timm => "timm",
        crate::Format::Transformers => "transformers",
    };
    let run = opts.run.clone().unwrap_or_default();
    let distilled = run.task.as_deref() == Some("distill");

    let mut s = String::from("---\n");
    writeln!(s, "library_name: {library}").unwrap();
    s += "license: apache-2.0\npipeline_tag: image-classification\ntags:\n  - image-classification\n  - funmatch\n";
    if distilled {
        s += "  - knowledge-distillation\n  - function-matching\n";
    }
    if let Some(d) = run.dataset.as_deref().and_then(hub_dataset) {
        writeln!(s, "datasets:\n  - {}", yaml_string(d)).unwrap();
    }
    let metrics = eval_metrics(run.eval.as_ref());
    if !metrics.is_empty() {
        s += "metrics:\n";
        for (name, _) in &metrics {
            writeln!(s, "  - {name}").unwrap();
        }
    }
    s += "---\n\n";

    writeln!(s, "# {}\n", opts.name).unwrap();
    let [_, h, w] = model.pretrained.input_size;
    writeln!(
        s,
        "A BiT ResNet-v2 image classifier ({} classes, {} parameters, {:.4} GMACs per \
         {h}×{w} image), written by [funmatch](https://github.com/funmatch/funmatch).\n",
        cfg.num_classes,
        count(params),
        cfg.forward_macs(h) as f64 / 1e9
    )
    .unwrap();
    if distilled {
        let teachers =
            if run.teachers.is_empty() { "a teacher".into() } else { run.teachers.join(", ") };
        let variant = run.variant.as_deref().unwrap_or("function-matching");
        writeln!(
            s,
            "It was distilled from {teachers} ({variant}): teacher and student saw the same \
             augmented view at every step, and the student learned to match the teacher's \
             outputs (Beyer et al., \"Knowledge distillation: A good teacher is patient and \
             consistent\", CVPR 2022).\n"
        )
        .unwrap();
    }

    s += "## Architecture\n\n";
    writeln!(
        s,
        "- blocks per stage {:?}, stage widths {:?}, stem width {}, stem {:?}\n- GroupNorm ({} groups), weight-standardized convolutions",
        cfg.layers, cfg.channels, cfg.stem_width, cfg.stem, cfg.groups
    )
    .unwrap();
    if timm_loadable {
        s += "- timm builds this architecture: `timm.create_model(\"hf-hub:OWNER/NAME\", pretrained=True)` loads it unchanged.\n";
    } else {
        s += "- **timm cannot express this variant** (it differs from timm's registered BiT models); \
              load it with funmatch (`funmatch predict`).\n";
    }
    let pre = &model.pretrained;
    let interpolation = match pre.interpolation {
        funmatch_models::Interpolation::Bilinear => "bilinear",
        funmatch_models::Interpolation::Bicubic => "bicubic",
    };
    writeln!(
        s,
        "- preprocessing: resize the short side to {} px ({interpolation}), centre crop {h}×{w}, \
         mean {:?}, std {:?}\n",
        (h as f64 / pre.crop_pct).floor(),
        pre.mean,
        pre.std
    )
    .unwrap();

    if !metrics.is_empty() {
        s += "## Evaluation\n\nThe run's last evaluation, on its `data.eval` set (see the recipe below):\n\n| metric | value |\n|---|---|\n";
        for (name, value) in &metrics {
            writeln!(s, "| {name} | {value:.4} |").unwrap();
        }
        s += "\n";
    }
    if !run.recipe.is_empty() {
        s += "## Recipe\n\nThe run's effective configuration (`funmatch` recipe):\n\n```toml\n";
        s += run.recipe.trim_end();
        s += "\n```\n";
    }
    s
}

/// Named scalars of an eval record, for the card's table and front matter.
fn eval_metrics(eval: Option<&Value>) -> Vec<(String, f64)> {
    let Some(obj) = eval.and_then(Value::as_object) else { return Vec::new() };
    let keys = ["student_top1", "teacher_top1", "agreement", "kl", "ce"];
    keys.iter().filter_map(|k| Some((k.to_string(), obj.get(*k)?.as_f64()?))).collect()
}

fn yaml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A parameter count as people write it: `25.55 M`, `93.2 k`.
fn count(n: usize) -> String {
    if n >= 1_000_000 {
        format!("{:.2} M", n as f64 / 1e6)
    } else if n >= 1000 {
        format!("{:.1} k", n as f64 / 1e3)
    } else {
        n.to_string()
    }
}

/// The Hub dataset id for the card's metadata, for the datasets that have one; local folders
/// (and the folder part of `fashion-mnist:train:DIR`) are nobody else's business.
fn hub_dataset(spec: &str) -> Option<&'static str> {
    match spec.split(':').next()? {
        "fashion-mnist" => Some("zalando-datasets/fashion_mnist"),
        "imagenet" | "imagenet-1k" => Some("ILSVRC/imagenet-1k"),
        _ => None,
    }
}
