//! The batch loader: epochs, shuffling, views for teacher and student, mixup, prefetch.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rayon::prelude::*;

use crate::dataset::{Dataset, ViewNeeds};
use crate::rng::{Rng, Stream};
use std::mem::MaybeUninit;

use crate::view::{eval_crop, inception_crop_in, render_uninit, Crop, ViewConfig, INCEPTION_AREA};
use crate::DataError;

/// How the teacher's view relates to the student's when training (the paper's variants).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewMode {
    /// One crop and flip per image, seen by both models ("consistent teaching"; with mixup,
    /// "function matching"). Different resolutions: crop once, resize twice.
    Shared,
    /// Independent crops and flips for teacher and student ("independent noise").
    Independent,
    /// The teacher sees the deterministic eval view, the same every epoch ("fixed teacher").
    Fixed,
}

/// What the loader produces and how.
#[derive(Clone, Debug)]
pub struct LoaderConfig {
    /// Examples per batch.
    pub batch_size: usize,
    /// Seed of every random decision (order, crops, flips, mixup).
    pub seed: u64,
    /// `true`: augmented training views; `false`: eval views, no flip, no mixup.
    pub train: bool,
    /// Teacher view variant (training only).
    pub mode: ViewMode,
    /// Mixup with coefficient `a ~ Beta(p, p)`, `a = max(a, 1 − a)`, once per batch.
    pub mixup: Option<f32>,
    /// Area share range of the training crops (inception crop); default [`INCEPTION_AREA`].
    pub crop_area: (f64, f64),
    /// The student's input.
    pub student: ViewConfig,
    /// The teacher's input when it differs from the student's; `None` = the student's.
    pub teacher: Option<ViewConfig>,
    /// Drop the last, incomplete batch of each epoch.
    pub drop_last: bool,
    /// Visit examples in a seeded random order that changes every epoch.
    pub shuffle: bool,
    /// Share of the dataset (0–1) that may fail to decode before the run stops.
    pub max_failed_share: f32,
    /// Decode threads; 0 = rayon's global pool (`RAYON_NUM_THREADS` or one per core).
    pub workers: usize,
    /// Batches prepared ahead on a background thread; 0 = build each batch on demand.
    pub prefetch: usize,
}

impl LoaderConfig {
    /// Training defaults: shared views, no mixup, shuffled, last partial batch dropped,
    /// 1 % of failed files tolerated, two batches prefetched.
    pub fn train(batch_size: usize, student: ViewConfig) -> LoaderConfig {
        LoaderConfig {
            batch_size,
            seed: 0,
            train: true,
            mode: ViewMode::Shared,
            mixup: None,
            crop_area: INCEPTION_AREA,
            student,
            teacher: None,
            drop_last: true,
            shuffle: true,
            max_failed_share: 0.01,
            workers: 0,
            prefetch: 2,
        }
    }

    /// Eval defaults: eval views in dataset order, every example kept.
    pub fn eval(batch_size: usize, student: ViewConfig) -> LoaderConfig {
        LoaderConfig {
            train: false,
            drop_last: false,
            shuffle: false,
            ..LoaderConfig::train(batch_size, student)
        }
    }

    fn validate(&self) -> Result<(), DataError> {
        if self.batch_size == 0 {
            return Err(DataError::Config("batch_size must be positive, found 0".into()));
        }
        self.student.validate("student")?;
        if let Some(teacher) = &self.teacher {
            teacher.validate("teacher")?;
        }
        if let Some(p) = self.mixup {
            if !(p.is_finite() && p > 0.0) {
                return Err(DataError::Config(format!("mixup p must be positive, found {p}")));
            }
            if !self.train {
                return Err(DataError::Config("mixup applies to training views only".into()));
            }
        }
        if !(0.0..=1.0).contains(&self.max_failed_share) {
            return Err(DataError::Config(format!(
                "max_failed_share must be in [0, 1], found {}",
                self.max_failed_share
            )));
        }
        Ok(())
    }
}

/// A batch of images: NCHW `f32`, normalised.
#[derive(Clone, Debug, PartialEq)]
pub struct Images {
    /// `n × channels × height × width` values.
    pub data: Vec<f32>,
    /// Images in the batch.
    pub n: usize,
    /// Always 3.
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
}

