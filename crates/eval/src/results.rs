//! Result rows and their tables: timm's CSV columns, JSON, markdown, the screen table, and a
//! results folder that accumulates rows across runs.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::EvalError;

/// timm's results-table columns, in timm's order (`results-imagenet.csv` and friends).
pub const TIMM_COLUMNS: [&str; 9] = [
    "model",
    "img_size",
    "top1",
    "top1_err",
    "top5",
    "top5_err",
    "param_count",
    "crop_pct",
    "interpolation",
];

/// Our columns, after timm's, in the full CSV.
pub const EXTRA_COLUMNS: [&str; 14] = [
    "set",
    "gmacs",
    "images",
    "excluded",
    "failed",
    "loss",
    "images_per_s",
    "teacher",
    "kl",
    "agree_top1",
    "agree_top5",
    "seconds",
    "evaluated_at",
    "model_path",
];

/// One model on one set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResultRow {
    /// The model as named on the command line.
    pub model: String,
    /// Input size (height) in pixels.
    pub img_size: u32,
    /// Top-1 accuracy, percent.
    pub top1: f64,
    /// 100 − top-1.
    pub top1_err: f64,
    /// Top-5 accuracy, percent.
    pub top5: f64,
    /// 100 − top-5.
    pub top5_err: f64,
    /// Parameters in millions (timm's unit).
    pub param_count: f64,
    /// Eval crop share.
    pub crop_pct: f64,
    /// `bicubic` or `bilinear`.
    pub interpolation: String,
    /// The set.
    pub set: String,
    /// Multiply–accumulates of one forward pass at `img_size`, in billions (convolutions and
    /// classifier; `0` in rows written before this column existed).
    #[serde(default)]
    pub gmacs: f64,
    /// Images scored.
    pub images: usize,
    /// Images left out (empty ReaL lists).
    pub excluded: usize,
    /// Images that could not be read.
    pub failed: usize,
    /// Mean cross-entropy.
    pub loss: f64,
    /// Throughput, decoding included.
    pub images_per_s: f64,
    /// The teacher the agreement columns refer to.
    pub teacher: Option<String>,
    /// Mean KL(teacher ‖ model).
    pub kl: Option<f64>,
    /// Top-1 agreement with the teacher, percent.
    pub agree_top1: Option<f64>,
    /// Top-5 agreement with the teacher, percent.
    pub agree_top5: Option<f64>,
    /// Wall time in seconds.
    pub seconds: f64,
    /// When the row was made (UTC, RFC 3339).
    pub evaluated_at: String,
    /// Where the model was loaded from.
    pub model_path: String,
}

impl ResultRow {
    fn timm_values(&self) -> [String; 9] {
        [
            self.model.clone(),
            self.img_size.to_string(),
            format!("{:.3}", self.top1),
            format!("{:.3}", self.top1_err),
            format!("{:.3}", self.top5),
            format!("{:.3}", self.top5_err),
            format!("{:.2}", self.param_count),
            format!("{:.3}", self.crop_pct),
            self.interpolation.clone(),
        ]
    }

    fn extra_values(&self) -> [String; 14] {
        let opt = |v: Option<f64>, d: usize| v.map(|v| format!("{v:.d$}")).unwrap_or_default();
        [
            self.set.clone(),
            format!("{:.4}", self.gmacs),
            self.images.to_string(),
            self.excluded.to_string(),
            self.failed.to_string(),
            format!("{:.4}", self.loss),
            format!("{:.1}", self.images_per_s),
            self.teacher.clone().unwrap_or_default(),
            opt(self.kl, 4),
            opt(self.agree_top1, 3),
            opt(self.agree_top5, 3),
            format!("{:.1}", self.seconds),
            self.evaluated_at.clone(),
            self.model_path.clone(),
        ]
    }
}

/// Rounds to `digits` decimals, as timm rounds its table values.
pub fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

fn csv_line(values: &[String]) -> String {
    values.iter().map(|v| csv_field(v)).collect::<Vec<_>>().join(",") + "\n"
}

/// CSV with exactly timm's columns (one set per file, as timm's `results-<set>.csv`).
pub fn timm_csv(rows: &[ResultRow]) -> String {
    let header: Vec<String> = TIMM_COLUMNS.iter().map(|s| s.to_string()).collect();
    let mut out = csv_line(&header);
    for row in rows {
        out.push_str(&csv_line(&row.timm_values()));
    }
    out
}

