//! Weight import: timm and transformers safetensors, Google BiT `.npz`; model folders.
//!
//! Every format is renamed to timm's names, then checked against the architecture: all
//! missing, unexpected and mis-shaped tensors are reported together, naming the file.

use candle_core::{DType, Device, Tensor};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::{find_arch, BitConfig, Interpolation, Padding, PretrainedCfg, StemKind};
use crate::error::{Mismatch, ModelError};
use crate::resnetv2::{param_specs, Params};

/// Where a set of weights came from, which decides their names and layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// timm's names, classifier as a 1×1 conv.
    Timm,
    /// transformers `BitForImageClassification`, 2-D classifier.
    Transformers,
    /// Google's BiT `.npz`, HWIO kernels.
    BigTransferNpz,
}

/// A model read from disk: architecture, preprocessing, class names and weights.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    pub config: BitConfig,
    pub pretrained: PretrainedCfg,
    /// Class names in logit order, when the source has them.
    pub labels: Option<Vec<String>>,
    /// Weights with timm's names, `f32`.
    pub params: Params,
    pub format: WeightFormat,
    /// The weights file.
    pub weights_path: PathBuf,
    /// The architecture name from `config.json` (timm's), when present.
    pub architecture: Option<String>,
}

/// Loads a model folder (`config.json` + `model.safetensors` or a `.npz`), a `.safetensors`
/// file, or a `.npz` file. The architecture comes from `config.json` when there is one and
/// otherwise from the tensor shapes.
pub fn load_model(path: &Path, device: &Device) -> Result<LoadedModel, ModelError> {
    let (weights_path, config_path) = locate(path)?;
    let config_json = match &config_path {
        Some(p) => Some(read_json(p)?),
        None => None,
    };

    let is_npz = weights_path.extension().is_some_and(|e| e == "npz");
    let is_index = weights_path.to_string_lossy().ends_with(".safetensors.index.json");
    let raw = if is_npz {
        read_npz(&weights_path)?
    } else if is_index {
        read_sharded(&weights_path)?
    } else {
        read_safetensors(&weights_path)?
    };
    let format = if is_npz {
        WeightFormat::BigTransferNpz
    } else if raw.keys().any(|k| k.starts_with("bit.")) {
        WeightFormat::Transformers
    } else {
        WeightFormat::Timm
    };
    let renamed = match format {
        WeightFormat::Timm => raw,
        WeightFormat::Transformers => rename_transformers(raw, &weights_path)?,
        WeightFormat::BigTransferNpz => rename_npz(raw, &weights_path)?,
    };

    let mut config = infer_config(&renamed, &weights_path)?;
    let mut pretrained = PretrainedCfg::default();
    let mut labels = None;
    let mut architecture = None;
    if let (Some(json), Some(cfg_path)) = (&config_json, &config_path) {
        apply_config_json(json, cfg_path, &mut config, &mut pretrained)?;
        labels = label_names(json);
        architecture = json.get("architecture").and_then(Value::as_str).map(String::from);
    }
    let preprocessor = weights_path.with_file_name("preprocessor_config.json");
    if format == WeightFormat::Transformers && preprocessor.is_file() {
        apply_preprocessor_config(&read_json(&preprocessor)?, &preprocessor, &mut pretrained)?;
    }
    config.validate().map_err(|msg| ModelError::Config { path: weights_path.clone(), msg })?;

    let params = check_params(&config, renamed, &weights_path)?;
    let params = params
        .into_iter()
        .map(|(k, t)| Ok((k, t.to_device(device)?)))
        .collect::<Result<Params, candle_core::Error>>()?;
    Ok(LoadedModel { config, pretrained, labels, params, format, weights_path, architecture })
}

