//! The run configuration: every option with its documented default, loadable from a TOML
//! recipe, overridable key by key (`optim.lr=0.01`), and written back into the run folder.
//!
//! Layers, later ones winning: the defaults below, the recipe file, a named size of the
//! recipe (`[size.smoke]`), then command-line overrides.

use std::path::Path;

use funmatch_models::StemKind;
use serde::{Deserialize, Serialize};

use crate::error::DistillError;

/// What a run trains and how. Every field has a default, so a recipe names only what it
/// changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Seed of every random decision: initialisation, data order, crops, flips, mixup and
    /// the held-out split. Default 0.
    pub seed: u64,
    /// `cpu`, `cuda` or `cuda:N`. Default `cpu`.
    pub device: String,
    /// Training and held-out data.
    pub data: DataConfig,
    /// The model being trained (the student when distilling).
    pub student: StudentConfig,
    /// The teachers (distillation only).
    pub teacher: TeacherConfig,
    /// Loss and augmentation variant.
    pub loss: LossConfig,
    /// Optimizer and schedule.
    pub optim: OptimConfig,
    /// Logging, evaluation and checkpoint cadence.
    pub run: RunSettings,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            device: "cpu".into(),
            data: DataConfig::default(),
            student: StudentConfig::default(),
            teacher: TeacherConfig::default(),
            loss: LossConfig::default(),
            optim: OptimConfig::default(),
            run: RunSettings::default(),
        }
    }
}

/// Where the examples come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Training set: `fashion-mnist` (train half, from Debian's folder),
    /// `fashion-mnist:test`, `fashion-mnist:train:DIR`, or a folder of class folders.
    /// Default `fashion-mnist`.
    pub train: String,
    /// Held-out set: `split` (a stratified share of `train`, see `held_out`), `none`, or a
    /// dataset as in `train`. Default `split`.
    pub eval: String,
    /// Share of `train` held out when `eval = "split"`. Default 0.1.
    pub held_out: f64,
    /// Use only about this many training examples (a stratified subset); 0 = all.
    /// Default 0.
    pub limit: usize,
    /// Evaluate on at most about this many held-out examples; 0 = all. Default 0.
    pub eval_limit: usize,
    /// Decode threads; 0 = one per core (`RAYON_NUM_THREADS`). Default 0.
    pub workers: usize,
    /// Batches prepared ahead of the training step. Default 2.
    pub prefetch: usize,
    /// Area share range `[lo, hi]` of the training crops (inception crop, the paper's
    /// augmentation). Default `[0.05, 1.0]`; small images such as Fashion-MNIST's 28 px
    /// train better with a milder `[0.35, 1.0]`.
    pub crop_area: [f64; 2],
}

impl DataConfig {
    /// The evaluation set as the user named it: `eval`, or "held-out" for a split of `train`.
    pub fn eval_name(&self) -> &str {
        if self.eval == "split" {
            "held-out"
        } else {
            &self.eval
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            train: "fashion-mnist".into(),
            eval: "split".into(),
            held_out: 0.1,
            limit: 0,
            eval_limit: 0,
            workers: 0,
            prefetch: 2,
            crop_area: [0.05, 1.0],
        }
    }
}

/// The model being trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StudentConfig {
    /// `custom` (the fields below), a registered architecture (`resnetv2_50x1_bit`, from
    /// scratch), or a model folder / weights file / Hub id to start from. Default `custom`.
    pub arch: String,
    /// Blocks per stage (`custom` only). Default `[1, 1, 1]`.
    pub layers: Vec<usize>,
    /// Output channels per stage (`custom` only). Default `[64, 128, 256]`.
    pub channels: Vec<usize>,
    /// Stem output channels (`custom` only). Default 32.
    pub stem_width: usize,
    /// `bit` (7×7/2 conv + pool) or `small` (3×3/1 conv, for 28–64 px; `custom` only).
    /// Default `small`.
    pub stem: StemKind,
    /// GroupNorm groups (`custom` only); must divide every width, bottlenecks
    /// (`bottle_ratio` of the stage width, rounded to a multiple of 8) included. Default 16.
    pub groups: usize,
    /// Bottleneck width as a share of the stage width (`custom` only; timm's `bottle_ratio`).
    /// Default 0.25 (BiT's).
    pub bottle_ratio: f64,
    /// Input resolution in pixels (square); 0 = the starting model's own. Default 28.
    pub image_size: u32,
    /// Eval view of a model trained from scratch: the short side is resized to
    /// `image_size / crop_pct`, then centre-cropped. Default 0.875 (BiT's).
    pub crop_pct: f64,
}

