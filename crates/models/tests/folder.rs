//! Model folders written by us load back to the same model, and bad folders are refused with
//! errors that name the file and every offending tensor.

use candle_core::{Device, Tensor};
use funmatch_models::{
    init_params, load_model, save_model_folder, timm_equivalent, BitConfig, Mode, ModelError,
    PretrainedCfg, ResNetV2, StemKind,
};

fn small_config(stem: StemKind) -> BitConfig {
    let mut cfg = BitConfig::bit(&[1, 1], 1, 4);
    cfg.channels = vec![32, 64];
    cfg.stem_width = 16;
    cfg.groups = 8;
    cfg.stem = stem;
    cfg
}

#[test]
fn saved_folder_reloads_with_identical_logits_and_settings() {
    // Stage widths whose bottlenecks round up ([16, 32] → middles 8 and 8) keep their shape.
    let mut rounded = small_config(StemKind::Small);
    rounded.channels = vec![16, 32];
    rounded.groups = 4;
    let configs = [small_config(StemKind::Bit), small_config(StemKind::Small), rounded];
    for cfg in configs {
        let stem = cfg.stem;
        let dir = tempfile::tempdir().unwrap();
        let params = init_params(&cfg, 3, &Device::Cpu).unwrap();
        let pre = PretrainedCfg { input_size: [3, 28, 28], crop_pct: 1.0, ..Default::default() };
        let labels: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        save_model_folder(dir.path(), &cfg, &pre, Some(&labels), &params).unwrap();

        let loaded = load_model(dir.path(), &Device::Cpu).unwrap();
        assert_eq!(loaded.config, cfg, "{stem:?}");
        assert_eq!(loaded.pretrained, pre);
        assert_eq!(loaded.labels.as_deref(), Some(labels.as_slice()));

        let x = Tensor::randn(0f32, 1., (2, 3, 28, 28), &Device::Cpu).unwrap();
        let a = ResNetV2::new(&cfg, &params, Mode::Frozen).unwrap().forward(&x).unwrap();
        let b = ResNetV2::new(&loaded.config, &loaded.params, Mode::Frozen)
            .unwrap()
            .forward(&x)
            .unwrap();
        let diff = (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }
}

#[test]
fn registry_architectures_are_written_as_timm_names() {
    let cfg = funmatch_models::find_arch("resnetv2_152x2_bit").unwrap().config(1000);
    let (name, args) = timm_equivalent(&cfg).unwrap();
    assert_eq!(name, "resnetv2_152x2_bit");
    assert!(args.get("channels").is_none(), "standard widths need no override: {args}");
    assert!(timm_equivalent(&small_config(StemKind::Small)).is_none());
}

#[test]
fn mismatched_weights_list_every_missing_unexpected_and_misshapen_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(StemKind::Bit);
    let mut params = init_params(&cfg, 3, &Device::Cpu).unwrap();
    save_model_folder(dir.path(), &cfg, &PretrainedCfg::default(), None, &params).unwrap();
    params.remove("norm.bias");
    params.remove("stages.1.blocks.0.conv2.weight");
    params.insert(
        "extra.weight".into(),
        Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    params.insert(
        "head.fc.bias".into(),
        Tensor::zeros(7, candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    let path = dir.path().join("model.safetensors");
    let params: std::collections::HashMap<_, _> = params.into_iter().collect();
    candle_core::safetensors::save(&params, &path).unwrap();

    let err = load_model(dir.path(), &Device::Cpu).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ModelError::Tensors { .. }), "{msg}");
    for needle in [
        "model.safetensors",
        "norm.bias",
        "stages.1.blocks.0.conv2.weight",
        "extra.weight",
        "head.fc.bias",
        "[4]",
        "[7]",
    ] {
        assert!(msg.contains(needle), "error lacks {needle:?}: {msg}");
    }
}

#[test]
fn corrupt_safetensors_header_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let mut bytes = (u64::MAX / 2).to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(&path, bytes).unwrap();
    let msg = load_model(&path, &Device::Cpu).unwrap_err().to_string();
    assert!(msg.contains("model.safetensors") && msg.contains("header"), "{msg}");
}