/// CSV with timm's columns first, then ours ([`EXTRA_COLUMNS`]).
pub fn full_csv(rows: &[ResultRow]) -> String {
    let header: Vec<String> =
        TIMM_COLUMNS.iter().chain(EXTRA_COLUMNS.iter()).map(|s| s.to_string()).collect();
    let mut out = csv_line(&header);
    for row in rows {
        let mut values = row.timm_values().to_vec();
        values.extend(row.extra_values());
        out.push_str(&csv_line(&values));
    }
    out
}

/// The rows as a pretty JSON array.
pub fn json(rows: &[ResultRow]) -> String {
    serde_json::to_string_pretty(rows).expect("rows serialise") + "\n"
}

/// The sets in first-seen order, and the models in first-seen order.
fn axes(rows: &[ResultRow]) -> (Vec<String>, Vec<String>) {
    let mut sets: Vec<String> = Vec::new();
    let mut models: Vec<String> = Vec::new();
    for row in rows {
        if !sets.contains(&row.set) {
            sets.push(row.set.clone());
        }
        if !models.contains(&row.model) {
            models.push(row.model.clone());
        }
    }
    (sets, models)
}

/// Rows by (model, set).
type Cells<'a> = BTreeMap<(String, String), &'a ResultRow>;

fn pivot(rows: &[ResultRow]) -> (Vec<String>, Vec<String>, Cells<'_>) {
    let (sets, models) = axes(rows);
    // Later rows win: in a results folder they are the newer evaluations.
    let cells = rows.iter().map(|r| ((r.model.clone(), r.set.clone()), r)).collect();
    (sets, models, cells)
}

/// Markdown: a models × sets table of top-1 (top-5), then every row in detail.
pub fn markdown(rows: &[ResultRow]) -> String {
    let (sets, models, cells) = pivot(rows);
    let mut out = String::from("| model | params (M) | GMACs |");
    for set in &sets {
        out.push_str(&format!(" {set} |"));
    }
    out.push_str("\n|---|---:|---:|");
    out.push_str(&"---:|".repeat(sets.len()));
    out.push('\n');
    for model in &models {
        let row = rows.iter().find(|r| &r.model == model);
        let (params, gmacs) = row.map_or((0.0, 0.0), |r| (r.param_count, r.gmacs));
        out.push_str(&format!("| {model} | {params:.2} | {gmacs:.4} |"));
        for set in &sets {
            match cells.get(&(model.clone(), set.clone())) {
                Some(r) => out.push_str(&format!(" {:.2} ({:.2}) |", r.top1, r.top5)),
                None => out.push_str(" – |"),
            }
        }
        out.push('\n');
    }
    out.push_str("\nTop-1 (top-5) accuracy in percent.\n\n");

    out.push_str("| model | set | img_size | crop_pct | top1 | top5 | loss | images | failed | images/s | KL to teacher | agree top1 | agree top5 |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let opt = |v: Option<f64>, d: usize| v.map_or("–".to_string(), |v| format!("{v:.d$}"));
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.4} | {} | {} | {:.1} | {} | {} | {} |\n",
            r.model,
            r.set,
            r.img_size,
            r.crop_pct,
            r.top1,
            r.top5,
            r.loss,
            r.images,
            r.failed,
            r.images_per_s,
            opt(r.kl, 4),
            opt(r.agree_top1, 2),
            opt(r.agree_top5, 2),
        ));
    }
    out
}

/// The screen table: one line per model, one column per set, top-1 (top-5) in each cell.
pub fn screen_table(rows: &[ResultRow]) -> String {
    let (sets, models, cells) = pivot(rows);
    let cell = |model: &String, set: &String| match cells.get(&(model.clone(), set.clone())) {
        Some(r) => format!("{:.2} ({:.2})", r.top1, r.top5),
        None => "–".to_string(),
    };
    let model_width = models.iter().map(|m| m.chars().count()).max().unwrap_or(5).max(5);
    let widths: Vec<usize> = sets
        .iter()
        .map(|s| {
            models.iter().map(|m| cell(m, s).chars().count()).chain([s.len()]).max().unwrap_or(0)
        })
        .collect();

    let mut out = format!("{:<model_width$}", "model");
    for (set, w) in sets.iter().zip(&widths) {
        out.push_str(&format!("  {set:>w$}"));
    }
    out.push('\n');
    for model in &models {
        out.push_str(&format!("{model:<model_width$}"));
        for (set, w) in sets.iter().zip(&widths) {
            out.push_str(&format!("  {:>w$}", cell(model, set)));
        }
        out.push('\n');
    }
    let with_teacher: Vec<&ResultRow> = rows.iter().filter(|r| r.agree_top1.is_some()).collect();
    if !with_teacher.is_empty() {
        out.push_str("\nagreement with the teacher (KL, top-1 %, top-5 %):\n");
        for r in with_teacher {
            out.push_str(&format!(
                "  {} on {}: KL {:.4}, {:.2} %, {:.2} %\n",
                r.model,
                r.set,
                r.kl.unwrap_or(0.0),
                r.agree_top1.unwrap_or(0.0),
                r.agree_top5.unwrap_or(0.0)
            ));
        }
    }
    out
}

