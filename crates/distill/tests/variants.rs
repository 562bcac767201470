//! The paper's teacher variants, checked on the inputs the trainer hands to the models:
//! shared views give the teacher the student's very tensor, independent views another one,
//! and the fixed teacher runs once per training image over the whole run.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use candle_core::{Device, Tensor};
use funmatch_distill::{train, Outcome, RunConfig, RunOptions, Task};
use funmatch_models::{init_params, save_model_folder, BitConfig, PretrainedCfg, StemKind};

/// A tiny random teacher for Fashion-MNIST's 10 classes, written as a model folder.
fn teacher(dir: &Path, classes: usize) -> String {
    let mut cfg = BitConfig::bit(&[1], 1, classes);
    cfg.channels = vec![32];
    cfg.stem_width = 8;
    cfg.stem = StemKind::Small;
    cfg.groups = 4;
    let params = init_params(&cfg, 7, &Device::Cpu).unwrap();
    let pretrained = PretrainedCfg { input_size: [3, 28, 28], crop_pct: 1.0, ..Default::default() };
    let out = dir.join("teacher");
    save_model_folder(&out, &cfg, &pretrained, None, &params).unwrap();
    out.display().to_string()
}

fn config(teacher: &str, variant: &str, steps: usize) -> RunConfig {
    RunConfig::load(
        None,
        None,
        &[
            format!("teacher.models=[{teacher:?}]"),
            format!("loss.variant={variant:?}"),
            "data.limit=40".into(),
            "data.eval=\"none\"".into(),
            "data.workers=1".into(),
            "student.layers=[1]".into(),
            "student.channels=[16]".into(),
            "student.stem_width=8".into(),
            "student.groups=4".into(),
            "optim.batch_size=16".into(),
            "optim.warmup_steps=1".into(),
            format!("optim.steps={steps}"),
            "run.progress=\"quiet\"".into(),
            "run.plots=false".into(),
            "run.checkpoint_every=0".into(),
        ],
    )
    .unwrap()
}

/// What the hook saw at each step: (student input, teacher input).
type Seen = Rc<RefCell<Vec<(Tensor, Option<Tensor>)>>>;

fn run(
    config: &RunConfig,
    dir: &Path,
) -> (funmatch_distill::Summary, Vec<(Tensor, Option<Tensor>)>) {
    let seen: Seen = Rc::default();
    let sink = seen.clone();
    let options = RunOptions {
        run_dir: dir.to_path_buf(),
        on_step: Some(Box::new(move |s| {
            sink.borrow_mut().push((s.student.clone(), s.teacher.cloned()));
        })),
        ..Default::default()
    };
    let summary = train(Task::Distill, config, options).unwrap();
    assert_eq!(summary.outcome, Outcome::Finished);
    let seen = seen.borrow().clone();
    (summary, seen)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap()
}

#[test]
fn shared_views_give_the_teacher_the_student_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let teacher = teacher(tmp.path(), 10);
    for variant in ["consistent", "function-matching"] {
        let (summary, seen) = run(&config(&teacher, variant, 2), &tmp.path().join(variant));
        assert_eq!(seen.len(), 2, "{variant}: steps seen");
        for (step, (student, teacher)) in seen.iter().enumerate() {
            let teacher = teacher.as_ref().expect("the teacher runs online");
            assert_eq!(teacher.id(), student.id(), "{variant} step {step}: not the same tensor");
        }
        assert_eq!(summary.teacher_train_images, 32, "{variant}: teacher images of 2 steps");
    }
}

#[test]
fn independent_views_give_the_teacher_another_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let teacher = teacher(tmp.path(), 10);
    let (_, seen) = run(&config(&teacher, "independent", 2), &tmp.path().join("run"));
    for (step, (student, teacher)) in seen.iter().enumerate() {
        let teacher = teacher.as_ref().expect("the teacher runs online");
        assert_ne!(teacher.id(), student.id(), "step {step}");
        assert_eq!(teacher.dims(), student.dims());
        let diff = max_abs_diff(teacher, student);
        assert!(diff > 0.1, "step {step}: teacher and student views differ by only {diff}");
    }
}

#[test]
fn fixed_teacher_runs_once_per_image_over_the_whole_run() {
    let tmp = tempfile::tempdir().unwrap();
    let teacher = teacher(tmp.path(), 10);
    // About 40 images in batches of 16: 6 steps are 3 epochs.
    let (summary, seen) = run(&config(&teacher, "fixed", 6), &tmp.path().join("run"));
    assert_eq!(seen.len(), 6);
    assert!(seen.iter().all(|(_, t)| t.is_none()), "the teacher ran during a step");
    assert!(
        6 * 16 >= 2 * summary.train_examples,
        "{} examples: not several epochs",
        summary.train_examples
    );
    assert_eq!(
        summary.teacher_train_images, summary.train_examples as u64,
        "teacher images over 3 epochs"
    );
}

#[test]
fn different_resolutions_give_the_teacher_its_own_size() {
    let tmp = tempfile::tempdir().unwrap();
    let teacher = teacher(tmp.path(), 10);
    let mut cfg = config(&teacher, "consistent", 1);
    cfg.teacher.image_size = 36;
    let (_, seen) = run(&cfg, &tmp.path().join("run"));
    let (student, teacher) = &seen[0];
    assert_eq!(student.dims(), &[16, 3, 28, 28]);
    assert_eq!(teacher.as_ref().unwrap().dims(), &[16, 3, 36, 36]);
}
