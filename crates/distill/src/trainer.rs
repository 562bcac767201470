//! The training loop, shared by supervised training and distillation.
//!
//! It reads top to bottom: setup (run folder, resume), data, models, optimizer, then the
//! step loop (inputs, teacher, loss, guard rail, update, logging, evaluation, checkpoint),
//! then the end of the run (final evaluation, checkpoint, model folder, plots).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use funmatch_data::{Batch, Images, Loader, LoaderConfig, ViewConfig, ViewMode};
use funmatch_models::{
    find_arch, init_params, param_specs, save_model_folder, trainable, BitConfig, Mode, Params,
    PretrainedCfg, ResNetV2,
};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{read_checkpoint, CheckpointMeta, CheckpointWriter, CHECKPOINT_FILE};
use crate::config::{RunConfig, StudentConfig, Variant, RESUMABLE_KEYS};
use crate::data::{open_run_data, view_for};
use crate::error::DistillError;
use crate::loss::{argmax, distill_loss, kl_per_example, log_softmax, smooth, soft_cross_entropy};
use crate::metrics::{EvalResult, MetricsLog, Record};
use crate::optim::{Adam, Schedule};
use crate::progress::{evals_left, Progress, Status};
use crate::teacher::{load_model_arg, FixedTargets, ModelResolver, Teacher};

/// What a run optimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Cross-entropy against the labels (optionally smoothed and mixed).
    Supervised,
    /// T²·KL against a frozen teacher.
    Distill,
}

/// The inputs of one step, shown to [`RunOptions::on_step`] (for tests and diagnostics).
pub struct StepInputs<'a> {
    /// Global step of the batch (0-based).
    pub step: usize,
    /// Training examples of the batch.
    pub indices: &'a [usize],
    /// The student's input.
    pub student: &'a Tensor,
    /// The teacher's input; `None` when no teacher runs during the step (supervised
    /// training, or the `fixed` variant's kept outputs).
    pub teacher: Option<&'a Tensor>,
}

