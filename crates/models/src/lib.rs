//! BiT ResNet-v2 models for funmatch: the architecture exactly as timm builds it, a registry
//! of named sizes plus a configurable family for CPU-scale students and teachers, weight
//! import from timm / transformers / Google `.npz`, the differentiable ops candle lacks, and
//! a hand-written backward pass for training on the CPU ([`ResNetV2::forward_train`],
//! [`ResNetV2::backward`]).
//!
//! Errors and panics: anything a file or a user can cause (a missing tensor, a wrong shape,
//! bad JSON) returns a [`ModelError`] naming the file and the tensor or key. Panics are kept
//! for broken invariants of this crate only.

pub mod config;
pub mod error;
pub mod folder;
pub mod ops;
pub mod resnetv2;
pub mod weights;

pub use config::{
    find_arch, Arch, BitConfig, Interpolation, Padding, PretrainedCfg, StemKind, ARCHITECTURES,
};
pub use error::{Mismatch, ModelError};
pub use folder::{config_json, readable_by_all, save_model_folder, timm_equivalent};
pub use resnetv2::{
    init_params, param_specs, trainable, Mode, ParamKind, ParamSpec, Params, ResNetV2, Tape,
};
pub use weights::{
    check_params, infer_config, load_model, read_safetensors, LoadedModel, WeightFormat,
};
