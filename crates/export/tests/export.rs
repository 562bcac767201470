//! Exported folders reload with the same logits, in both layouts, and bad requests are
//! refused without touching what the user had.

use candle_core::{Device, Tensor};
use funmatch_export::{export, read_run, ExportError, ExportOptions, Format, WeightDtype};
use funmatch_models::{
    init_params, load_model, BitConfig, LoadedModel, Mode, PretrainedCfg, ResNetV2, StemKind,
    WeightFormat,
};
use std::path::Path;

fn model(stem: StemKind) -> LoadedModel {
    let mut cfg = BitConfig::bit(&[1, 1], 1, 3);
    cfg.channels = vec![32, 64];
    cfg.stem_width = 16;
    cfg.groups = 8;
    cfg.stem = stem;
    loaded(cfg)
}

/// A model timm builds: resnetv2_50x1_bit's depths, BiT's stem, 32 GroupNorm groups, half
/// the widths (timm takes `channels` and `stem_chs` as model arguments).
fn timm_model() -> LoadedModel {
    let mut cfg = BitConfig::bit(&[3, 4, 6, 3], 1, 3);
    cfg.channels = vec![128, 256, 512, 1024];
    cfg.stem_width = 32;
    loaded(cfg)
}

fn loaded(cfg: BitConfig) -> LoadedModel {
    LoadedModel {
        params: init_params(&cfg, 1, &Device::Cpu).unwrap(),
        config: cfg,
        pretrained: PretrainedCfg { input_size: [3, 32, 32], crop_pct: 1.0, ..Default::default() },
        labels: Some(vec!["cat".into(), "dog".into(), "bird".into()]),
        format: WeightFormat::Timm,
        weights_path: "memory".into(),
        architecture: None,
    }
}

fn options(format: Format, dtype: WeightDtype) -> ExportOptions {
    ExportOptions { format, dtype, name: "tiny-student".into(), run: None }
}

fn logits(m: &LoadedModel) -> Tensor {
    let x = Tensor::randn(0f32, 1., (2, 3, 32, 32), &Device::Cpu).unwrap();
    let x = (x * 0.0).unwrap().affine(1.0, 0.25).unwrap();
    ResNetV2::new(&m.config, &m.params, Mode::Frozen).unwrap().forward(&x).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
}

#[test]
fn timm_export_reloads_with_identical_logits_and_a_model_card() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("student");
    let m = timm_model();
    let report = export(&m, &out, &options(Format::Timm, WeightDtype::F32)).unwrap();
    assert_eq!(report.max_logit_diff, 0.0);
    assert!(report.timm_loadable);

    let back = load_model(&out, &Device::Cpu).unwrap();
    assert_eq!(back.format, WeightFormat::Timm);
    assert_eq!(max_diff(&logits(&m), &logits(&back)), 0.0);
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(card.starts_with("---\nlibrary_name: timm\n"), "{card}");
    assert!(card.contains("# tiny-student"), "{card}");
    // Only staging folders would be left behind on failure; none on success.
    let leftovers: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("student")]);
}

#[test]
fn transformers_export_uses_transformers_names_and_reloads_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hf");
    let m = model(StemKind::Bit);
    export(&m, &out, &options(Format::Transformers, WeightDtype::F32)).unwrap();

    let back = load_model(&out, &Device::Cpu).unwrap();
    assert_eq!(back.format, WeightFormat::Transformers);
    assert_eq!(back.labels, m.labels);
    assert_eq!(back.pretrained, m.pretrained);
    assert_eq!(max_diff(&logits(&m), &logits(&back)), 0.0);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "bit");
    assert_eq!(config["id2label"]["1"], "dog");
}

#[test]
fn half_precision_exports_stay_close_to_the_source() {
    for dtype in [WeightDtype::F16, WeightDtype::BF16] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("half");
        let m = model(StemKind::Small);
        let report = export(&m, &out, &options(Format::Timm, dtype)).unwrap();
        assert!(report.max_logit_diff > 0.0, "{dtype:?} should round the weights");
        let bytes = std::fs::metadata(out.join("model.safetensors")).unwrap().len();
        let params: usize = m.params.values().map(|t| t.elem_count()).sum();
        assert!(bytes < (params * 4) as u64, "{dtype:?}: {bytes} bytes for {params} parameters");
    }
}

#[test]
fn export_refuses_an_existing_folder_and_models_transformers_cannot_express() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("taken");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "keep me").unwrap();
    let err =
        export(&model(StemKind::Bit), &out, &options(Format::Timm, WeightDtype::F32)).unwrap_err();
    assert!(matches!(err, ExportError::Exists(_)), "{err}");
    assert_eq!(std::fs::read_to_string(out.join("notes.txt")).unwrap(), "keep me");

    let out = dir.path().join("small-stem");
    let err =
        export(&model(StemKind::Small), &out, &options(Format::Transformers, WeightDtype::F32))
            .unwrap_err();
    assert!(err.to_string().contains("small 3×3 stem"), "{err}");
    assert!(!out.exists());

    // The card of a small-stem timm export says timm cannot build it.
    export(&model(StemKind::Small), &out, &options(Format::Timm, WeightDtype::F32)).unwrap();
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(card.contains("timm cannot express this variant"), "{card}");
    // ... and does not send Hub users to timm's loading snippet.
    assert!(card.starts_with("---\nlibrary_name: funmatch\n"), "{card}");
}

#[test]
fn run_folder_gives_the_card_its_recipe_and_latest_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path();
    let m = model(StemKind::Bit);
    funmatch_models::save_model_folder(
        &run.join("model"),
        &m.config,
        &m.pretrained,
        m.labels.as_deref(),
        &m.params,
    )
    .unwrap();
    std::fs::write(run.join("config.toml"), "[data]\ntrain = \"fashion-mnist\"\n[teacher]\nmodels = [\"teacher-a\"]\n[loss]\nvariant = \"function-matching\"\n").unwrap();
    std::fs::write(run.join("run.json"), "{\"task\": \"Distill\"}").unwrap();
    std::fs::write(
        run.join("metrics.jsonl"),
        "{\"kind\":\"eval\",\"step\":10,\"student_top1\":0.5,\"ce\":1.0}\n{\"kind\":\"train\",\"step\":20,\"loss\":0.3}\n{\"kind\":\"eval\",\"step\":20,\"student_top1\":0.875,\"agreement\":0.9,\"ce\":0.4}\n",
    )
    .unwrap();

    let (model_dir, info) = read_run(run).unwrap();
    let loaded = load_model(&model_dir, &Device::Cpu).unwrap();
    let out = dir.path().join("export");
    let opts = ExportOptions { run: Some(info), ..options(Format::Timm, WeightDtype::F32) };
    export(&loaded, &out, &opts).unwrap();
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    for needle in [
        "datasets:\n  - \"zalando-datasets/fashion_mnist\"",
        "resize the short side to 32 px (bicubic), centre crop 32×32",
        "knowledge-distillation",
        "teacher-a",
        "| student_top1 | 0.8750 |",
        "| agreement | 0.9000 |",
        "```toml",
    ] {
        assert!(card.contains(needle), "card lacks {needle:?}:\n{card}");
    }
    assert!(!card.contains("0.5000"), "the card must use the latest evaluation:\n{card}");
}

#[test]
fn run_folder_without_a_finished_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = read_run(dir.path()).unwrap_err();
    assert!(err.to_string().contains("no finished model"), "{err}");
    let _ = Path::new("unused");
}