impl Default for StudentConfig {
    fn default() -> Self {
        Self {
            arch: "custom".into(),
            layers: vec![1, 1, 1],
            channels: vec![64, 128, 256],
            stem_width: 32,
            stem: StemKind::Small,
            groups: 16,
            bottle_ratio: 0.25,
            image_size: 28,
            crop_pct: 0.875,
        }
    }
}

/// The teachers of a distillation run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TeacherConfig {
    /// Model folders, weights files or Hub ids; several form an ensemble whose logits are
    /// averaged. Default none.
    pub models: Vec<String>,
    /// Teacher input resolution; 0 = the first teacher's own (its `pretrained_cfg`).
    /// Default 0.
    pub image_size: u32,
    /// A file naming, for each data class in order, the teacher class (index or label
    /// name), one per line; needed when the class counts differ. Default none.
    pub class_map: String,
    /// `fixed` variant: teacher outputs are kept in memory up to this size, and read from
    /// the run folder's cache file beyond it. Default 1024 MiB.
    pub fixed_cache_memory_mib: usize,
}

impl Default for TeacherConfig {
    fn default() -> Self {
        Self {
            models: Vec::new(),
            image_size: 0,
            class_map: String::new(),
            fixed_cache_memory_mib: 1024,
        }
    }
}

/// How the teacher's view relates to the student's (the paper's four variants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// Same crop for both, plus mixup on the batch.
    FunctionMatching,
    /// Same crop for both, no mixup.
    Consistent,
    /// Independent crops.
    Independent,
    /// The teacher's output on the fixed eval view, computed once per image.
    Fixed,
}

impl Variant {
    /// The name used in recipes and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Variant::FunctionMatching => "function-matching",
            Variant::Consistent => "consistent",
            Variant::Independent => "independent",
            Variant::Fixed => "fixed",
        }
    }
}

impl std::str::FromStr for Variant {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        [Variant::FunctionMatching, Variant::Consistent, Variant::Independent, Variant::Fixed]
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| {
                format!("unknown variant {s:?}; known: function-matching, consistent, independent, fixed")
            })
    }
}

/// The loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    /// Distillation variant. Default `function-matching`.
    pub variant: Variant,
    /// Distillation temperature T (loss T²·KL at T). Default 1.
    pub temperature: f64,
    /// Mixup `a ~ Beta(p, p)`. Unset: 1 for function matching, off otherwise; 0 = off.
    /// Supervised training uses it too (soft labels). Default unset.
    pub mixup: Option<f32>,
    /// Label smoothing of supervised training. Default 0.
    pub label_smoothing: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            variant: Variant::FunctionMatching,
            temperature: 1.0,
            mixup: None,
            label_smoothing: 0.0,
        }
    }
}

/// Adam, clipping, weight decay and the learning-rate schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    /// Examples per step. Default 512 (the paper's small-data batch).
    pub batch_size: usize,
    /// Peak learning rate. Default 0.01.
    pub lr: f64,
    /// Adam β1. Default 0.9.
    pub beta1: f64,
    /// Adam β2. Default 0.999.
    pub beta2: f64,
    /// Adam ε, added to the bias-corrected √v. Default 1e-8.
    pub eps: f64,
    /// Decoupled weight decay on conv/dense kernels, per step, multiplied by the schedule
    /// value (not by the learning rate). Default 3e-4.
    pub weight_decay: f64,
    /// Clip gradients to this global L2 norm; 0 = off. Default 1.
    pub clip_norm: f64,
    /// Linear warmup steps (from 0 to the peak). Default 1500.
    pub warmup_steps: usize,
    /// Total steps; 0 = from `epochs`. Default 0.
    pub steps: usize,
    /// Total epochs when `steps` is 0 (may be fractional). Default 10.
    pub epochs: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            batch_size: 512,
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 3e-4,
            clip_norm: 1.0,
            warmup_steps: 1500,
            steps: 0,
            epochs: 10.0,
        }
    }
}

/// How a run reports and saves itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunSettings {
    /// Write a training metrics line every this many steps. Default 10.
    pub log_every: usize,
    /// Evaluate on the held-out set every this many steps (and at the end); 0 = at the end
    /// only. Default 500.
    pub eval_every: usize,
    /// Write a checkpoint every this many steps; 0 = never by step count. Default 500.
    pub checkpoint_every: usize,
    /// Also write one when this many minutes passed since the last; 0 = never by time.
    /// Default 30.
    pub checkpoint_minutes: f64,
    /// `auto` (a bar on a terminal, lines otherwise), `bar`, `lines` or `quiet`.
    /// Default `auto`.
    pub progress: String,
    /// Draw PNG curves of loss and accuracy into the run folder. Default true.
    pub plots: bool,
}