/// Finds the weights file and the config file for `path`.
fn locate(path: &Path) -> Result<(PathBuf, Option<PathBuf>), ModelError> {
    if path.is_file() {
        let config = path.parent().map(|d| d.join("config.json")).filter(|p| p.is_file());
        return Ok((path.to_path_buf(), config));
    }
    if !path.is_dir() {
        return Err(ModelError::NotFound { path: path.to_path_buf() });
    }

    let config = Some(path.join("config.json")).filter(|p| p.is_file());
    let safetensors = path.join("model.safetensors");
    if safetensors.is_file() {
        return Ok((safetensors, config));
    }
    let index = path.join("model.safetensors.index.json");
    if index.is_file() {
        return Ok((index, config));
    }
    let entries = std::fs::read_dir(path).map_err(|e| ModelError::io(path, e))?;
    let mut npz: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "npz"))
        .collect();
    npz.sort();
    match npz.len() {
        1 => Ok((npz.remove(0), config)),
        0 => {
            let pickle = ["pytorch_model.bin", "model.pth"].iter().any(|f| path.join(f).is_file());
            Err(ModelError::NoWeights { dir: path.to_path_buf(), pickle_only: pickle })
        }
        _ => Err(ModelError::Config {
            path: path.to_path_buf(),
            msg: format!("several .npz files, name one of them: {npz:?}"),
        }),
    }
}

fn read_json(path: &Path) -> Result<Value, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::Config {
        path: path.to_path_buf(),
        msg: format!("not valid JSON: {e}"),
    })
}

/// Largest safetensors header we accept; real headers are a few hundred KB.
const MAX_HEADER_BYTES: u64 = 100 << 20;

/// Reads every tensor of a safetensors file as `f32` on the CPU.
pub fn read_safetensors(path: &Path) -> Result<Params, ModelError> {
    let bad = |msg: String| ModelError::Safetensors { path: path.to_path_buf(), msg };
    let mut file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let len = file.metadata().map_err(|e| ModelError::io(path, e))?.len();
    let mut prefix = [0u8; 8];
    std::io::Read::read_exact(&mut file, &mut prefix)
        .map_err(|_| bad(format!("file of {len} bytes is too short for a header")))?;
    let header_len = u64::from_le_bytes(prefix);
    if header_len > MAX_HEADER_BYTES || header_len + 8 > len {
        return Err(bad(format!(
            "header claims {header_len} bytes (file: {len} bytes, limit {MAX_HEADER_BYTES})"
        )));
    }

    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    let tensors = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut params = Params::new();
    for (name, view) in tensors.tensors() {
        let tensor = Tensor::from_raw_buffer(
            view.data(),
            st_dtype(view.dtype(), &name, &bad)?,
            view.shape(),
            &Device::Cpu,
        )
        .map_err(|e| bad(format!("tensor {name}: {e}")))?;
        params.insert(name, tensor.to_dtype(DType::F32)?);
    }
    Ok(params)
}

/// Reads a sharded checkpoint: `model.safetensors.index.json` names the shard of each tensor.
fn read_sharded(index: &Path) -> Result<Params, ModelError> {
    let bad = |msg: String| ModelError::Safetensors { path: index.to_path_buf(), msg };
    let json = read_json(index)?;
    let map = json
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("no \"weight_map\" object".into()))?;
    let mut shards: Vec<&str> = map.values().filter_map(Value::as_str).collect();
    shards.sort_unstable();
    shards.dedup();

    let dir = index.parent().unwrap_or(Path::new("."));
    let mut params = Params::new();
    for shard in shards {
        if shard.contains('/') || shard.contains('\\') || shard.starts_with('.') {
            return Err(bad(format!("shard name {shard:?} leaves the model folder")));
        }
        params.extend(read_safetensors(&dir.join(shard))?);
    }
    for (name, shard) in map {
        if !params.contains_key(name) {
            return Err(bad(format!("tensor {name} is not in its shard {shard}")));
        }
    }
    Ok(params)
}

