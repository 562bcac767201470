//! The transformers `BitForImageClassification` layout.

use funmatch_models::{BitConfig, Interpolation, LoadedModel, Padding, Params, StemKind};
use serde_json::{json, Value};
use std::path::Path;

use crate::{write, ExportError};

/// Why transformers' `BitConfig` cannot describe `cfg`, or `None` when it can.
pub fn transformers_blocker(cfg: &BitConfig) -> Option<String> {
    let reason = if cfg.stem != StemKind::Bit {
        "its small 3×3 stem (transformers has only BiT's 7×7 stem)".to_string()
    } else if cfg.bottle_ratio != 0.25 {
        format!("bottleneck ratio {} (transformers: 0.25)", cfg.bottle_ratio)
    } else if cfg.gn_eps != 1e-5 || cfg.ws_eps != 1e-8 {
        format!(
            "GroupNorm eps {} / standardization eps {} (transformers: 1e-5 / 1e-8)",
            cfg.gn_eps, cfg.ws_eps
        )
    } else if cfg.stem_pool_pad != usize::from(cfg.padding == Padding::Symmetric) {
        format!("stem pool padding {} with {:?} convolutions", cfg.stem_pool_pad, cfg.padding)
    } else if cfg.channels.iter().any(|c| c % 8 != 0) {
        format!("stage widths {:?} (transformers rounds widths to multiples of 8)", cfg.channels)
    } else {
        return None;
    };
    Some(reason)
}

/// timm name → transformers name.
fn rename(name: &str) -> String {
    if name == "stem.conv.weight" {
        return "bit.embedder.convolution.weight".into();
    }
    if let Some(rest) = name.strip_prefix("stages.") {
        return format!("bit.encoder.stages.{}", rest.replacen(".blocks.", ".layers.", 1));
    }
    if let Some(rest) = name.strip_prefix("norm.") {
        return format!("bit.norm.{rest}");
    }
    match name {
        "head.fc.weight" => "classifier.1.weight".into(),
        "head.fc.bias" => "classifier.1.bias".into(),
        other => other.into(),
    }
}

/// Writes `model.safetensors`, `config.json` and `preprocessor_config.json`.
pub(crate) fn write_folder(
    dir: &Path,
    model: &LoadedModel,
    params: &Params,
) -> Result<(), ExportError> {
    let cfg = &model.config;
    let mut tensors = std::collections::HashMap::new();
    for (name, t) in params {
        let t = if name == "head.fc.weight" { t.flatten_from(1)? } else { t.clone() };
        tensors.insert(rename(name), t);
    }
    let weights = dir.join("model.safetensors");
    candle_core::safetensors::save(&tensors, &weights)?;
    funmatch_models::readable_by_all(&weights)
        .map_err(|source| ExportError::Io { path: weights.clone(), source })?;

    let labels: Vec<String> = match &model.labels {
        Some(l) => l.clone(),
        None => (0..cfg.num_classes).map(|i| format!("LABEL_{i}")).collect(),
    };
    let id2label: serde_json::Map<String, Value> =
        labels.iter().enumerate().map(|(i, l)| (i.to_string(), json!(l))).collect();
    let label2id: serde_json::Map<String, Value> =
        labels.iter().enumerate().map(|(i, l)| (l.clone(), json!(i))).collect();
    let config = json!({
        "architectures": ["BitForImageClassification"],
        "model_type": "bit",
        "num_channels": cfg.in_chans,
        "embedding_size": cfg.stem_width,
        "hidden_sizes": cfg.channels,
        "depths": cfg.layers,
        "layer_type": "preactivation",
        "hidden_act": "relu",
        "global_padding": if cfg.padding == Padding::Same { json!("SAME") } else { Value::Null },
        "embedding_dynamic_padding": cfg.stem_pool_same,
        "num_groups": cfg.groups,
        "drop_path_rate": 0.0,
        "output_stride": 32,
        "width_factor": 1,
        "id2label": id2label,
        "label2id": label2id,
    });
    write(
        &dir.join("config.json"),
        &(serde_json::to_string_pretty(&config).expect("JSON") + "\n"),
    )?;

    let pre = &model.pretrained;
    let [_, h, w] = pre.input_size;
    let short = (h.min(w) as f64 / pre.crop_pct).floor() as usize;
    let preprocessor = json!({
        "image_processor_type": "BitImageProcessor",
        "do_convert_rgb": true,
        "do_resize": true,
        "size": { "shortest_edge": short },
        "resample": match pre.interpolation { Interpolation::Bilinear => 2, Interpolation::Bicubic => 3 },
        "do_center_crop": true,
        "crop_size": { "height": h, "width": w },
        "do_rescale": true,
        "rescale_factor": 1.0 / 255.0,
        "do_normalize": true,
        "image_mean": pre.mean,
        "image_std": pre.std,
    });
    let text = serde_json::to_string_pretty(&preprocessor).expect("JSON") + "\n";
    write(&dir.join("preprocessor_config.json"), &text)
}