impl Default for RunSettings {
    fn default() -> Self {
        Self {
            log_every: 10,
            eval_every: 500,
            checkpoint_every: 500,
            checkpoint_minutes: 30.0,
            progress: "auto".into(),
            plots: true,
        }
    }
}

/// Keys that may change when a run is resumed: they do not affect the weights.
pub const RESUMABLE_KEYS: &[&str] = &["device", "run.", "data.workers", "data.prefetch"];

impl RunConfig {
    /// Builds a configuration from the defaults, an optional recipe file, an optional named
    /// size of that recipe (`[size.NAME]`), and `key=value` overrides (values in TOML syntax;
    /// bare words are strings).
    pub fn load(
        recipe: Option<&Path>,
        size: Option<&str>,
        overrides: &[String],
    ) -> Result<RunConfig, DistillError> {
        let mut table = toml::Table::try_from(RunConfig::default())
            .map_err(|e| DistillError::Config(format!("defaults: {e}")))?;

        let mut sizes = toml::Table::new();
        if let Some(path) = recipe {
            let text = std::fs::read_to_string(path).map_err(|e| DistillError::io(path, e))?;
            let mut recipe: toml::Table = toml::from_str(&text).map_err(|e| {
                DistillError::Config(format!("recipe {}: {}", path.display(), e.message()))
            })?;
            if let Some(toml::Value::Table(s)) = recipe.remove("size") {
                sizes = s;
            }
            merge(&mut table, recipe);
        }
        if let Some(name) = size {
            match sizes.remove(name) {
                Some(toml::Value::Table(s)) => merge(&mut table, s),
                _ => {
                    let known: Vec<&String> = sizes.keys().collect();
                    return Err(DistillError::Config(format!(
                        "the recipe has no size {name:?}; it has {known:?}"
                    )));
                }
            }
        }
        for item in overrides {
            apply_override(&mut table, item)?;
        }
        Self::from_table(table)
    }