impl Images {
    /// The CHW values of image `i`.
    pub fn image(&self, i: usize) -> &[f32] {
        let size = self.channels * self.height * self.width;
        &self.data[i * size..(i + 1) * size]
    }

    /// The shape as `[n, channels, height, width]`.
    pub fn shape(&self) -> [usize; 4] {
        [self.n, self.channels, self.height, self.width]
    }
}

/// One training or eval step's worth of examples.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Epoch of this batch (0-based).
    pub epoch: usize,
    /// Global step (0-based): `epoch × steps_per_epoch + step_in_epoch`.
    pub step: usize,
    /// Position of the batch in its epoch.
    pub step_in_epoch: usize,
    /// Dataset indices of the examples, in batch order (failed files left out).
    pub indices: Vec<usize>,
    /// Labels of the examples.
    pub labels: Vec<u32>,
    /// The student's views.
    pub student: Images,
    /// The teacher's views; `None` means "the same tensor as `student`" (shared views at the
    /// same resolution and normalisation, or eval with one view config).
    pub teacher: Option<Images>,
    /// Mixup coefficient `a ≥ 0.5`, if mixup is on: image `i` is
    /// `a · x_i + (1 − a) · x_{mixup_partner(i)}` (big_vision's `jnp.roll(x, 1)`: the
    /// partner of `i` is `i − 1`, of 0 the last image).
    pub mixup: Option<f32>,
}

impl Batch {
    /// Examples in the batch.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether the batch holds no example (every file in it failed).
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The example that image `i` was mixed with: `i − 1`, and the last one for 0.
    pub fn mixup_partner(&self, i: usize) -> usize {
        (i + self.len() - 1) % self.len()
    }

    /// Soft targets, `len × num_classes` row-major: one-hot labels, mixed with the partner's
    /// by the mixup coefficient when mixup is on (for supervised training).
    pub fn soft_labels(&self, num_classes: usize) -> Vec<f32> {
        let mut out = vec![0.0; self.len() * num_classes];
        let a = self.mixup.unwrap_or(1.0);
        for i in 0..self.len() {
            let row = &mut out[i * num_classes..(i + 1) * num_classes];
            row[self.labels[i] as usize] += a;
            if a < 1.0 {
                row[self.labels[self.mixup_partner(i)] as usize] += 1.0 - a;
            }
        }
        out
    }
}

/// One example that could not be decoded.
#[derive(Clone, Debug)]
pub struct Failure {
    /// Dataset index.
    pub index: usize,
    /// The file (see [`Dataset::describe`]).
    pub what: String,
    /// The error.
    pub error: String,
    /// How many times it was tried (once per epoch it came up in).
    pub attempts: u64,
}

/// The examples that failed so far, for the end-of-run report.
#[derive(Clone, Debug, Default)]
pub struct FailureReport {
    /// Distinct failed examples, by dataset index.
    pub failures: Vec<Failure>,
    /// Examples attempted (with repeats across epochs).
    pub attempted: u64,
    /// Examples in the dataset.
    pub dataset_len: usize,
}

