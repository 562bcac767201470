//! The MODEL argument shared by every command: a local folder or weights file, a zoo name,
//! or a Hub id (`owner/name[@revision]`), fetched on demand.

use anyhow::{bail, Context};
use candle_core::Device;
use funmatch_models::{load_model, LoadedModel};
use std::path::{Path, PathBuf};

use crate::zoo;

/// Turns a MODEL argument into a local path; a local path wins over a zoo name, and a zoo
/// name over a Hub id.
pub fn resolve(spec: &str) -> anyhow::Result<PathBuf> {
    let path = Path::new(spec);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    if let Some(entry) = zoo::find(spec)? {
        let source = entry.source()?;
        tracing::debug!(model = spec, source, "zoo entry");
        return resolve(&source).with_context(|| format!("zoo model {spec}"));
    }
    if funmatch_hub::looks_like_hub_id(spec) {
        let opts = funmatch_hub::HubOptions::from_env();
        let dir = funmatch_hub::resolve_model(spec, &opts)?;
        tracing::debug!(model = spec, dir = %dir.display(), "fetched from the Hub");
        return Ok(dir);
    }
    bail!(
        "{spec}: not a file or folder, not a zoo name (see `funmatch models`), and not a Hub id \
         (owner/name[@revision])"
    )
}

/// Resolves and loads a MODEL argument.
pub fn load(spec: &str, device: &Device) -> anyhow::Result<LoadedModel> {
    let path = resolve(spec)?;
    Ok(load_model(&path, device)?)
}

/// Parses `--device cpu|cuda[:N]`.
pub fn device(spec: &str) -> anyhow::Result<Device> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = match s.strip_prefix("cuda:") {
                Some(n) => n.parse().with_context(|| format!("device {s:?}: bad GPU index"))?,
                None => 0,
            };
            Device::new_cuda(ordinal).with_context(|| {
                format!("device {s}: CUDA is unavailable (build with `--features cuda`)")
            })
        }
        other => bail!("device {other:?}: expected cpu, cuda or cuda:N"),
    }
}