    /// Parses a configuration table, refusing unknown keys.
    pub fn from_table(table: toml::Table) -> Result<RunConfig, DistillError> {
        let config: RunConfig = table
            .try_into()
            .map_err(|e: toml::de::Error| DistillError::Config(e.message().to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads the effective configuration that a run folder holds.
    pub fn read(path: &Path) -> Result<RunConfig, DistillError> {
        let text = std::fs::read_to_string(path).map_err(|e| DistillError::io(path, e))?;
        let table: toml::Table = toml::from_str(&text)
            .map_err(|e| DistillError::Config(format!("{}: {}", path.display(), e.message())))?;
        Self::from_table(table)
    }

    /// The configuration as TOML, every key written out.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a RunConfig always serialises")
    }

    /// Checks ranges that serde cannot.
    pub fn validate(&self) -> Result<(), DistillError> {
        let bad = |msg: String| Err(DistillError::Config(msg));
        let o = &self.optim;
        if o.batch_size == 0 {
            return bad("optim.batch_size must be positive".into());
        }
        if !(o.lr.is_finite() && o.lr >= 0.0) {
            return bad(format!("optim.lr must be finite and ≥ 0, found {}", o.lr));
        }
        for (key, v) in [("optim.beta1", o.beta1), ("optim.beta2", o.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return bad(format!("{key} must be in [0, 1), found {v}"));
            }
        }
        if !(o.eps > 0.0) {
            return bad(format!("optim.eps must be positive, found {}", o.eps));
        }
        if !(o.weight_decay >= 0.0 && o.clip_norm >= 0.0) {
            return bad("optim.weight_decay and optim.clip_norm must be ≥ 0".into());
        }
        if o.steps == 0 && !(o.epochs > 0.0 && o.epochs.is_finite()) {
            return bad(format!("set optim.steps or a positive optim.epochs, found {}", o.epochs));
        }
        if !(self.loss.temperature > 0.0) {
            return bad(format!(
                "loss.temperature must be positive, found {}",
                self.loss.temperature
            ));
        }
        if !(0.0..1.0).contains(&self.loss.label_smoothing) {
            return bad(format!(
                "loss.label_smoothing must be in [0, 1), found {}",
                self.loss.label_smoothing
            ));
        }
        if let Some(p) = self.loss.mixup {
            if !(p >= 0.0 && p.is_finite()) {
                return bad(format!("loss.mixup must be ≥ 0 (0 = off), found {p}"));
            }
        }
        if !["auto", "bar", "lines", "quiet"].contains(&self.run.progress.as_str()) {
            return bad(format!(
                "run.progress must be auto, bar, lines or quiet, found {:?}",
                self.run.progress
            ));
        }
        if !(0.0..1.0).contains(&self.data.held_out) {
            return bad(format!("data.held_out must be in [0, 1), found {}", self.data.held_out));
        }
        let [lo, hi] = self.data.crop_area;
        if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
            return bad(format!(
                "data.crop_area must be [lo, hi] with 0 < lo ≤ hi ≤ 1, found [{lo}, {hi}]"
            ));
        }
        Ok(())
    }

    /// The Beta parameter of mixup for supervised training (`None` = off).
    pub fn supervised_mixup(&self) -> Option<f32> {
        self.loss.mixup.filter(|&p| p > 0.0)
    }

    /// The Beta parameter of mixup for distillation, checked against the variant.
    pub fn distill_mixup(&self) -> Result<Option<f32>, DistillError> {
        match (self.loss.variant, self.loss.mixup) {
            (Variant::FunctionMatching, None) => Ok(Some(1.0)),
            (Variant::FunctionMatching, Some(p)) if p > 0.0 => Ok(Some(p)),
            (Variant::FunctionMatching, Some(_)) => Err(DistillError::Config(
                "function matching is consistent teaching plus mixup; with loss.mixup = 0 use \
                 variant consistent"
                    .into(),
            )),
            (_, None) | (_, Some(0.0)) => Ok(None),
            (v, Some(p)) => Err(DistillError::Config(format!(
                "variant {} uses no mixup, found loss.mixup = {p}; function-matching is the \
                 variant with mixup",
                v.name()
            ))),
        }
    }
}

/// Merges `from` into `into`, recursing into tables; `from` wins.
fn merge(into: &mut toml::Table, from: toml::Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// Applies one `dotted.key=value` override. The value is read as TOML (`0.01`, `true`,
/// `[1, 2]`, `"text"`); anything that does not parse is taken as a plain string.
pub fn apply_override(table: &mut toml::Table, item: &str) -> Result<(), DistillError> {
    let Some((key, raw)) = item.split_once('=') else {
        return Err(DistillError::Config(format!("override {item:?} is not KEY=VALUE")));
    };
    let (key, raw) = (key.trim(), raw.trim());
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));

    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(DistillError::Config(format!("override key {key:?} has an empty part")));
    }
    let mut node = table;
    for part in &parts[..parts.len() - 1] {
        let entry =
            node.entry(part.to_string()).or_insert_with(|| toml::Value::Table(Default::default()));
        node = match entry {
            toml::Value::Table(t) => t,
            _ => {
                return Err(DistillError::Config(format!(
                    "override {key:?}: {part:?} is a value, not a table"
                )))
            }
        };
    }
    let last = parts[parts.len() - 1];
    // A float key given as an integer (`optim.lr=1`) is still a float.
    let value = match (node.get(last), value) {
        (Some(toml::Value::Float(_)), toml::Value::Integer(i)) => toml::Value::Float(i as f64),
        (_, v) => v,
    };
    node.insert(last.to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_reach_nested_keys_and_keep_types() {
        let cfg = RunConfig::load(
            None,
            None,
            &[
                "optim.lr=1".into(),
                "loss.variant=consistent".into(),
                "student.layers=[2, 2]".into(),
            ],
        )
        .unwrap();
        assert_eq!(cfg.optim.lr, 1.0);
        assert_eq!(cfg.loss.variant, Variant::Consistent);
        assert_eq!(cfg.student.layers, vec![2, 2]);
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let err = RunConfig::load(None, None, &["optim.lrr=0.1".into()]).unwrap_err();
        assert!(err.to_string().contains("lrr"), "{err}");
    }

    #[test]
    fn effective_config_round_trips_through_toml() {
        let mut cfg = RunConfig::default();
        cfg.loss.mixup = Some(0.5);
        cfg.teacher.models = vec!["a".into(), "b".into()];
        let table: toml::Table = toml::from_str(&cfg.to_toml()).unwrap();
        assert_eq!(RunConfig::from_table(table).unwrap(), cfg);
    }

    #[test]
    fn recipe_sizes_apply_over_the_recipe() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.toml");
        std::fs::write(&path, "[optim]\nlr = 0.5\nsteps = 100\n[size.smoke.optim]\nsteps = 3\n")
            .unwrap();
        let cfg = RunConfig::load(Some(&path), Some("smoke"), &[]).unwrap();
        assert_eq!((cfg.optim.lr, cfg.optim.steps), (0.5, 3));
        assert!(RunConfig::load(Some(&path), Some("huge"), &[]).is_err());
    }

    #[test]
    fn every_recipe_and_its_smoke_size_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/recipes");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                for size in [None, Some("smoke")] {
                    RunConfig::load(Some(&path), size, &[])
                        .unwrap_or_else(|e| panic!("{} size {size:?}: {e}", path.display()));
                }
                seen += 1;
            }
        }
        assert!(seen >= 3, "found {seen} recipes in {}", dir.display());
    }
}
