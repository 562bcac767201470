//! The model zoo: named teachers and students (`models/*.toml`, embedded at build time).

use anyhow::Context;
use serde::Deserialize;
use std::path::PathBuf;

include!(concat!(env!("OUT_DIR"), "/zoo_files.rs"));

/// One zoo entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZooEntry {
    pub name: String,
    /// `teacher` or `student`.
    pub role: String,
    /// Hub id (`owner/name`), when the model lives on the Hub.
    pub hub: Option<String>,
    /// A model folder shipped in the repository under `models/`.
    pub folder: Option<String>,
    pub architecture: String,
    pub license: String,
    pub input_size: Option<[usize; 3]>,
    pub crop_pct: Option<f64>,
    pub interpolation: Option<String>,
    /// How the model was made.
    pub recipe: String,
    /// Reference top-1 accuracies by eval set.
    #[serde(default)]
    pub results: std::collections::BTreeMap<String, f64>,
}

impl ZooEntry {
    /// Where the model's files are: a Hub id, or a folder in the repository's `models/`.
    pub fn source(&self) -> anyhow::Result<String> {
        if let Some(folder) = &self.folder {
            let dir = zoo_dir().join(folder);
            return Ok(dir.display().to_string());
        }
        self.hub
            .clone()
            .with_context(|| format!("zoo entry {} has neither hub nor folder", self.name))
    }
}

/// The folder holding shipped model folders: `FUNMATCH_ZOO_DIR`, else the repository's
/// `models/` this binary was built from.
fn zoo_dir() -> PathBuf {
    std::env::var_os("FUNMATCH_ZOO_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"))
}

/// Every zoo entry, sorted by name.
pub fn entries() -> anyhow::Result<Vec<ZooEntry>> {
    let mut out = ZOO_FILES
        .iter()
        .map(|(file, text)| {
            toml::from_str::<ZooEntry>(text).with_context(|| format!("models/{file}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The entry called `name`, if any.
pub fn find(name: &str) -> anyhow::Result<Option<ZooEntry>> {
    Ok(entries()?.into_iter().find(|e| e.name == name))
}
