//! Checkpoints: one safetensors file holding the weights, the optimizer moments and, in its
//! metadata, the step and data position.
//!
//! Writing is atomic: the file is written under a temporary name, flushed to disk, and
//! renamed over the previous checkpoint. Until the rename the previous checkpoint is
//! complete and untouched, so a crash or a full disk at any moment leaves one valid file.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::DistillError;

/// The checkpoint file name inside a run folder.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";

/// Metadata key holding [`CheckpointMeta`] as JSON.
const META_KEY: &str = "funmatch.checkpoint";

/// Where a run stands, saved with the tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Updates done; training resumes with the batch of this (0-based) global step, since
    /// every batch is a pure function of (seed, step).
    pub step: usize,
    /// Epoch of the next batch.
    pub epoch: usize,
    /// Total steps of the run (the schedule depends on it).
    pub total_steps: usize,
    /// Training examples seen.
    pub examples_seen: u64,
    /// Seconds of training before this checkpoint (for throughput over resumes).
    pub elapsed_s: f64,
}

/// A checkpoint read back.
#[derive(Debug)]
pub struct Checkpoint {
    /// Where the run stood.
    pub meta: CheckpointMeta,
    /// Model parameters by timm name.
    pub params: BTreeMap<String, Tensor>,
    /// Optimizer state (`adam.m.NAME`, `adam.v.NAME`).
    pub optimizer: BTreeMap<String, Tensor>,
}

/// Writes checkpoints of one run folder, remembering the step of the last good one.
#[derive(Debug)]
pub struct CheckpointWriter {
    path: PathBuf,
    last_good: Option<usize>,
}

impl CheckpointWriter {
    /// A writer for `dir/checkpoint.safetensors`; `last_good` is the step of a checkpoint
    /// already there (when resuming).
    pub fn new(dir: &Path, last_good: Option<usize>) -> Self {
        Self { path: dir.join(CHECKPOINT_FILE), last_good }
    }

    /// The checkpoint file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Step of the last checkpoint written completely, if any.
    pub fn last_good(&self) -> Option<usize> {
        self.last_good
    }

    /// Writes a checkpoint atomically. On failure the previous checkpoint is untouched, the
    /// temporary file is removed, and the error says both.
    pub fn write(
        &mut self,
        meta: &CheckpointMeta,
        params: &[(String, Tensor)],
        optimizer: &[(String, Tensor)],
    ) -> Result<(), DistillError> {
        let fail = |message: String| DistillError::CheckpointWrite {
            step: meta.step,
            path: self.path.clone(),
            message,
            previous: self.last_good,
        };

        let mut tensors: Vec<(String, Tensor)> = Vec::with_capacity(params.len() + optimizer.len());
        for (name, t) in params {
            tensors.push((format!("param.{name}"), t.to_device(&Device::Cpu)?));
        }
        for (name, t) in optimizer {
            tensors.push((name.clone(), t.to_device(&Device::Cpu)?));
        }
        let json = serde_json::to_string(meta).expect("checkpoint metadata serialises");
        let info = HashMap::from([(META_KEY.to_string(), json)]);
        let bytes =
            safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(info))
                .map_err(|e| fail(format!("serialising: {e}")))?;

        let tmp = self.path.with_extension("safetensors.tmp");
        if let Err(e) = write_synced(&tmp, &bytes) {
            // A directory here (or any other leftover) is not ours to remove.
            if tmp.is_file() {
                let _ = std::fs::remove_file(&tmp);
            }
            return Err(fail(format!("writing {}: {e}", tmp.display())));
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            fail(format!("renaming {} into place: {e}", tmp.display()))
        })?;
        // Make the rename itself durable.
        if let Some(dir) = self.path.parent() {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        self.last_good = Some(meta.step);
        tracing::debug!(step = meta.step, path = %self.path.display(), "checkpoint written");
        Ok(())
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Reads a checkpoint onto `device`.
pub fn read_checkpoint(path: &Path, device: &Device) -> Result<Checkpoint, DistillError> {
    let bad = |message: String| DistillError::Checkpoint { path: path.to_path_buf(), message };
    let bytes = std::fs::read(path).map_err(|e| DistillError::io(path, e))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let json = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(META_KEY))
        .ok_or_else(|| bad(format!("no {META_KEY} metadata: not a funmatch checkpoint")))?;
    let meta: CheckpointMeta =
        serde_json::from_str(json).map_err(|e| bad(format!("bad {META_KEY} metadata: {e}")))?;

    let mut params = BTreeMap::new();
    let mut optimizer = BTreeMap::new();
    for (name, tensor) in candle_core::safetensors::load_buffer(&bytes, device)? {
        match name.strip_prefix("param.") {
            Some(param) => params.insert(param.to_string(), tensor),
            None => optimizer.insert(name, tensor),
        };
    }
    Ok(Checkpoint { meta, params, optimizer })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(step: usize) -> CheckpointMeta {
        CheckpointMeta { step, epoch: 0, total_steps: 10, examples_seen: 0, elapsed_s: 0.0 }
    }

    fn tensor(v: f32) -> Vec<(String, Tensor)> {
        vec![("w".into(), Tensor::new(&[v, v], &Device::Cpu).unwrap())]
    }

    #[test]
    fn checkpoints_round_trip_with_their_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = CheckpointWriter::new(dir.path(), None);
        let opt = vec![("adam.m.w".to_string(), Tensor::new(&[0.5f32], &Device::Cpu).unwrap())];
        writer.write(&meta(7), &tensor(1.5), &opt).unwrap();
        let back = read_checkpoint(writer.path(), &Device::Cpu).unwrap();
        assert_eq!(back.meta, meta(7));
        assert_eq!(back.params["w"].to_vec1::<f32>().unwrap(), vec![1.5, 1.5]);
        assert_eq!(back.optimizer["adam.m.w"].to_vec1::<f32>().unwrap(), vec![0.5]);
    }

    #[test]
    fn failed_checkpoint_write_leaves_the_previous_one_intact_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = CheckpointWriter::new(dir.path(), None);
        writer.write(&meta(4), &tensor(1.0), &[]).unwrap();

        // Something in the way of the temporary file makes the next write fail, as a full
        // disk would.
        let blocker = dir.path().join("checkpoint.safetensors.tmp");
        std::fs::create_dir(&blocker).unwrap();
        let err = writer.write(&meta(8), &tensor(2.0), &[]).unwrap_err().to_string();
        assert!(
            err.contains("step 8") && err.contains("intact") && err.contains("(step 4)"),
            "{err}"
        );

        let back = read_checkpoint(writer.path(), &Device::Cpu).unwrap();
        assert_eq!(back.meta.step, 4, "the previous checkpoint was replaced");
        assert_eq!(back.params["w"].to_vec1::<f32>().unwrap(), vec![1.0, 1.0]);
        assert_eq!(writer.last_good(), Some(4));
    }
}