fn st_dtype(
    dtype: safetensors::Dtype,
    name: &str,
    bad: &dyn Fn(String) -> ModelError,
) -> Result<DType, ModelError> {
    use safetensors::Dtype as S;
    match dtype {
        S::F32 => Ok(DType::F32),
        S::F16 => Ok(DType::F16),
        S::BF16 => Ok(DType::BF16),
        S::F64 => Ok(DType::F64),
        other => Err(bad(format!("tensor {name} has dtype {other:?}, expected a float type"))),
    }
}

fn read_npz(path: &Path) -> Result<Params, ModelError> {
    let tensors = Tensor::read_npz(path).map_err(|e| ModelError::Safetensors {
        path: path.to_path_buf(),
        msg: format!("reading .npz: {e}"),
    })?;
    tensors.into_iter().map(|(k, t)| Ok((k, t.to_dtype(DType::F32)?))).collect()
}

/// transformers `BitForImageClassification` names → timm names.
fn rename_transformers(raw: Params, path: &Path) -> Result<Params, ModelError> {
    let mut out = Params::new();
    for (name, tensor) in raw {
        let timm = if name == "bit.embedder.convolution.weight" {
            "stem.conv.weight".to_string()
        } else if let Some(rest) = name.strip_prefix("bit.encoder.stages.") {
            format!("stages.{}", rest.replacen(".layers.", ".blocks.", 1))
        } else if let Some(rest) = name.strip_prefix("bit.norm.") {
            format!("norm.{rest}")
        } else if name == "classifier.1.weight" {
            let (classes, features) = tensor.dims2().map_err(|_| ModelError::Shape {
                path: path.to_path_buf(),
                tensor: name.clone(),
                expected: "[classes, features]".into(),
                found: format!("{:?}", tensor.dims()),
            })?;
            out.insert("head.fc.weight".into(), tensor.reshape((classes, features, 1, 1))?);
            continue;
        } else if name == "classifier.1.bias" {
            "head.fc.bias".to_string()
        } else {
            // Left under its own name so that the check lists it as unexpected.
            name
        };
        out.insert(timm, tensor);
    }
    Ok(out)
}

/// Google BiT `.npz` names (HWIO kernels) → timm names (OIHW).
fn rename_npz(raw: Params, path: &Path) -> Result<Params, ModelError> {
    let mut out = Params::new();
    for (name, tensor) in raw {
        let Some(timm) = npz_to_timm(&name) else {
            out.insert(name, tensor);
            continue;
        };
        let tensor = if name.ends_with("/kernel") {
            if tensor.rank() != 4 {
                return Err(ModelError::Shape {
                    path: path.to_path_buf(),
                    tensor: name,
                    expected: "a 4-D HWIO kernel".into(),
                    found: format!("{:?}", tensor.dims()),
                });
            }
            tensor.permute((3, 2, 0, 1))?.contiguous()?
        } else {
            // GroupNorm and bias vectors may be stored as [1, 1, 1, C].
            tensor.flatten_all()?
        };
        out.insert(timm, tensor);
    }
    Ok(out)
}

fn npz_to_timm(name: &str) -> Option<String> {
    let rest = name.strip_prefix("resnet/")?;
    let simple = match rest {
        "root_block/standardized_conv2d/kernel" => Some("stem.conv.weight"),
        "group_norm/gamma" => Some("norm.weight"),
        "group_norm/beta" => Some("norm.bias"),
        "head/conv2d/kernel" => Some("head.fc.weight"),
        "head/conv2d/bias" => Some("head.fc.bias"),
        _ => None,
    };
    if let Some(s) = simple {
        return Some(s.to_string());
    }

    // block{s}/unit{b}/{a,b,c}/...
    let mut parts = rest.splitn(4, '/');
    let stage: usize = parts.next()?.strip_prefix("block")?.parse().ok()?;
    let unit: usize = parts.next()?.strip_prefix("unit")?.parse().ok()?;
    let letter = parts.next()?;
    let tail = parts.next()?;
    let prefix = format!("stages.{}.blocks.{}", stage.checked_sub(1)?, unit.checked_sub(1)?);
    let n = match letter {
        "a" => 1,
        "b" => 2,
        "c" => 3,
        _ => return None,
    };
    match tail {
        "standardized_conv2d/kernel" => Some(format!("{prefix}.conv{n}.weight")),
        "group_norm/gamma" => Some(format!("{prefix}.norm{n}.weight")),
        "group_norm/beta" => Some(format!("{prefix}.norm{n}.bias")),
        "proj/standardized_conv2d/kernel" if n == 1 => {
            Some(format!("{prefix}.downsample.conv.weight"))
        }
        _ => None,
    }
}

