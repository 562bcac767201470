//! Writing model folders: `model.safetensors` with timm's names and a timm-style
//! `config.json`, so that our loader, timm and the Hub read the same folder.

use candle_core::{DType, Tensor};
use serde_json::{json, Value};
use std::path::Path;

use crate::config::{
    find_arch, BitConfig, Interpolation, Padding, PretrainedCfg, StemKind, ARCHITECTURES,
};
use crate::error::ModelError;
use crate::resnetv2::Params;

/// The registry architecture whose structure `cfg` has, with timm's `model_args` overrides
/// (channels, stem width, classes), or `None` when timm cannot express `cfg` (small stem,
/// other depths, "SAME" padding, other norm settings).
pub fn timm_equivalent(cfg: &BitConfig) -> Option<(&'static str, Value)> {
    let timm_like = cfg.stem == StemKind::Bit
        && cfg.padding == Padding::Symmetric
        && cfg.stem_pool_pad == 1
        && !cfg.stem_pool_same
        && cfg.groups == 32
        && cfg.bottle_ratio == 0.25
        && cfg.gn_eps == 1e-5
        && cfg.ws_eps == 1e-8;
    if !timm_like {
        return None;
    }
    // timm's builders fix the depths and the width factor; channels and stem width are
    // overridable, and are given already scaled, so pick the ×1 builder of the right depth.
    let arch =
        ARCHITECTURES.iter().find(|a| a.width_factor == 1 && a.layers == cfg.layers.as_slice());
    let arch = arch.or_else(|| ARCHITECTURES.iter().find(|a| a.layers == cfg.layers.as_slice()))?;
    let wf = arch.width_factor;
    let unscaled: Option<Vec<usize>> =
        cfg.channels.iter().map(|&c| (c % wf == 0).then_some(c / wf)).collect();
    let standard = find_arch(arch.name)?.config(cfg.num_classes);
    let mut args = json!({ "num_classes": cfg.num_classes, "in_chans": cfg.in_chans });
    if cfg.channels != standard.channels || cfg.stem_width != standard.stem_width {
        args["channels"] = json!(unscaled?);
        args["stem_chs"] = json!(cfg.stem_width / wf);
    }
    Some((arch.name, args))
}

/// The `config.json` for a model folder.
///
/// timm's fields (`architecture`, `num_classes`, `num_features`, `model_args`,
/// `pretrained_cfg`, `label_names`) plus a `funmatch` block with the full structure, which
/// our loader needs for variants timm cannot express.
pub fn config_json(
    cfg: &BitConfig,
    pretrained: &PretrainedCfg,
    labels: Option<&[String]>,
) -> Value {
    let interpolation = match pretrained.interpolation {
        Interpolation::Bilinear => "bilinear",
        Interpolation::Bicubic => "bicubic",
    };
    let (architecture, model_args, timm_loadable) = match timm_equivalent(cfg) {
        Some((name, args)) => (name.to_string(), args, true),
        None => ("funmatch_resnetv2".to_string(), json!({ "num_classes": cfg.num_classes }), false),
    };
    let mut out = json!({
        "architecture": architecture,
        "num_classes": cfg.num_classes,
        "num_features": cfg.num_features(),
        "global_pool": "avg",
        "model_args": model_args,
        "pretrained_cfg": {
            "input_size": pretrained.input_size,
            "interpolation": interpolation,
            "crop_pct": pretrained.crop_pct,
            "crop_mode": "center",
            "mean": pretrained.mean,
            "std": pretrained.std,
            "num_classes": cfg.num_classes,
            "first_conv": "stem.conv",
            "classifier": "head.fc",
        },
        "funmatch": {
            "timm_loadable": timm_loadable,
            "layers": cfg.layers,
            "channels": cfg.channels,
            "stem_width": cfg.stem_width,
            "stem": match cfg.stem { StemKind::Bit => "bit", StemKind::Small => "small" },
            "padding": match cfg.padding { Padding::Symmetric => "symmetric", Padding::Same => "same" },
            "stem_pool_pad": cfg.stem_pool_pad,
            "stem_pool_same": cfg.stem_pool_same,
            "groups": cfg.groups,
            "bottle_ratio": cfg.bottle_ratio,
            "gn_eps": cfg.gn_eps,
            "ws_eps": cfg.ws_eps,
        },
    });
    if let Some(labels) = labels {
        out["label_names"] = json!(labels);
    }
    out
}

/// Writes `params` (timm's names) as `model.safetensors` and the matching `config.json` into
/// `dir`, creating it. Each file is written to a temporary name and renamed into place, so a
/// failure never leaves a half-written file under the final name.
pub fn save_model_folder(
    dir: &Path,
    cfg: &BitConfig,
    pretrained: &PretrainedCfg,
    labels: Option<&[String]>,
    params: &Params,
) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;

    let tensors: Vec<(String, Tensor)> = params
        .iter()
        .map(|(k, t)| {
            // Half precision is kept (smaller exports); anything else is stored as f32.
            let t = match t.dtype() {
                DType::F32 | DType::F16 | DType::BF16 => t.clone(),
                _ => t.to_dtype(DType::F32)?,
            };
            Ok((k.clone(), t.to_device(&candle_core::Device::Cpu)?))
        })
        .collect::<Result<_, candle_core::Error>>()?;
    let weights = dir.join("model.safetensors");
    let tmp = dir.join(".model.safetensors.tmp");
    candle_core::safetensors::save(&tensors.into_iter().collect(), &tmp)?;
    readable_by_all(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
    std::fs::rename(&tmp, &weights).map_err(|e| ModelError::io(&weights, e))?;

    let config = dir.join("config.json");
    let tmp = dir.join(".config.json.tmp");
    let text =
        serde_json::to_string_pretty(&config_json(cfg, pretrained, labels)).expect("JSON value");
    std::fs::write(&tmp, text + "\n").map_err(|e| ModelError::io(&tmp, e))?;
    std::fs::rename(&tmp, &config).map_err(|e| ModelError::io(&config, e))?;
    Ok(())
}

/// The safetensors writer creates owner-only (0600) files; a model folder is meant to be
/// shared and published, so its weights get the usual 0644 like every other file in it.
pub fn readable_by_all(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
