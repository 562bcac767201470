//! Parity with the reference libraries: our logits against those timm and transformers
//! computed for the same weights and inputs (fixtures written by
//! `scripts/make_parity_fixtures.py`). Rule: max |Δ logit| ≤ 1e-4 · max |logit|.

use candle_core::{Device, Tensor};
use funmatch_models::{load_model, Mode, ResNetV2, WeightFormat};
use std::path::{Path, PathBuf};

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(case)
}

fn max_abs(t: &Tensor) -> f32 {
    t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// Loads the case's model, runs its inputs and compares with its reference logits.
fn check_parity(case: &str, expected_format: WeightFormat) {
    let dir = fixture(case);
    let model = load_model(&dir, &Device::Cpu).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    assert_eq!(model.format, expected_format, "{case}: detected format");
    let net = ResNetV2::new(&model.config, &model.params, Mode::Frozen).unwrap();

    let io = candle_core::safetensors::load(dir.join("io.safetensors"), &Device::Cpu).unwrap();
    let x = &io["pixel_values"];
    let expected = &io["logits"];
    let logits = net.forward(x).unwrap();
    assert_eq!(logits.dims(), expected.dims(), "{case}: logits shape");

    let diff = max_abs(&(&logits - expected).unwrap());
    let scale = max_abs(expected);
    let features_diff =
        io.get("features").map(|f| max_abs(&(net.forward_features(x).unwrap() - f).unwrap()));
    assert!(
        diff <= 1e-4 * scale,
        "{case}: max |Δ logit| = {diff:e} > 1e-4 × {scale} (features max |Δ| = {features_diff:?}); \
         config {:?}",
        model.config
    );
}

#[test]
fn timm_resnetv2_logits_match_timm() {
    check_parity("parity/timm_small", WeightFormat::Timm);
}

#[test]
fn google_npz_logits_match_timm_loading_the_same_file() {
    check_parity("parity/npz", WeightFormat::BigTransferNpz);
}

#[test]
fn transformers_bit_logits_match_transformers() {
    check_parity("parity/transformers_bit", WeightFormat::Transformers);
}

#[test]
fn transformers_bit_with_same_padding_matches_transformers() {
    check_parity("parity/transformers_bit_same", WeightFormat::Transformers);
}

/// The full-size model; its 100 MB fixture is not committed (`make_parity_fixtures.py --large`).
#[test]
fn full_size_resnetv2_50x1_bit_matches_timm_when_fixture_present() {
    if !fixture("large/resnetv2_50x1_bit").join("io.safetensors").is_file() {
        eprintln!("skipped: tests/fixtures/large/resnetv2_50x1_bit not present");
        return;
    }
    check_parity("large/resnetv2_50x1_bit", WeightFormat::Timm);
}