/// Reads the architecture off timm-named tensors: blocks per stage, widths, stem, classes.
pub fn infer_config(params: &Params, path: &Path) -> Result<BitConfig, ModelError> {
    let shape = |name: &str| -> Result<Vec<usize>, ModelError> {
        params.get(name).map(|t| t.dims().to_vec()).ok_or_else(|| ModelError::Tensors {
            path: path.to_path_buf(),
            missing: vec![name.to_string()],
            unexpected: vec![],
            mismatched: vec![],
        })
    };
    let stem = shape("stem.conv.weight")?;
    let head = shape("head.fc.weight")?;
    if stem.len() != 4 || head.is_empty() {
        return Err(ModelError::Shape {
            path: path.to_path_buf(),
            tensor: "stem.conv.weight".into(),
            expected: "[out, in, k, k]".into(),
            found: format!("{stem:?}"),
        });
    }

    let mut layers = Vec::new();
    let mut channels = Vec::new();
    while params.contains_key(&format!("stages.{}.blocks.0.conv3.weight", layers.len())) {
        let s = layers.len();
        let depth = (0..)
            .take_while(|b| params.contains_key(&format!("stages.{s}.blocks.{b}.conv3.weight")))
            .count();
        channels.push(shape(&format!("stages.{s}.blocks.0.conv3.weight"))?[0]);
        layers.push(depth);
    }
    let mid = match params.get("stages.0.blocks.0.conv1.weight") {
        Some(t) => t.dims()[0],
        None => 0,
    };

    let mut cfg = BitConfig::bit(&layers, 1, head[0]);
    cfg.layers = layers;
    cfg.channels = channels;
    cfg.stem_width = stem[0];
    cfg.in_chans = stem[1];
    cfg.stem = if stem[2] == 7 { StemKind::Bit } else { StemKind::Small };
    if let Some(&c0) = cfg.channels.first() {
        // BiT's 1/4 unless stage 0 says otherwise (make_divisible may have rounded it up).
        if mid > 0 && mid != cfg.mid_channels(0) {
            cfg.bottle_ratio = mid as f64 / c0 as f64;
        }
    }
    Ok(cfg)
}