impl fmt::Display for FailureReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.failures.is_empty() {
            return write!(f, "all {} attempted examples decoded", self.attempted);
        }
        writeln!(
            f,
            "{} of {} examples could not be decoded and were skipped:",
            self.failures.len(),
            self.dataset_len
        )?;
        for failure in &self.failures {
            writeln!(f, "  {} ({}×): {}", failure.what, failure.attempts, failure.error)?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct FailureState {
    failed: BTreeMap<usize, Failure>,
    attempted: u64,
}

/// Which view the teacher gets, decided once from the configuration.
#[derive(Clone, Debug)]
enum TeacherPlan {
    /// The student's tensor serves both: no teacher images are made.
    SameAsStudent,
    /// The student's crop and flip, resized and normalised for the teacher.
    SharedCrop(ViewConfig),
    /// A crop and flip of its own.
    OwnCrop(ViewConfig),
    /// The deterministic eval view.
    Eval(ViewConfig),
}

impl TeacherPlan {
    fn decide(config: &LoaderConfig) -> TeacherPlan {
        let distinct = config.teacher.as_ref().filter(|t| **t != config.student).cloned();
        let teacher = || config.teacher.clone().unwrap_or_else(|| config.student.clone());
        match (config.train, config.mode, distinct) {
            (false, _, None) | (true, ViewMode::Shared, None) => TeacherPlan::SameAsStudent,
            (false, _, Some(t)) => TeacherPlan::Eval(t),
            (true, ViewMode::Shared, Some(t)) => TeacherPlan::SharedCrop(t),
            (true, ViewMode::Independent, _) => TeacherPlan::OwnCrop(teacher()),
            (true, ViewMode::Fixed, _) => TeacherPlan::Eval(teacher()),
        }
    }

    fn view(&self) -> Option<&ViewConfig> {
        match self {
            TeacherPlan::SameAsStudent => None,
            TeacherPlan::SharedCrop(v) | TeacherPlan::OwnCrop(v) | TeacherPlan::Eval(v) => Some(v),
        }
    }
}

struct Inner {
    dataset: Arc<dyn Dataset>,
    config: LoaderConfig,
    teacher: TeacherPlan,
    steps_per_epoch: usize,
    pool: Option<rayon::ThreadPool>,
    permutation: Mutex<Option<(usize, Arc<Vec<usize>>)>>,
    failures: Mutex<FailureState>,
}

/// Produces batches as a pure function of (seed, epoch, example index, step).
///
/// Cloning is cheap and clones share the failure record.
#[derive(Clone)]
pub struct Loader {
    inner: Arc<Inner>,
}

impl Loader {
    /// Checks the configuration against the dataset and prepares the worker pool.
    pub fn new(dataset: Arc<dyn Dataset>, config: LoaderConfig) -> Result<Loader, DataError> {
        config.validate()?;
        let n = dataset.len();
        let steps_per_epoch =
            if config.drop_last { n / config.batch_size } else { n.div_ceil(config.batch_size) };
        if steps_per_epoch == 0 {
            return Err(DataError::Config(format!(
                "a dataset of {n} examples gives no batch of {} (drop_last: {})",
                config.batch_size, config.drop_last
            )));
        }

        let pool = if config.workers > 0 {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(config.workers)
                .thread_name(|i| format!("funmatch-data-{i}"))
                .build()
                .map_err(|e| {
                    DataError::Config(format!("starting {} workers: {e}", config.workers))
                })?;
            Some(pool)
        } else {
            None
        };
        let teacher = TeacherPlan::decide(&config);
        tracing::debug!(?teacher, steps_per_epoch, examples = n, "loader ready");

        let inner = Inner {
            dataset,
            config,
            teacher,
            steps_per_epoch,
            pool,
            permutation: Mutex::new(None),
            failures: Mutex::new(FailureState::default()),
        };
        Ok(Loader { inner: Arc::new(inner) })
    }

    /// Batches in one epoch.
    pub fn steps_per_epoch(&self) -> usize {
        self.inner.steps_per_epoch
    }

    /// The configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.inner.config
    }

    /// The dataset.
    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.inner.dataset
    }

    /// Builds the batch of global step `step` now, on the calling thread and the workers.
    pub fn batch(&self, step: usize) -> Result<Batch, DataError> {
        self.inner.build_batch(step)
    }

    /// Batches from global step `step` on, without end (epochs follow one another).
    pub fn iter_from(&self, step: usize) -> BatchIter {
        self.iter_steps(step, None)
    }

    /// The batches of one epoch.
    pub fn epoch(&self, epoch: usize) -> BatchIter {
        let spe = self.steps_per_epoch();
        self.iter_steps(epoch * spe, Some((epoch + 1) * spe))
    }

    /// Batches of global steps `start..end` (`None`: without end).
    pub fn iter_steps(&self, start: usize, end: Option<usize>) -> BatchIter {
        let prefetch = self.inner.config.prefetch;
        if prefetch == 0 {
            return BatchIter {
                source: Source::OnDemand { loader: self.clone(), next: start, end },
            };
        }

        let (sender, receiver) = sync_channel(prefetch);
        let inner = self.inner.clone();
        let handle =
            std::thread::Builder::new().name("funmatch-data-prefetch".into()).spawn(move || {
                let mut step = start;
                while end.is_none_or(|end| step < end) {
                    let batch = inner.build_batch(step);
                    let failed = batch.is_err();
                    // A closed channel means the consumer is gone: stop quietly.
                    if sender.send(batch).is_err() || failed {
                        return;
                    }
                    step += 1;
                }
            });
        match handle {
            Ok(handle) => BatchIter {
                source: Source::Prefetch { receiver: Some(receiver), handle: Some(handle) },
            },
            // No thread to be had: build on demand instead.
            Err(e) => {
                tracing::debug!(error = %e, "prefetch thread unavailable, building on demand");
                BatchIter { source: Source::OnDemand { loader: self.clone(), next: start, end } }
            }
        }
    }

    /// The crops and flips that example `index` gets in `epoch`, for an image of
    /// `width × height` pixels (after EXIF orientation). Exposed so that callers can check
    /// or reproduce a view; the loader uses exactly this.
    pub fn views_of(&self, epoch: usize, index: usize, width: u32, height: u32) -> PlannedViews {
        self.inner.plan(epoch, index, width, height)
    }

    /// The files that failed so far, for the report at the end of a run.
    pub fn failure_report(&self) -> FailureReport {
        let state = self.inner.failures.lock().unwrap_or_else(|p| p.into_inner());
        FailureReport {
            failures: state.failed.values().cloned().collect(),
            attempted: state.attempted,
            dataset_len: self.inner.dataset.len(),
        }
    }
}