/// How a run is started and watched; none of this changes the weights.
#[derive(Default)]
pub struct RunOptions {
    /// The run folder (created when missing).
    pub run_dir: PathBuf,
    /// Continue from the checkpoint in `run_dir` instead of starting afresh.
    pub resume: bool,
    /// Turns Hub ids into local folders; local paths are used as they are.
    pub resolver: Option<Box<ModelResolver>>,
    /// When set (e.g. by Ctrl-C), the run writes a checkpoint after the current step and
    /// returns [`Outcome::Interrupted`].
    pub stop: Option<Arc<AtomicBool>>,
    /// Called with every step's inputs before the models run.
    #[allow(clippy::type_complexity)]
    pub on_step: Option<Box<dyn FnMut(&StepInputs<'_>)>>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// All steps done; the model folder is written.
    Finished,
    /// Stopped on request after a checkpoint; `--resume` continues it.
    Interrupted,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Summary {
    /// How it ended.
    pub outcome: Outcome,
    /// Updates done (over all sessions of the run).
    pub steps: usize,
    /// Updates the run is planned for.
    pub total_steps: usize,
    /// Examples in the training set.
    pub train_examples: usize,
    /// The final model folder (finished runs).
    pub model_dir: Option<PathBuf>,
    /// The last held-out evaluation.
    pub eval: Option<EvalResult>,
    /// Mean loss of the first logged window of this session and of the last one.
    pub first_loss: Option<f64>,
    /// See `first_loss`.
    pub last_loss: Option<f64>,
    /// Training images the teacher ran on in this session (the `fixed` variant's one pass
    /// included).
    pub teacher_train_images: u64,
    /// Held-out images the teacher ran on in this session.
    pub teacher_eval_images: u64,
    /// Updates per second of this session, data waits included, evaluation and
    /// checkpoints excluded.
    pub steps_per_s: f64,
    /// Training images per second on the same clock.
    pub images_per_s: f64,
}

/// The run folder's record of what it trains.
#[derive(Debug, Serialize, Deserialize)]
struct RunInfo {
    task: Task,
}

/// Opens `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(spec: &str) -> Result<Device, DistillError> {
    let ordinal = match spec {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        s => s.strip_prefix("cuda:").and_then(|n| n.parse().ok()).ok_or_else(|| {
            DistillError::Config(format!("device must be cpu, cuda or cuda:N, found {spec:?}"))
        })?,
    };
    Device::new_cuda(ordinal).map_err(|e| {
        DistillError::Config(format!(
            "device {spec}: {e} (this binary needs the `cuda` feature and a GPU)"
        ))
    })
}

/// The configuration of a run folder, for `--resume`, with `overrides` limited to the keys
/// that cannot change the weights ([`RESUMABLE_KEYS`]).
pub fn resume_config(run_dir: &Path, overrides: &[String]) -> Result<RunConfig, DistillError> {
    let path = run_dir.join("config.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| DistillError::io(&path, e))?;
    let mut table: toml::Table = toml::from_str(&text)
        .map_err(|e| DistillError::Config(format!("{}: {}", path.display(), e.message())))?;
    for item in overrides {
        let key = item.split('=').next().unwrap_or("").trim();
        if !RESUMABLE_KEYS.iter().any(|k| key == *k || (k.ends_with('.') && key.starts_with(k))) {
            return Err(DistillError::Config(format!(
                "{key:?} cannot change when resuming (it would change the weights); keys that \
                 can: {RESUMABLE_KEYS:?}"
            )));
        }
        crate::config::apply_override(&mut table, item)?;
    }
    RunConfig::from_table(table)
}

/// Trains (or distils) as `config` says, in `opts.run_dir`.
pub fn train(
    task: Task,
    config: &RunConfig,
    mut opts: RunOptions,
) -> Result<Summary, DistillError> {
    // ---- Setup: device, run folder, resume point ------------------------------------------
    let device = parse_device(&config.device)?;
    let dir = opts.run_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|e| DistillError::io(&dir, e))?;
    let resumed = open_run_folder(&dir, task, config, opts.resume, &device)?;
    let resolver = opts.resolver.as_deref();

    // ---- Data ----------------------------------------------------------------------------
    let data = open_run_data(&config.data, config.seed)?;
    let classes: Vec<String> = data.train.class_names().to_vec();

    // ---- Models --------------------------------------------------------------------------
    let student = build_student(&config.student, classes.len(), config.seed, &device, resolver)?;
    let student_view = view_for(&student.pretrained, config.student.image_size);
    let teacher = match task {
        Task::Supervised => None,
        Task::Distill => Some(Teacher::load(
            &config.teacher.models,
            &config.teacher.class_map,
            &classes,
            &device,
            resolver,
        )?),
    };
    let teacher_view = teacher.as_ref().map(|t| view_for(&t.pretrained, config.teacher.image_size));
    let variant = config.loss.variant;
    let fixed_variant = task == Task::Distill && variant == Variant::Fixed;

    let loader = Loader::new(
        data.train.clone(),
        train_loader_config(task, config, &student_view, teacher_view.as_ref())?,
    )?;
    let steps_per_epoch = loader.steps_per_epoch();
    let total = if config.optim.steps > 0 {
        config.optim.steps
    } else {
        (config.optim.epochs * steps_per_epoch as f64).ceil() as usize
    };
    let eval_loader = match &data.eval {
        Some(eval) => {
            let mut lc = LoaderConfig::eval(config.optim.batch_size, student_view.clone());
            lc.teacher = teacher_view.clone();
            lc.workers = config.data.workers;
            lc.prefetch = config.data.prefetch;
            Some(Loader::new(eval.clone(), lc)?)
        }
        None => None,
    };

    let mut teacher_train_images = 0u64;
    let fixed = match (&teacher, fixed_variant) {
        (Some(t), true) => {
            let view = teacher_view.as_ref().expect("a teacher has a view");
            let (targets, seen) = FixedTargets::prepare(
                t,
                data.train.clone(),
                view,
                config.optim.batch_size,
                &device,
                &dir,
                config.teacher.fixed_cache_memory_mib,
            )?;
            teacher_train_images += seen;
            Some(targets)
        }
        _ => None,
    };

    // ---- Optimizer (and the resumed state) -------------------------------------------------
    let start = resumed.as_ref().map_or(0, |c| c.meta.step);
    let params = match &resumed {
        Some(ck) => checked_params(&student.cfg, &ck.params, &dir)?,
        None => student.params.clone(),
    };
    let (model, vars) = trainable(&student.cfg, &params)?;
    let kinds = param_specs(&student.cfg).into_iter().map(|s| (s.name, s.kind)).collect();
    let schedule = Schedule { warmup: config.optim.warmup_steps, total };
    let mut adam = Adam::new(&vars, &kinds, &config.optim, schedule)?;
    if let Some(ck) = &resumed {
        if ck.meta.total_steps != total {
            return Err(DistillError::Checkpoint {
                path: dir.join(CHECKPOINT_FILE),
                message: format!(
                    "planned for {} steps, this configuration gives {total}",
                    ck.meta.total_steps
                ),
            });
        }
        adam.load_state(&ck.optimizer, start)?;
    }
    tracing::debug!(start, total, steps_per_epoch, ?variant, "training plan");

    // On the CPU the student runs its own backward pass (candle's autograd spends as long
    // as the convolutions on bookkeeping there); autograd then differentiates the loss only.
    let manual_backward = model.supports_manual_backward();
    tracing::debug!(manual_backward, "student backward pass");

    // ---- Reporting -------------------------------------------------------------------------
    let mut metrics = MetricsLog::open(&dir, resumed.as_ref().map(|c| c.meta.step))?;
    let mut writer = CheckpointWriter::new(&dir, resumed.as_ref().map(|c| c.meta.step));
    let mut progress = Progress::new(&config.run.progress, start, total);
    let mut examples_seen = resumed.as_ref().map_or(0, |c| c.meta.examples_seen);
    let elapsed_before = resumed.as_ref().map_or(0.0, |c| c.meta.elapsed_s);
    let session = Instant::now();
    let mut evaluator = Evaluator::default();
    let mut last_eval = None;
    let mut window = Window::new();
    let (mut first_loss, mut last_loss) = (None, None);
    let mut train_seconds = 0.0;
    let mut images_this_session = 0u64;
    let mut last_checkpoint = Instant::now();
    let save = |writer: &mut CheckpointWriter, adam: &Adam, step: usize, seen: u64| {
        let meta = CheckpointMeta {
            step,
            epoch: step / steps_per_epoch,
            total_steps: total,
            examples_seen: seen,
            elapsed_s: elapsed_before + session.elapsed().as_secs_f64(),
        };
        let params: Vec<(String, Tensor)> =
            vars.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
        writer.write(&meta, &params, &adam.state())
    };

    // ---- The step loop -----------------------------------------------------------------------
    let mut batches = loader.iter_steps(start, Some(total));
    for step in start..total {
        let tick = Instant::now();
        let batch = batches.next().ok_or_else(|| {
            DistillError::Config(format!("the loader stopped before step {step}"))
        })??;
        let n = batch.len();
        let done = step + 1;
        let epoch = done as f64 / steps_per_epoch as f64;

        let inputs = step_inputs(batch, task, fixed_variant, classes.len(), &device)?;
        if let Some(hook) = opts.on_step.as_mut() {
            hook(&StepInputs {
                step,
                indices: &inputs.indices,
                student: &inputs.student,
                teacher: inputs.teacher.as_ref(),
            });
        }

        // With the manual pass the logits enter the loss as a leaf variable.
        let (logits, tape) = if manual_backward {
            let (logits, tape) = model.forward_train(&inputs.student)?;
            (Var::from_tensor(&logits)?.into_inner(), Some(tape))
        } else {
            (model.forward(&inputs.student)?, None)
        };
        let loss = match (task, &teacher) {
            (Task::Distill, Some(t)) => {
                let targets = match (&fixed, &inputs.teacher) {
                    (Some(f), _) => f.rows(&inputs.indices, &device)?,
                    (None, Some(x)) => {
                        teacher_train_images += n as u64;
                        t.logits(x)?
                    }
                    (None, None) => {
                        unreachable!("distillation without fixed targets has teacher inputs")
                    }
                };
                distill_loss(&logits, &targets, config.loss.temperature)?
            }
            _ => {
                let mut rows = inputs.soft_labels;
                smooth(&mut rows, classes.len(), config.loss.label_smoothing);
                let targets = Tensor::from_vec(rows, (n, classes.len()), &device)?;
                soft_cross_entropy(&logits, &targets)?
            }
        };

        // Guard rail: a non-finite loss stops the run before it can touch the weights.
        let loss_value = loss.to_scalar::<f32>()?;
        if !loss_value.is_finite() {
            progress.finish();
            return Err(DistillError::NonFiniteLoss {
                step: done,
                loss: loss_value,
                checkpoint: writer.last_good().map(|_| writer.path().to_path_buf()),
                last_good: writer.last_good(),
            });
        }
        let grads = loss.backward()?;
        let stats = match tape {
            Some(tape) => {
                let grad_logits = grads.get(&logits).ok_or_else(|| {
                    candle_core::Error::Msg("the loss has no gradient for the logits".into())
                })?;
                adam.step_named(&model.backward(tape, grad_logits)?)?
            }
            None => adam.step(&grads)?,
        };

        examples_seen += n as u64;
        images_this_session += n as u64;
        let step_seconds = tick.elapsed().as_secs_f64();
        train_seconds += step_seconds;
        window.add(f64::from(loss_value), n, step_seconds);

        // Logging.
        let evals_left = evals_left(done, total, config.run.eval_every, eval_loader.is_some());
        let log_now = config.run.log_every > 0 && done % config.run.log_every == 0;
        if log_now || done == total {
            let (mean_loss, images_per_s) = window.take();
            first_loss.get_or_insert(mean_loss);
            last_loss = Some(mean_loss);
            let grad_norm = f64::from(stats.grad_norm.to_scalar::<f32>()?);
            metrics.push(Record::Train {
                step: done,
                epoch,
                loss: mean_loss,
                lr: stats.lr,
                grad_norm,
                images_per_s,
            })?;
            let status = Status { step: done, epoch, loss: mean_loss, images_per_s, evals_left };
            progress.update(&status, true);
        } else {
            let status = Status {
                step: done,
                epoch,
                loss: f64::from(loss_value),
                images_per_s: window.rate(),
                evals_left,
            };
            progress.update(&status, false);
        }

        // Evaluation.
        let eval_now = config.run.eval_every > 0 && done % config.run.eval_every == 0;
        if let (true, Some(eval_loader)) = (eval_now && done < total, &eval_loader) {
            let began = Instant::now();
            let result =
                evaluator.run(&student.cfg, &vars, teacher.as_ref(), eval_loader, &device)?;
            progress.evaluated(began.elapsed());
            progress.println(&describe_eval(done, &result));
            metrics.push(Record::Eval { step: done, epoch, result: result.clone() })?;
            last_eval = Some(result);
            if config.run.plots {
                crate::plots::write_plots(&dir, metrics.records());
            }
        }

        // Checkpoint: periodic failures are reported and the run goes on (the previous
        // checkpoint is intact); a stop request must leave a checkpoint or fail.
        // A request that arrives during the last step simply lets the run finish.
        let stop = done < total && opts.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst));
        if stop {
            save(&mut writer, &adam, done, examples_seen)?;
            progress.finish();
            eprintln!(
                "interrupted after step {done} of {total}; checkpoint written to {}; continue with \
                 --resume {}",
                writer.path().display(),
                dir.display()
            );
            return Ok(Summary {
                outcome: Outcome::Interrupted,
                steps: done,
                total_steps: total,
                train_examples: data.train.len(),
                model_dir: None,
                eval: last_eval,
                first_loss,
                last_loss,
                teacher_train_images,
                teacher_eval_images: evaluator.teacher_images,
                steps_per_s: (done - start) as f64 / train_seconds.max(1e-9),
                images_per_s: images_this_session as f64 / train_seconds.max(1e-9),
            });
        }
        let by_steps = config.run.checkpoint_every > 0 && done % config.run.checkpoint_every == 0;
        let by_time = config.run.checkpoint_minutes > 0.0
            && last_checkpoint.elapsed().as_secs_f64() >= 60.0 * config.run.checkpoint_minutes;
        if (by_steps || by_time) && done < total {
            if let Err(e) = save(&mut writer, &adam, done, examples_seen) {
                tracing::warn!(error = %e, "checkpoint failed");
                progress.println(&format!("warning: {e}"));
            }
            last_checkpoint = Instant::now();
        }
    }
    drop(batches);

    // ---- End of the run -------------------------------------------------------------------
    if let Some(eval_loader) = &eval_loader {
        let result = evaluator.run(&student.cfg, &vars, teacher.as_ref(), eval_loader, &device)?;
        progress.println(&describe_eval(total, &result));
        let epoch = total as f64 / steps_per_epoch as f64;
        metrics.push(Record::Eval { step: total, epoch, result: result.clone() })?;
        last_eval = Some(result);
    }
    progress.finish();
    // The final checkpoint only lets a finished run be resumed with more steps; failing to
    // write it is reported, and the model folder below is what counts.
    if let Err(e) = save(&mut writer, &adam, total, examples_seen) {
        tracing::warn!(error = %e, "final checkpoint failed");
        eprintln!("warning: {e}");
    }

    let model_dir = dir.join("model");
    let final_params: Params =
        vars.iter().map(|(k, v)| (k.clone(), v.as_tensor().detach())).collect();
    let mut pretrained = student.pretrained.clone();
    pretrained.input_size = [3, student_view.height as usize, student_view.width as usize];
    save_model_folder(&model_dir, &student.cfg, &pretrained, Some(&classes), &final_params)?;
    if config.run.plots {
        crate::plots::write_plots(&dir, metrics.records());
    }
    let report = loader.failure_report();
    if !report.failures.is_empty() {
        eprintln!("{report}");
    }

    let done_now = total - start;
    Ok(Summary {
        outcome: Outcome::Finished,
        steps: total,
        total_steps: total,
        train_examples: data.train.len(),
        model_dir: Some(model_dir),
        eval: last_eval,
        first_loss,
        last_loss,
        teacher_train_images,
        teacher_eval_images: evaluator.teacher_images,
        steps_per_s: done_now as f64 / train_seconds.max(1e-9),
        images_per_s: images_this_session as f64 / train_seconds.max(1e-9),
    })
}