/// Applies what a timm or transformers `config.json` says on top of the inferred shape.
fn apply_config_json(
    json: &Value,
    path: &Path,
    cfg: &mut BitConfig,
    pre: &mut PretrainedCfg,
) -> Result<(), ModelError> {
    let bad = |msg: String| ModelError::Config { path: path.to_path_buf(), msg };

    if let Some(arch) = json.get("architecture").and_then(Value::as_str) {
        // timm: a registered name with optional model_args, or our own custom variants.
        if find_arch(arch).is_none()
            && !arch.starts_with("resnetv2_")
            && arch != "funmatch_resnetv2"
        {
            return Err(bad(format!("architecture {arch:?} is not a BiT ResNet-v2")));
        }
    }
    if let Some(block) = json.get("funmatch") {
        apply_funmatch_block(block, cfg).map_err(bad)?;
    }
    if json.get("model_type").and_then(Value::as_str) == Some("bit") {
        let layer_type = json.get("layer_type").and_then(Value::as_str).unwrap_or("preactivation");
        if layer_type != "preactivation" {
            return Err(bad(format!(
                "layer_type {layer_type:?} is not supported, expected \"preactivation\""
            )));
        }
        let same = match json.get("global_padding").and_then(Value::as_str) {
            None => false,
            Some(p) if p.eq_ignore_ascii_case("same") => true,
            Some(other) => {
                return Err(bad(format!(
                    "global_padding {other:?} is not supported, expected null or \"SAME\""
                )))
            }
        };
        cfg.padding = if same { Padding::Same } else { Padding::Symmetric };
        cfg.stem_pool_pad = if same { 0 } else { 1 };
        cfg.stem_pool_same =
            json.get("embedding_dynamic_padding").and_then(Value::as_bool).unwrap_or(false);
        if let Some(groups) = json.get("num_groups").and_then(Value::as_u64) {
            cfg.groups = groups as usize;
        }
    }

    if let Some(p) = json.get("pretrained_cfg") {
        if let Some(size) = p.get("input_size").and_then(Value::as_array) {
            let dims: Vec<usize> =
                size.iter().filter_map(Value::as_u64).map(|v| v as usize).collect();
            pre.input_size = dims.try_into().map_err(|d| {
                bad(format!("pretrained_cfg.input_size is {d:?}, expected [C, H, W]"))
            })?;
        }
        if let Some(interp) = p.get("interpolation").and_then(Value::as_str) {
            pre.interpolation = match interp {
                "bilinear" => Interpolation::Bilinear,
                "bicubic" => Interpolation::Bicubic,
                other => {
                    return Err(bad(format!(
                        "interpolation {other:?}, expected bilinear or bicubic"
                    )))
                }
            };
        }
        if let Some(c) = p.get("crop_pct").and_then(Value::as_f64) {
            pre.crop_pct = c;
        }
        for (key, dst) in [("mean", &mut pre.mean), ("std", &mut pre.std)] {
            if let Some(v) = p.get(key).and_then(Value::as_array) {
                let vals: Vec<f32> = v.iter().filter_map(Value::as_f64).map(|x| x as f32).collect();
                *dst = vals.try_into().map_err(|v| {
                    bad(format!("pretrained_cfg.{key} is {v:?}, expected 3 numbers"))
                })?;
            }
        }
    }
    Ok(())
}

/// transformers' `preprocessor_config.json` (BitImageProcessor): resize the short side,
/// centre-crop, normalise.
fn apply_preprocessor_config(
    json: &Value,
    path: &Path,
    pre: &mut PretrainedCfg,
) -> Result<(), ModelError> {
    let bad = |msg: String| ModelError::Config { path: path.to_path_buf(), msg };
    let crop_h = json.pointer("/crop_size/height").and_then(Value::as_u64);
    let crop_w = json.pointer("/crop_size/width").and_then(Value::as_u64);
    let short = json.pointer("/size/shortest_edge").and_then(Value::as_u64);
    if let (Some(h), Some(w)) = (crop_h, crop_w) {
        pre.input_size = [pre.input_size[0], h as usize, w as usize];
        let cropping = json.get("do_center_crop").and_then(Value::as_bool).unwrap_or(true);
        pre.crop_pct = match short {
            Some(s) if cropping && s > 0 => h.min(w) as f64 / s as f64,
            _ => 1.0,
        };
    } else if let Some(s) = short {
        pre.input_size = [pre.input_size[0], s as usize, s as usize];
        pre.crop_pct = 1.0;
    }
    // PIL's resampling codes.
    match json.get("resample").and_then(Value::as_u64) {
        None => {}
        Some(2) => pre.interpolation = Interpolation::Bilinear,
        Some(3) => pre.interpolation = Interpolation::Bicubic,
        Some(other) => {
            return Err(bad(format!(
                "resample {other} is not supported, expected 2 (bilinear) or 3 (bicubic)"
            )))
        }
    }
    for (key, dst) in [("image_mean", &mut pre.mean), ("image_std", &mut pre.std)] {
        if let Some(v) = json.get(key).and_then(Value::as_array) {
            let vals: Vec<f32> = v.iter().filter_map(Value::as_f64).map(|x| x as f32).collect();
            *dst =
                vals.try_into().map_err(|v| bad(format!("{key} is {v:?}, expected 3 numbers")))?;
        }
    }
    Ok(())
}