/// An iterator of batches; stops after the first error.
pub struct BatchIter {
    source: Source,
}

enum Source {
    OnDemand {
        loader: Loader,
        next: usize,
        end: Option<usize>,
    },
    Prefetch {
        receiver: Option<Receiver<Result<Batch, DataError>>>,
        handle: Option<JoinHandle<()>>,
    },
    Done,
}

impl Iterator for BatchIter {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = match &mut self.source {
            Source::OnDemand { loader, next, end } => {
                if end.is_some_and(|end| *next >= end) {
                    None
                } else {
                    *next += 1;
                    Some(loader.batch(*next - 1))
                }
            }
            Source::Prefetch { receiver, .. } => receiver.as_ref().and_then(|r| r.recv().ok()),
            Source::Done => None,
        };
        if !matches!(item, Some(Ok(_))) {
            self.stop();
        }
        item
    }
}

impl BatchIter {
    fn stop(&mut self) {
        if let Source::Prefetch { receiver, handle } = &mut self.source {
            // Closing the channel first lets a producer blocked on a full queue exit.
            drop(receiver.take());
            if let Some(handle) = handle.take() {
                let _ = handle.join();
            }
        }
        self.source = Source::Done;
    }
}

impl Drop for BatchIter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where one example's views come from, in full-resolution image coordinates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlannedViews {
    /// The student's crop.
    pub student: Crop,
    /// Whether the student's view is mirrored.
    pub student_flip: bool,
    /// The teacher's crop; `None` when the student's tensor serves both.
    pub teacher: Option<Crop>,
    /// Whether the teacher's view is mirrored.
    pub teacher_flip: bool,
}

impl Inner {
    fn permutation(&self, epoch: usize) -> Arc<Vec<usize>> {
        let mut cached = self.permutation.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((e, perm)) = cached.as_ref() {
            if *e == epoch {
                return perm.clone();
            }
        }
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        if self.config.shuffle {
            Rng::keyed(self.config.seed, Stream::Shuffle, &[epoch as u64]).shuffle(&mut order);
        }
        let order = Arc::new(order);
        *cached = Some((epoch, order.clone()));
        order
    }