/// Prepares the run folder: a fresh run refuses a folder that already holds one; a resumed
/// run reads its checkpoint and checks that the task matches. Writes the effective config.
fn open_run_folder(
    dir: &Path,
    task: Task,
    config: &RunConfig,
    resume: bool,
    device: &Device,
) -> Result<Option<crate::checkpoint::Checkpoint>, DistillError> {
    let info_path = dir.join("run.json");
    let ckpt_path = dir.join(CHECKPOINT_FILE);
    let resumed = if resume {
        let info: RunInfo = std::fs::read_to_string(&info_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .ok_or_else(|| DistillError::Checkpoint {
                path: info_path.clone(),
                message: "missing or unreadable: is this a funmatch run folder?".into(),
            })?;
        if info.task != task {
            return Err(DistillError::Config(format!(
                "{} is a {:?} run; resume it with the matching command",
                dir.display(),
                info.task
            )));
        }
        if !ckpt_path.is_file() {
            return Err(DistillError::Checkpoint {
                path: ckpt_path,
                message: "no checkpoint to resume from (the run stopped before its first)".into(),
            });
        }
        let ck = read_checkpoint(&ckpt_path, device)?;
        tracing::debug!(step = ck.meta.step, "resuming");
        Some(ck)
    } else {
        if ckpt_path.exists() || info_path.exists() {
            return Err(DistillError::Config(format!(
                "{} already holds a run; continue it with --resume or choose another folder",
                dir.display()
            )));
        }
        let text = serde_json::to_string_pretty(&RunInfo { task }).expect("run info serialises");
        std::fs::write(&info_path, text + "\n").map_err(|e| DistillError::io(&info_path, e))?;
        None
    };
    let config_path = dir.join("config.toml");
    std::fs::write(&config_path, config.to_toml())
        .map_err(|e| DistillError::io(&config_path, e))?;
    Ok(resumed)
}

/// The training loader for a task and variant.
fn train_loader_config(
    task: Task,
    config: &RunConfig,
    student: &ViewConfig,
    teacher: Option<&ViewConfig>,
) -> Result<LoaderConfig, DistillError> {
    let mut lc = LoaderConfig::train(config.optim.batch_size, student.clone());
    lc.seed = config.seed;
    lc.workers = config.data.workers;
    lc.prefetch = config.data.prefetch;
    lc.crop_area = (config.data.crop_area[0], config.data.crop_area[1]);
    match task {
        Task::Supervised => lc.mixup = config.supervised_mixup(),
        Task::Distill => {
            lc.mixup = config.distill_mixup()?;
            // Training views never use crop_pct (an eval-view setting); a teacher view that
            // differs only there is the student's view, and gets the very same tensor.
            lc.teacher = teacher
                .filter(|t| (*t).clone().with_crop_pct(student.crop_pct) != *student)
                .cloned();
            lc.mode = match config.loss.variant {
                Variant::FunctionMatching | Variant::Consistent => ViewMode::Shared,
                Variant::Independent => ViewMode::Independent,
                // The kept teacher outputs replace the teacher's view: the loader makes
                // student views only.
                Variant::Fixed => {
                    lc.teacher = None;
                    ViewMode::Shared
                }
            };
        }
    }
    Ok(lc)
}

/// A step's tensors.
struct Inputs {
    indices: Vec<usize>,
    student: Tensor,
    teacher: Option<Tensor>,
    soft_labels: Vec<f32>,
}

/// Moves a batch's buffers into tensors (no copy on the CPU). With shared views at one
/// resolution the teacher gets the very same tensor as the student.
fn step_inputs(
    batch: Batch,
    task: Task,
    fixed: bool,
    classes: usize,
    device: &Device,
) -> Result<Inputs, DistillError> {
    let soft_labels = match task {
        Task::Supervised => batch.soft_labels(classes),
        Task::Distill => Vec::new(),
    };
    let Batch { indices, student, teacher, .. } = batch;
    let student = into_tensor(student, device)?;
    let teacher = match (task, fixed, teacher) {
        (Task::Distill, false, Some(t)) => Some(into_tensor(t, device)?),
        (Task::Distill, false, None) => Some(student.clone()),
        _ => None,
    };
    Ok(Inputs { indices, student, teacher, soft_labels })
}

fn into_tensor(images: Images, device: &Device) -> candle_core::Result<Tensor> {
    let [n, c, h, w] = images.shape();
    Tensor::from_vec(images.data, (n, c, h, w), device)
}

/// How the student starts.
struct StudentInit {
    cfg: BitConfig,
    pretrained: PretrainedCfg,
    params: Params,
}

fn build_student(
    c: &StudentConfig,
    classes: usize,
    seed: u64,
    device: &Device,
    resolver: Option<&ModelResolver>,
) -> Result<StudentInit, DistillError> {
    let scratch = |cfg: BitConfig| -> Result<StudentInit, DistillError> {
        cfg.validate().map_err(|m| DistillError::Config(format!("student: {m}")))?;
        if c.image_size == 0 {
            return Err(DistillError::Config(
                "student.image_size must be set for a student trained from scratch".into(),
            ));
        }
        let s = c.image_size as usize;
        let pretrained = PretrainedCfg {
            input_size: [3, s, s],
            crop_pct: c.crop_pct,
            ..PretrainedCfg::default()
        };
        let params = init_params(&cfg, seed, device)?;
        Ok(StudentInit { cfg, pretrained, params })
    };
    if c.arch == "custom" {
        let mut cfg = BitConfig::bit(&c.layers, 1, classes);
        cfg.channels = c.channels.clone();
        cfg.stem_width = c.stem_width;
        cfg.stem = c.stem;
        cfg.groups = c.groups;
        cfg.bottle_ratio = c.bottle_ratio;
        return scratch(cfg);
    }
    if let Some(arch) = find_arch(&c.arch) {
        return scratch(arch.config(classes));
    }
    let loaded = load_model_arg(&c.arch, device, resolver)?;
    if loaded.config.num_classes != classes {
        return Err(DistillError::Config(format!(
            "student {} has {} classes, the data has {classes}",
            c.arch, loaded.config.num_classes
        )));
    }
    Ok(StudentInit { cfg: loaded.config, pretrained: loaded.pretrained, params: loaded.params })
}

/// The checkpoint's parameters, checked against the student's architecture.
fn checked_params(
    cfg: &BitConfig,
    params: &BTreeMap<String, Tensor>,
    dir: &Path,
) -> Result<Params, DistillError> {
    let path = dir.join(CHECKPOINT_FILE);
    let mut out = Params::new();
    for spec in param_specs(cfg) {
        let t = params.get(&spec.name).ok_or_else(|| DistillError::Checkpoint {
            path: path.clone(),
            message: format!("no parameter {}", spec.name),
        })?;
        if t.dims() != spec.shape.as_slice() {
            return Err(DistillError::Checkpoint {
                path: path.clone(),
                message: format!(
                    "{}: expected shape {:?}, found {:?}",
                    spec.name,
                    spec.shape,
                    t.dims()
                ),
            });
        }
        out.insert(spec.name, t.clone());
    }
    Ok(out)
}

/// Loss and throughput since the last log line.
struct Window {
    loss_sum: f64,
    steps: usize,
    images: usize,
    /// Time spent in the window's steps (loading the batch included), without the
    /// evaluations and checkpoints in between, so the rate after an evaluation is the
    /// training rate.
    seconds: f64,
}

impl Window {
    fn new() -> Self {
        Self { loss_sum: 0.0, steps: 0, images: 0, seconds: 0.0 }
    }

    fn add(&mut self, loss: f64, images: usize, seconds: f64) {
        self.loss_sum += loss;
        self.steps += 1;
        self.images += images;
        self.seconds += seconds;
    }

    fn rate(&self) -> f64 {
        self.images as f64 / self.seconds.max(1e-9)
    }

    /// Mean loss and images/s, then starts a new window.
    fn take(&mut self) -> (f64, f64) {
        let out = (self.loss_sum / self.steps.max(1) as f64, self.rate());
        *self = Window::new();
        out
    }
}

/// Held-out evaluation, keeping the teacher's outputs after the first pass (the eval view
/// is deterministic and the teacher frozen, so they never change).
#[derive(Default)]
struct Evaluator {
    teacher_logits: Option<Vec<Tensor>>,
    teacher_top1: Option<f64>,
    teacher_images: u64,
}

impl Evaluator {
    fn run(
        &mut self,
        cfg: &BitConfig,
        vars: &BTreeMap<String, candle_core::Var>,
        teacher: Option<&Teacher>,
        loader: &Loader,
        device: &Device,
    ) -> Result<EvalResult, DistillError> {
        // A frozen copy: no gradient graph, weights standardized once.
        let params: Params =
            vars.iter().map(|(k, v)| (k.clone(), v.as_tensor().detach())).collect();
        let student = ResNetV2::new(cfg, &params, Mode::Frozen)?;
        let first_pass = self.teacher_logits.is_none();
        let mut kept = Vec::new();
        let (mut n, mut correct, mut t_correct, mut agree) = (0usize, 0usize, 0usize, 0usize);
        let (mut ce, mut kl) = (0f64, 0f64);

        for (b, batch) in loader.epoch(0).enumerate() {
            let batch = batch?;
            let labels = batch.labels.clone();
            let Batch { student: s_images, teacher: t_images, .. } = batch;
            let x = into_tensor(s_images, device)?;
            let logits = student.forward(&x)?;
            let pred = argmax(&logits)?;
            let log_p: Vec<Vec<f32>> = log_softmax(&logits)?.to_vec2()?;
            for ((p, &l), row) in pred.iter().zip(&labels).zip(&log_p) {
                correct += usize::from(*p == l);
                ce -= f64::from(row[l as usize]);
            }

            if let Some(t) = teacher {
                let t_logits = match &self.teacher_logits {
                    Some(cached) => cached[b].clone(),
                    None => {
                        let tx = match t_images {
                            Some(images) => into_tensor(images, device)?,
                            None => x.clone(),
                        };
                        self.teacher_images += labels.len() as u64;
                        t.logits(&tx)?
                    }
                };
                let t_pred = argmax(&t_logits)?;
                for ((tp, sp), &l) in t_pred.iter().zip(&pred).zip(&labels) {
                    t_correct += usize::from(*tp == l);
                    agree += usize::from(tp == sp);
                }
                kl +=
                    kl_per_example(&logits, &t_logits)?.iter().map(|&v| f64::from(v)).sum::<f64>();
                if first_pass {
                    kept.push(t_logits);
                }
            }
            n += labels.len();
        }

        let share = |k: usize| k as f64 / n.max(1) as f64;
        if teacher.is_some() && first_pass {
            self.teacher_logits = Some(kept);
            self.teacher_top1 = Some(share(t_correct));
        }
        let distilling = teacher.is_some();
        Ok(EvalResult {
            examples: n,
            student_top1: share(correct),
            teacher_top1: self.teacher_top1,
            agreement: distilling.then(|| share(agree)),
            kl: distilling.then(|| kl / n.max(1) as f64),
            ce: ce / n.max(1) as f64,
        })
    }
}

fn describe_eval(step: usize, r: &EvalResult) -> String {
    let mut line = format!("eval  step {step:>8}  student top-1 {:>6.2}%", 100.0 * r.student_top1);
    if let Some(t) = r.teacher_top1 {
        line += &format!("  teacher top-1 {:>6.2}%", 100.0 * t);
    }
    if let Some(a) = r.agreement {
        line += &format!("  agreement {:>6.2}%", 100.0 * a);
    }
    if let Some(k) = r.kl {
        line += &format!("  KL {k:.4}");
    }
    line
}

/// Installs a Ctrl-C (SIGINT/SIGTERM) handler and returns the flag it raises, for
/// [`RunOptions::stop`]: the run then checkpoints after the current step and returns. A
/// second Ctrl-C ends the process at once (exit status 130).
pub fn stop_on_ctrl_c() -> Result<Arc<AtomicBool>, DistillError> {
    let flag = Arc::new(AtomicBool::new(false));
    let raised = flag.clone();
    ctrlc::set_handler(move || {
        if raised.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping after this step and writing a checkpoint (Ctrl-C again to quit now)");
    })
    .map_err(|e| DistillError::Config(format!("cannot install the Ctrl-C handler: {e}")))?;
    Ok(flag)
}