/// Our own `funmatch` block: the structure settings timm's fields cannot carry.
fn apply_funmatch_block(block: &Value, cfg: &mut BitConfig) -> Result<(), String> {
    let text = |key: &str| block.get(key).and_then(Value::as_str);
    if let Some(stem) = text("stem") {
        cfg.stem = match stem {
            "bit" => StemKind::Bit,
            "small" => StemKind::Small,
            other => {
                return Err(format!("funmatch.stem is {other:?}, expected \"bit\" or \"small\""))
            }
        };
    }
    if let Some(padding) = text("padding") {
        cfg.padding = match padding {
            "symmetric" => Padding::Symmetric,
            "same" => Padding::Same,
            other => {
                return Err(format!(
                    "funmatch.padding is {other:?}, expected \"symmetric\" or \"same\""
                ))
            }
        };
    }
    if let Some(v) = block.get("stem_pool_pad").and_then(Value::as_u64) {
        cfg.stem_pool_pad = v as usize;
    }
    if let Some(v) = block.get("stem_pool_same").and_then(Value::as_bool) {
        cfg.stem_pool_same = v;
    }
    if let Some(v) = block.get("groups").and_then(Value::as_u64) {
        cfg.groups = v as usize;
    }
    if let Some(v) = block.get("bottle_ratio").and_then(Value::as_f64) {
        cfg.bottle_ratio = v;
    }
    if let Some(v) = block.get("gn_eps").and_then(Value::as_f64) {
        cfg.gn_eps = v;
    }
    if let Some(v) = block.get("ws_eps").and_then(Value::as_f64) {
        cfg.ws_eps = v;
    }
    Ok(())
}

/// Class names from timm's `label_names` or transformers' `id2label`.
fn label_names(json: &Value) -> Option<Vec<String>> {
    if let Some(names) = json.get("label_names").and_then(Value::as_array) {
        return names.iter().map(|v| v.as_str().map(String::from)).collect();
    }
    let map = json.get("id2label")?.as_object()?;
    let mut pairs: Vec<(usize, String)> =
        map.iter().filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?.to_string()))).collect();
    pairs.sort();
    let contiguous = pairs.iter().enumerate().all(|(i, (k, _))| i == *k);
    contiguous.then(|| pairs.into_iter().map(|(_, v)| v).collect())
}

/// Checks `params` against the architecture; reports every missing, unexpected and
/// mis-shaped tensor at once.
pub fn check_params(
    cfg: &BitConfig,
    mut params: Params,
    path: &Path,
) -> Result<Params, ModelError> {
    let mut checked = Params::new();
    let mut missing = Vec::new();
    let mut mismatched = Vec::new();
    for spec in param_specs(cfg) {
        match params.remove(&spec.name) {
            None => missing.push(spec.name),
            Some(t) if t.dims() != spec.shape.as_slice() => mismatched.push(Mismatch {
                tensor: spec.name,
                expected: spec.shape,
                found: t.dims().to_vec(),
            }),
            Some(t) => {
                checked.insert(spec.name, t);
            }
        }
    }
    let unexpected: Vec<String> = params.into_keys().collect();
    if missing.is_empty() && unexpected.is_empty() && mismatched.is_empty() {
        Ok(checked)
    } else {
        Err(ModelError::Tensors { path: path.to_path_buf(), missing, unexpected, mismatched })
    }
}

/// Shapes of every tensor, for messages and tests.
pub fn shapes(params: &Params) -> BTreeMap<String, Vec<usize>> {
    params.iter().map(|(k, t)| (k.clone(), t.dims().to_vec())).collect()
}
