//! End-to-end tests of `funmatch predict` on the committed parity fixtures and on a JPEG.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{Device, Tensor};

fn funmatch(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_funmatch")).args(args).output().unwrap();
    out
}

fn describe(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity").join(case)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
}

#[test]
fn predict_writes_the_reference_logits_for_preprocessed_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("logits.safetensors");
    for case in ["timm_small", "transformers_bit"] {
        let io = fixture(case).join("io.safetensors");
        let out = funmatch(&[
            "predict",
            fixture(case).to_str().unwrap(),
            io.to_str().unwrap(),
            "--output",
            out_file.to_str().unwrap(),
            "--batch-size",
            "1",
        ]);
        assert!(out.status.success(), "{}", describe(&out));
        let ours = candle_core::safetensors::load(&out_file, &Device::Cpu).unwrap();
        let theirs = candle_core::safetensors::load(&io, &Device::Cpu).unwrap();
        let diff = max_abs_diff(&ours["logits"], &theirs["logits"]);
        assert!(diff < 1e-4, "{case}: logits differ by {diff}");

        // The table names both examples and the fixture's class names.
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("io.safetensors[0]") && stdout.contains("io.safetensors[1]"),
            "{stdout}"
        );
    }
}

#[test]
fn predict_classifies_a_jpeg_with_the_models_eval_preprocessing() {
    let dir = tempfile::tempdir().unwrap();
    let jpeg = dir.path().join("photo.jpg");
    let img = image::RgbImage::from_fn(97, 64, |x, y| {
        image::Rgb([(x * 2) as u8, (y * 3) as u8, ((x + y) % 256) as u8])
    });
    img.save(&jpeg).unwrap();

    let model_dir = fixture("timm_small");
    let out = funmatch(&[
        "predict",
        model_dir.to_str().unwrap(),
        jpeg.to_str().unwrap(),
        "--json",
        "--top-k",
        "10",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let top = json[0]["top"].as_array().unwrap();
    assert_eq!(top.len(), 10);
    let total: f64 = top.iter().map(|c| c["probability"].as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-4, "probabilities of all 10 classes sum to {total}");

    // The same image through the library: decode, eval view, model.
    let model = funmatch_models::load_model(&model_dir, &Device::Cpu).unwrap();
    let [_, h, w] = model.pretrained.input_size;
    let view = funmatch_data::ViewConfig::new(h as u32, w as u32)
        .with_crop_pct(model.pretrained.crop_pct as f32)
        .with_mean_std(model.pretrained.mean, model.pretrained.std);
    let pixels = funmatch_data::decode::decode_file(&jpeg).unwrap();
    let x = funmatch_data::view::eval_view(&pixels, &view).unwrap();
    let x = Tensor::from_vec(x, (1, 3, h, w), &Device::Cpu).unwrap();
    let net =
        funmatch_models::ResNetV2::new(&model.config, &model.params, funmatch_models::Mode::Frozen)
            .unwrap();
    let logits = net.forward(&x).unwrap().squeeze(0).unwrap().to_vec1::<f32>().unwrap();
    let best = (0..logits.len()).max_by(|&a, &b| logits[a].total_cmp(&logits[b])).unwrap();
    assert_eq!(top[0]["index"].as_u64().unwrap() as usize, best, "{}", describe(&out));
    assert_eq!(top[0]["label"].as_str().unwrap(), model.labels.unwrap()[best]);
}

#[test]
fn predict_names_the_file_and_key_when_pixel_values_are_missing_or_misshapen() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = fixture("timm_small");
    let bad_key = dir.path().join("bad_key.safetensors");
    let t = Tensor::zeros((1, 3, 8, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    candle_core::safetensors::save(
        &std::collections::HashMap::from([("images".to_string(), t)]),
        &bad_key,
    )
    .unwrap();
    let out = funmatch(&["predict", model_dir.to_str().unwrap(), bad_key.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("bad_key.safetensors")
            && stderr.contains("pixel_values"),
        "{}",
        describe(&out)
    );

    let bad_shape = dir.path().join("bad_shape.safetensors");
    let t = Tensor::zeros((1, 8, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    candle_core::safetensors::save(
        &std::collections::HashMap::from([("pixel_values".to_string(), t)]),
        &bad_shape,
    )
    .unwrap();
    let out = funmatch(&["predict", model_dir.to_str().unwrap(), bad_shape.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("[1, 8, 8]")
            && stderr.contains("expected [N, 3, H, W]"),
        "{}",
        describe(&out)
    );

    let out = funmatch(&["predict", "no/such-model-here", bad_shape.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", describe(&out));
    let out = funmatch(&[
        "predict",
        dir.path().join("missing").to_str().unwrap(),
        bad_shape.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("missing"), "{}", describe(&out));
}

#[test]
fn models_lists_the_zoo_and_architectures() {
    let out = funmatch(&["models", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> =
        json["zoo"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"resnetv2_50x1_bit.goog_distilled_in1k"), "{names:?}");
    let r50 = json["architectures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "resnetv2_50x1_bit")
        .unwrap();
    // Counted with timm 1.0.31: sum(p.numel() for p in create_model(name).parameters()).
    assert_eq!(r50["param_count"].as_u64().unwrap(), 25_549_352);
    let r152 = json["architectures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "resnetv2_152x2_bit")
        .unwrap();
    assert_eq!(r152["param_count"].as_u64().unwrap(), 236_335_208);
}
