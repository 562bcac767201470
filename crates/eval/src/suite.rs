//! Many models on many sets: the teacher first on each set (its logits kept for the
//! agreement metrics), then every student, one result row per (model, set).

use crate::results::{now_utc, round, ResultRow};
use crate::runner::{evaluate, EvalModel, RunOptions, SetRun};
use crate::sets::EvalSet;
use crate::EvalError;

/// Evaluates `teacher` (when given) and every model of `models` on every set, calling
/// `on_row` as each row is ready (so a caller can print or save as it goes).
///
/// The teacher's own row comes first on each set; a model that is also the teacher is not
/// run twice. A failure of one (model, set) stops the suite with that error.
pub fn run_suite(
    models: &[EvalModel],
    teacher: Option<&EvalModel>,
    sets: &[EvalSet],
    opts: &RunOptions,
    on_row: &mut dyn FnMut(&ResultRow, &SetRun),
) -> Result<Vec<ResultRow>, EvalError> {
    let mut rows = Vec::new();
    for set in sets {
        let teacher_run = match teacher {
            Some(t) => {
                let run = evaluate(t, set, None, opts, true)?;
                let row = result_row(t, set, &run, None);
                on_row(&row, &run);
                rows.push(row);
                Some(run)
            }
            None => None,
        };
        let teacher_outputs = teacher_run.as_ref().and_then(|r| r.outputs.as_ref());
        for model in models {
            if teacher.is_some_and(|t| t.name == model.name) {
                continue;
            }
            let run = evaluate(model, set, teacher_outputs, opts, false)?;
            let row = result_row(model, set, &run, teacher.map(|t| t.name.as_str()));
            on_row(&row, &run);
            rows.push(row);
        }
    }
    Ok(rows)
}

/// The table row of one run, rounded as timm rounds (4 decimals for accuracies, 2 for the
/// parameter count in millions).
pub fn result_row(
    model: &EvalModel,
    set: &EvalSet,
    run: &SetRun,
    teacher: Option<&str>,
) -> ResultRow {
    let m = &run.metrics;
    let agreement = m.agreement.as_ref();
    ResultRow {
        model: model.name.clone(),
        img_size: model.view.height,
        top1: round(m.top1, 4),
        top1_err: round(100.0 - m.top1, 4),
        top5: round(m.top5, 4),
        top5_err: round(100.0 - m.top5, 4),
        param_count: round(model.param_count as f64 / 1e6, 2),
        crop_pct: round(f64::from(model.view.crop_pct), 4),
        interpolation: match model.view.interpolation {
            funmatch_data::Interpolation::Bilinear => "bilinear",
            funmatch_data::Interpolation::Bicubic => "bicubic",
        }
        .to_string(),
        set: set.name().to_string(),
        gmacs: round(model.net.config().forward_macs(model.view.height as usize) as f64 / 1e9, 4),
        images: m.images,
        excluded: m.excluded,
        failed: run.failures.failures.len(),
        loss: round(m.loss, 6),
        images_per_s: round(run.images_per_s, 2),
        teacher: agreement.and(teacher.map(String::from)),
        kl: agreement.map(|a| round(a.kl, 6)),
        agree_top1: agreement.map(|a| round(a.top1, 4)),
        agree_top5: agreement.map(|a| round(a.top5, 4)),
        seconds: round(run.seconds, 3),
        evaluated_at: now_utc(),
        model_path: model.path.display().to_string(),
    }
}