#[test]
fn folder_with_only_pickle_weights_is_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pytorch_model.bin"), b"not read").unwrap();
    let msg = load_model(dir.path(), &Device::Cpu).unwrap_err().to_string();
    assert!(msg.contains("pickle") && msg.contains("safetensors"), "{msg}");
}

#[test]
fn transformers_preprocessor_config_sets_the_eval_view() {
    let dir = tempfile::tempdir().unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/parity/transformers_bit");
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(file), dir.path().join(file)).unwrap();
    }
    let preprocessor = r#"{"do_resize": true, "size": {"shortest_edge": 448}, "resample": 2,
        "do_center_crop": true, "crop_size": {"height": 384, "width": 384},
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.5, 0.5]}"#;
    std::fs::write(dir.path().join("preprocessor_config.json"), preprocessor).unwrap();
    let model = load_model(dir.path(), &Device::Cpu).unwrap();
    assert_eq!(model.pretrained.input_size, [3, 384, 384]);
    assert!((model.pretrained.crop_pct - 384.0 / 448.0).abs() < 1e-12);
    assert_eq!(model.pretrained.interpolation, funmatch_models::Interpolation::Bilinear);
    assert_eq!(model.pretrained.std, [0.25, 0.5, 0.5]);

    std::fs::write(dir.path().join("preprocessor_config.json"), r#"{"resample": 0}"#).unwrap();
    let msg = load_model(dir.path(), &Device::Cpu).unwrap_err().to_string();
    assert!(msg.contains("preprocessor_config.json") && msg.contains("resample 0"), "{msg}");
}

#[test]
fn sharded_safetensors_load_like_a_single_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(StemKind::Bit);
    let params = init_params(&cfg, 4, &Device::Cpu).unwrap();
    save_model_folder(dir.path(), &cfg, &PretrainedCfg::default(), None, &params).unwrap();
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();

    // Two shards: the head in one, everything else in the other.
    let mut weight_map = serde_json::Map::new();
    let (mut head, mut body) = (std::collections::HashMap::new(), std::collections::HashMap::new());
    for (name, t) in &params {
        let shard = if name.starts_with("head.") {
            "model-00002-of-00002.safetensors"
        } else {
            "model-00001-of-00002.safetensors"
        };
        weight_map.insert(name.clone(), serde_json::json!(shard));
        if name.starts_with("head.") {
            head.insert(name.clone(), t.clone())
        } else {
            body.insert(name.clone(), t.clone())
        };
    }
    candle_core::safetensors::save(&body, dir.path().join("model-00001-of-00002.safetensors"))
        .unwrap();
    candle_core::safetensors::save(&head, dir.path().join("model-00002-of-00002.safetensors"))
        .unwrap();
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    std::fs::write(dir.path().join("model.safetensors.index.json"), index.to_string()).unwrap();

    let loaded = load_model(dir.path(), &Device::Cpu).unwrap();
    assert_eq!(loaded.config, cfg);
    for (name, t) in &params {
        let diff = (t - &loaded.params[name])
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0, "{name}");
    }

    // A shard that does not hold what the index says is named in the error.
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    candle_core::safetensors::save(
        &std::collections::HashMap::from([(
            "x".to_string(),
            Tensor::zeros(1, candle_core::DType::F32, &Device::Cpu).unwrap(),
        )]),
        dir.path().join("model-00002-of-00002.safetensors"),
    )
    .unwrap();
    let msg = load_model(dir.path(), &Device::Cpu).unwrap_err().to_string();
    assert!(msg.contains("model.safetensors.index.json") && msg.contains("head.fc"), "{msg}");
}