/// Writes `text` to `path` through a temporary file, so a failure never leaves half a file.
pub fn write_file(path: &Path, text: &str) -> Result<(), EvalError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| EvalError::io(dir, e))?;
    }
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).map_err(|e| EvalError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| EvalError::io(path, e))
}

/// A folder that accumulates rows across runs.
///
/// `rows.jsonl` holds every row ever added, one JSON object per line, appended; after each
/// addition the summaries are rewritten from the newest row of each (model, set):
/// `results.csv` (timm's columns then ours), `results.json`, `results.md`, and one
/// `results-<set>.csv` per set with exactly timm's columns, best top-1 first.
pub struct ResultsDir {
    dir: PathBuf,
}

impl ResultsDir {
    /// The folder (created on the first [`ResultsDir::append`]).
    pub fn new(dir: &Path) -> ResultsDir {
        ResultsDir { dir: dir.to_path_buf() }
    }

    /// The log of every row.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("rows.jsonl")
    }

    /// Appends `rows` and rewrites the summaries.
    pub fn append(&self, rows: &[ResultRow]) -> Result<(), EvalError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| EvalError::io(&self.dir, e))?;
        let path = self.log_path();
        let mut text = String::new();
        for row in rows {
            text.push_str(&serde_json::to_string(row).expect("rows serialise"));
            text.push('\n');
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| EvalError::io(&path, e))?;
        file.write_all(text.as_bytes()).map_err(|e| EvalError::io(&path, e))?;
        drop(file);
        self.write_summaries()
    }

    /// Every row in the log, oldest first.
    pub fn load_all(&self) -> Result<Vec<ResultRow>, EvalError> {
        let path = self.log_path();
        let text = std::fs::read_to_string(&path).map_err(|e| EvalError::io(&path, e))?;
        let mut rows = Vec::new();
        for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let row = serde_json::from_str(line).map_err(|e| EvalError::Results {
                path: path.clone(),
                message: format!("line {}: {e}", number + 1),
            })?;
            rows.push(row);
        }
        Ok(rows)
    }

    /// The newest row of each (model, set), in first-seen order of models and sets.
    pub fn latest(&self) -> Result<Vec<ResultRow>, EvalError> {
        Ok(latest_per_pair(self.load_all()?))
    }

    fn write_summaries(&self) -> Result<(), EvalError> {
        let rows = self.latest()?;
        write_file(&self.dir.join("results.csv"), &full_csv(&rows))?;
        write_file(&self.dir.join("results.json"), &json(&rows))?;
        write_file(&self.dir.join("results.md"), &markdown(&rows))?;
        let (sets, _) = axes(&rows);
        for set in sets {
            let mut of_set: Vec<ResultRow> =
                rows.iter().filter(|r| r.set == set).cloned().collect();
            of_set.sort_by(|a, b| b.top1.total_cmp(&a.top1));
            let file = format!("results-{}.csv", set.replace(['/', '\\'], "_"));
            write_file(&self.dir.join(file), &timm_csv(&of_set))?;
        }
        Ok(())
    }
}

/// Keeps the last row of each (model, set), ordered by the first appearance of the model,
/// then of the set.
pub fn latest_per_pair(rows: Vec<ResultRow>) -> Vec<ResultRow> {
    let (sets, models) = axes(&rows);
    let mut last: BTreeMap<(String, String), ResultRow> = BTreeMap::new();
    for row in rows {
        last.insert((row.model.clone(), row.set.clone()), row);
    }
    let mut out = Vec::new();
    for model in &models {
        for set in &sets {
            if let Some(row) = last.remove(&(model.clone(), set.clone())) {
                out.push(row);
            }
        }
    }
    out
}

/// The current time as RFC 3339 UTC (`2026-12-03T14:05:09Z`).
pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift to a calendar starting on 1 March 0000, so that leap days end each 4/100/400
    // year cycle; 719 468 days separate that origin from the Unix epoch.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let d = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = year_of_era + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_match_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_790), (2026, 12, 3));
    }

    #[test]
    fn csv_quotes_fields_with_commas() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("x\"y,"), "\"x\"\"y,\"");
    }
}