    fn build_batch(&self, step: usize) -> Result<Batch, DataError> {
        let (epoch, step_in_epoch) = (step / self.steps_per_epoch, step % self.steps_per_epoch);
        let order = self.permutation(epoch);
        let start = step_in_epoch * self.config.batch_size;
        let end = (start + self.config.batch_size).min(order.len());
        let mut indices = order[start..end].to_vec();

        // Render every example into its slot of the batch buffers, in parallel.
        let student_size = self.config.student.floats();
        let teacher_view = self.teacher.view();
        let teacher_size = teacher_view.map_or(0, ViewConfig::floats);
        let mut student = Vec::<f32>::with_capacity(indices.len() * student_size);
        let mut teacher = Vec::<f32>::with_capacity(indices.len() * teacher_size);
        let results: Vec<Result<(), DataError>> = {
            let student_slots = &mut student.spare_capacity_mut()[..indices.len() * student_size];
            let teacher_slots = &mut teacher.spare_capacity_mut()[..indices.len() * teacher_size];
            let mut teacher_slots = teacher_slots.chunks_mut(teacher_size.max(1));
            let slots: Vec<_> = indices
                .iter()
                .zip(student_slots.chunks_mut(student_size))
                .map(|(&i, s)| (i, s, teacher_view.and_then(|_| teacher_slots.next())))
                .collect();
            let work = || {
                slots.into_par_iter().map(|(i, s, t)| self.render_example(epoch, i, s, t)).collect()
            };
            match &self.pool {
                Some(pool) => pool.install(work),
                None => work(),
            }
        };

        // Leave failed examples out, keeping the order of the others.
        let kept = self.record_failures(&indices, &results)?;
        compact(&mut student, student_size, &kept);
        compact(&mut teacher, teacher_size, &kept);
        if kept.len() < indices.len() {
            indices = kept.iter().map(|&k| indices[k]).collect();
        }
        let labels = indices.iter().map(|&i| self.dataset.label(i)).collect();

        let mut student = self.images(student, &self.config.student, indices.len());
        let mut teacher = teacher_view.map(|v| self.images(teacher, v, indices.len()));
        let mixup = match self.config.mixup {
            Some(p) if !indices.is_empty() => {
                let mut rng = Rng::keyed(
                    self.config.seed,
                    Stream::Mixup,
                    &[epoch as u64, step_in_epoch as u64],
                );
                let a = rng.beta(f64::from(p), f64::from(p));
                let a = a.max(1.0 - a) as f32;
                mix(&mut student, a);
                if let Some(t) = teacher.as_mut() {
                    mix(t, a);
                }
                Some(a)
            }
            _ => None,
        };

        Ok(Batch { epoch, step, step_in_epoch, indices, labels, student, teacher, mixup })
    }

    fn images(&self, data: Vec<f32>, view: &ViewConfig, n: usize) -> Images {
        Images { data, n, channels: 3, height: view.height as usize, width: view.width as usize }
    }

    fn plan(&self, epoch: usize, index: usize, width: u32, height: u32) -> PlannedViews {
        let config = &self.config;
        let key = [epoch as u64, index as u64];
        let (student, flip) = if config.train {
            let mut rng = Rng::keyed(config.seed, Stream::View, &key);
            (inception_crop_in(&mut rng, width, height, config.crop_area), rng.uniform() < 0.5)
        } else {
            (eval_crop(width, height, &config.student), false)
        };
        let (teacher, teacher_flip) = match &self.teacher {
            TeacherPlan::SameAsStudent => (None, flip),
            TeacherPlan::SharedCrop(_) => (Some(student), flip),
            TeacherPlan::OwnCrop(_) => {
                let mut rng = Rng::keyed(config.seed, Stream::TeacherView, &key);
                (
                    Some(inception_crop_in(&mut rng, width, height, config.crop_area)),
                    rng.uniform() < 0.5,
                )
            }
            TeacherPlan::Eval(view) => (Some(eval_crop(width, height, view)), false),
        };
        PlannedViews { student, student_flip: flip, teacher, teacher_flip }
    }

    fn render_example(
        &self,
        epoch: usize,
        index: usize,
        student_out: &mut [MaybeUninit<f32>],
        teacher_out: Option<&mut [MaybeUninit<f32>]>,
    ) -> Result<(), DataError> {
        let mut planned = None;
        let loaded = self.dataset.load_for_views(index, &mut |w, h| {
            let p = self.plan(epoch, index, w, h);
            let mut needs = view_needs(&p.student, &self.config.student);
            if let (Some(crop), Some(view)) = (p.teacher, self.teacher.view()) {
                let teacher = view_needs(&crop, view);
                needs.min_scale = needs.min_scale.max(teacher.min_scale);
                needs.rows = needs.rows.max(teacher.rows);
            }
            planned = Some(p);
            needs
        })?;
        let planned = planned.ok_or_else(|| {
            DataError::Config(format!(
                "dataset did not plan the views of {}",
                self.dataset.describe(index)
            ))
        })?;

        // Crops were planned on the full-resolution image; the decoder may have reduced it.
        let (sx, sy) = (loaded.scale, loaded.scale);
        let pixels = &loaded.pixels;
        render_uninit(
            pixels,
            planned.student.scaled(sx, sy),
            planned.student_flip,
            &self.config.student,
            student_out,
        )?;
        if let (Some(out), Some(crop), Some(view)) =
            (teacher_out, planned.teacher, self.teacher.view())
        {
            render_uninit(pixels, crop.scaled(sx, sy), planned.teacher_flip, view, out)?;
        }
        Ok(())
    }

