//! Metrics as JSON lines (`metrics.jsonl`), one object per record, named scalars only.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::DistillError;

/// Results of one held-out evaluation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    /// Examples evaluated.
    pub examples: usize,
    /// Student top-1 accuracy.
    pub student_top1: f64,
    /// Teacher top-1 accuracy (distillation; computed once, repeated for convenience).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teacher_top1: Option<f64>,
    /// Share of examples where student and teacher agree on the top-1 class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agreement: Option<f64>,
    /// Mean KL(teacher ‖ student) at temperature 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kl: Option<f64>,
    /// Mean cross-entropy against the labels.
    pub ce: f64,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    /// Training progress over the steps since the previous record.
    Train {
        /// Updates done.
        step: usize,
        /// Epochs done (fractional).
        epoch: f64,
        /// Mean training loss over the window.
        loss: f64,
        /// Learning rate of the last update.
        lr: f64,
        /// Global gradient norm of the last update, before clipping.
        grad_norm: f64,
        /// Training images per second over the window.
        images_per_s: f64,
    },
    /// A held-out evaluation.
    Eval {
        /// Updates done.
        step: usize,
        /// Epochs done (fractional).
        epoch: f64,
        /// The results.
        #[serde(flatten)]
        result: EvalResult,
    },
}

impl Record {
    /// The step of the record.
    pub fn step(&self) -> usize {
        match self {
            Record::Train { step, .. } | Record::Eval { step, .. } => *step,
        }
    }
}

/// Appends records to `metrics.jsonl`.
pub struct MetricsLog {
    path: PathBuf,
    file: File,
    records: Vec<Record>,
}

impl MetricsLog {
    /// Opens `dir/metrics.jsonl`, keeping only records up to `keep_until` (the resumed
    /// checkpoint's step; records a killed run wrote after it are dropped, as they will be
    /// written again). `None` starts an empty log.
    pub fn open(dir: &Path, keep_until: Option<usize>) -> Result<MetricsLog, DistillError> {
        let path = dir.join("metrics.jsonl");
        let mut records = Vec::new();
        if let Some(until) = keep_until {
            if let Ok(file) = File::open(&path) {
                for line in BufReader::new(file).lines() {
                    let line = line.map_err(|e| DistillError::io(&path, e))?;
                    // A line cut short by a kill is skipped.
                    if let Ok(r) = serde_json::from_str::<Record>(&line) {
                        if r.step() <= until {
                            records.push(r);
                        }
                    }
                }
            }
        }
        let mut file = File::create(&path).map_err(|e| DistillError::io(&path, e))?;
        for r in &records {
            writeln!(file, "{}", serde_json::to_string(r).expect("records serialise"))
                .map_err(|e| DistillError::io(&path, e))?;
        }
        let file =
            OpenOptions::new().append(true).open(&path).map_err(|e| DistillError::io(&path, e))?;
        Ok(MetricsLog { path, file, records })
    }

    /// Appends one record (written through at once, so a kill loses nothing).
    pub fn push(&mut self, record: Record) -> Result<(), DistillError> {
        let line = serde_json::to_string(&record).expect("records serialise");
        writeln!(self.file, "{line}").map_err(|e| DistillError::io(&self.path, e))?;
        self.records.push(record);
        Ok(())
    }

    /// Every record so far.
    pub fn records(&self) -> &[Record] {
        &self.records
    }
}