    /// Records the failures of one batch; returns the positions that succeeded, or the error
    /// that stops the run when too large a share of the dataset has failed.
    fn record_failures(
        &self,
        indices: &[usize],
        results: &[Result<(), DataError>],
    ) -> Result<Vec<usize>, DataError> {
        let mut kept = Vec::with_capacity(indices.len());
        let mut state = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        state.attempted += indices.len() as u64;
        for (position, (&index, result)) in indices.iter().zip(results).enumerate() {
            let Err(error) = result else {
                kept.push(position);
                continue;
            };
            let what = self.dataset.describe(index);
            tracing::warn!(file = %what, %error, "skipping an example that cannot be decoded");
            let entry = state.failed.entry(index).or_insert_with(|| Failure {
                index,
                what,
                error: error.to_string(),
                attempts: 0,
            });
            entry.attempts += 1;
        }

        let total = self.dataset.len();
        let failed = state.failed.len();
        let share = failed as f64 / total as f64;
        if share > f64::from(self.config.max_failed_share) {
            let first = state.failed.values().next().map(|f| f.error.clone()).unwrap_or_default();
            return Err(DataError::TooManyFailures {
                failed,
                total,
                percent: 100.0 * share,
                allowed_percent: 100.0 * f64::from(self.config.max_failed_share),
                first,
            });
        }
        Ok(kept)
    }
}

/// What rendering `crop` into `view` reads: its scale, and its rows down to the reach of
/// the resampling filter below the crop (2 source pixels for bicubic, widened by the
/// downscale factor, plus one for rounding).
fn view_needs(crop: &Crop, view: &ViewConfig) -> ViewNeeds {
    let downscale = (crop.height / f64::from(view.height)).max(1.0);
    ViewNeeds {
        min_scale: crop.min_scale_for(view),
        rows: crop.y + crop.height + 2.0 * downscale + 1.0,
    }
}

/// Moves the images that rendered (positions `kept`, ascending) to the front of the spare
/// capacity of `data` and makes exactly them the vector's contents.
fn compact(data: &mut Vec<f32>, size: usize, kept: &[usize]) {
    if size == 0 {
        return;
    }
    let slots = data.spare_capacity_mut();
    for (to, &from) in kept.iter().enumerate() {
        if to != from {
            slots.copy_within(from * size..(from + 1) * size, to * size);
        }
    }
    // SAFETY: every kept slot was fully written by `render_uninit` (it succeeded for these
    // positions) and has been moved to positions `0..kept.len()`; the capacity was reserved
    // for all positions, so `kept.len() * size` is within it.
    unsafe { data.set_len(kept.len() * size) };
}

/// Mixup in place: `x_i ← a · x_i + (1 − a) · x_{i−1}`, with `x_{−1}` the last image.
fn mix(images: &mut Images, a: f32) {
    let n = images.n;
    let size = images.channels * images.height * images.width;
    if n < 2 {
        // An image mixed with itself is itself.
        return;
    }
    let last = images.data[(n - 1) * size..n * size].to_vec();
    // Going downwards, x_{i−1} is still the original when x_i is updated.
    for i in (1..n).rev() {
        let (before, current) = images.data.split_at_mut(i * size);
        let previous = &before[(i - 1) * size..];
        for (x, &p) in current[..size].iter_mut().zip(previous) {
            *x = a * *x + (1.0 - a) * p;
        }
    }
    for (x, &p) in images.data[..size].iter_mut().zip(&last) {
        *x = a * *x + (1.0 - a) * p;
    }
}
