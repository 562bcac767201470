//! Architecture settings, preprocessing settings, and the registry of named architectures.

use serde::{Deserialize, Serialize};

/// How the network turns the image into the first feature map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StemKind {
    /// BiT's stem: 7×7 stride-2 conv, zero padding of 1, 3×3 stride-2 max-pool (÷4 in size).
    Bit,
    /// For 28–64 px inputs: a 3×3 stride-1 conv and no pooling. timm cannot express it.
    Small,
}

/// How convolutions (and the stem pool) pad their input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    /// timm's fixed symmetric padding `((stride − 1) + (k − 1)) / 2` on every side.
    Symmetric,
    /// TensorFlow's "SAME": computed from the input size, the odd pixel going bottom/right.
    /// transformers uses it when its config says `global_padding = "SAME"`.
    Same,
}

/// The shape of a BiT ResNet-v2 (pre-activation, weight-standardized, GroupNorm).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BitConfig {
    /// Bottleneck blocks per stage; `[3, 4, 6, 3]` for a ResNet-50.
    pub layers: Vec<usize>,
    /// Output channels of each stage (already multiplied by the width factor).
    pub channels: Vec<usize>,
    /// Output channels of the stem convolution.
    pub stem_width: usize,
    pub stem: StemKind,
    pub num_classes: usize,
    pub in_chans: usize,
    pub padding: Padding,
    /// Zeros added on every side of the stem output before its pool (timm's BiT: 1;
    /// transformers with `global_padding = "SAME"`: 0).
    pub stem_pool_pad: usize,
    /// Whether the stem pool also pads dynamically ("SAME", with zeros), as transformers does
    /// with `embedding_dynamic_padding`.
    pub stem_pool_same: bool,
    /// Bottleneck width as a fraction of the stage output (BiT: 1/4).
    pub bottle_ratio: f64,
    /// GroupNorm groups (BiT: 32).
    pub groups: usize,
    /// GroupNorm epsilon (BiT: 1e-5).
    pub gn_eps: f64,
    /// Weight-standardization epsilon (timm's BiT: 1e-8).
    pub ws_eps: f64,
}

impl BitConfig {
    /// BiT as timm builds it: `layers` per stage, channels and stem scaled by `width_factor`.
    pub fn bit(layers: &[usize], width_factor: usize, num_classes: usize) -> Self {
        let channels = [256, 512, 1024, 2048].iter().map(|c| make_divisible(c * width_factor));
        Self {
            layers: layers.to_vec(),
            channels: channels.collect(),
            stem_width: make_divisible(64 * width_factor),
            stem: StemKind::Bit,
            num_classes,
            in_chans: 3,
            padding: Padding::Symmetric,
            stem_pool_pad: 1,
            stem_pool_same: false,
            bottle_ratio: 0.25,
            groups: 32,
            gn_eps: 1e-5,
            ws_eps: 1e-8,
        }
    }

    /// Middle (bottleneck) width of a stage.
    pub fn mid_channels(&self, stage: usize) -> usize {
        make_divisible((self.channels[stage] as f64 * self.bottle_ratio).round() as usize)
    }

    /// Width of the pooled features that feed the classifier.
    pub fn num_features(&self) -> usize {
        self.channels.last().copied().unwrap_or(self.stem_width)
    }

    /// Multiply–accumulates of one forward pass over a `size`×`size` image: every convolution
    /// and the classifier (normalisation, pooling and additions are not counted). Twice this
    /// is the FLOP count; a training step costs about three forward passes.
    pub fn forward_macs(&self, size: usize) -> u64 {
        let down = |h: usize, stride: usize| (h.max(1) - 1) / stride + 1;
        let (kernel, stride) = match self.stem {
            StemKind::Bit => (7, 2),
            StemKind::Small => (3, 1),
        };
        let mut h = down(size, stride);
        let mut macs = self.stem_width * self.in_chans * kernel * kernel * h * h;
        if self.stem == StemKind::Bit {
            h = down(h, 2);
        }
        let mut cin = self.stem_width;
        for (stage, (&depth, &out)) in self.layers.iter().zip(&self.channels).enumerate() {
            let mid = self.mid_channels(stage);
            for block in 0..depth {
                let stride = if block == 0 && stage > 0 { 2 } else { 1 };
                let ho = down(h, stride);
                let block_in = if block == 0 { cin } else { out };
                if block == 0 {
                    macs += out * block_in * ho * ho;
                }
                macs += mid * block_in * h * h + mid * mid * 9 * ho * ho + out * mid * ho * ho;
                h = ho;
            }
            cin = out;
        }
        (macs + self.num_classes * self.num_features()) as u64
    }

    /// Checks the invariants the model relies on; the message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        if self.layers.is_empty() || self.layers.len() != self.channels.len() {
            return Err(format!(
                "layers {:?} and channels {:?} must be non-empty and of equal length",
                self.layers, self.channels
            ));
        }
        if self.layers.contains(&0) {
            return Err(format!(
                "every stage needs at least one block, layers = {:?}",
                self.layers
            ));
        }
        if !(self.bottle_ratio > 0.0 && self.bottle_ratio <= 4.0) {
            return Err(format!(
                "bottle_ratio {} must be in (0, 4] (BiT: 0.25)",
                self.bottle_ratio
            ));
        }
        let widths =
            (0..self.channels.len()).flat_map(|s| [self.channels[s], self.mid_channels(s)]);
        for width in widths.chain([self.stem_width]) {
            if self.groups == 0 || width % self.groups != 0 {
                return Err(format!(
                    "width {width} does not split into {} GroupNorm groups",
                    self.groups
                ));
            }
        }
        if self.num_classes == 0 || self.in_chans == 0 {
            return Err("num_classes and in_chans must be positive".into());
        }
        Ok(())
    }
}

/// timm's channel rounding: to a multiple of 8, never more than 10 % below the request.
pub fn make_divisible(v: usize) -> usize {
    let divisor = 8;
    let rounded = ((v + divisor / 2) / divisor * divisor).max(divisor);
    if (rounded as f64) < 0.9 * v as f64 {
        rounded + divisor
    } else {
        rounded
    }
}

/// Resampling filter for resizing images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    Bilinear,
    Bicubic,
}

/// Evaluation preprocessing, with timm's `pretrained_cfg` field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainedCfg {
    /// `[channels, height, width]`.
    pub input_size: [usize; 3],
    pub interpolation: Interpolation,
    /// The eval view resizes the short side to `size / crop_pct`, then centre-crops.
    pub crop_pct: f64,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Default for PretrainedCfg {
    /// BiT's: 224 px, bicubic, crop_pct 0.875, pixels to [−1, 1].
    fn default() -> Self {
        Self {
            input_size: [3, 224, 224],
            interpolation: Interpolation::Bicubic,
            crop_pct: 0.875,
            mean: [0.5; 3],
            std: [0.5; 3],
        }
    }
}

/// A named architecture of the registry.
#[derive(Debug, Clone, Copy)]
pub struct Arch {
    /// timm's name, e.g. `resnetv2_50x1_bit`.
    pub name: &'static str,
    pub layers: &'static [usize],
    pub width_factor: usize,
}

const R50: &[usize] = &[3, 4, 6, 3];
const R101: &[usize] = &[3, 4, 23, 3];
const R152: &[usize] = &[3, 8, 36, 3];

/// The BiT ResNet-v2 architectures timm registers, by timm's names.
pub const ARCHITECTURES: &[Arch] = &[
    Arch { name: "resnetv2_50x1_bit", layers: R50, width_factor: 1 },
    Arch { name: "resnetv2_50x3_bit", layers: R50, width_factor: 3 },
    Arch { name: "resnetv2_101x1_bit", layers: R101, width_factor: 1 },
    Arch { name: "resnetv2_101x3_bit", layers: R101, width_factor: 3 },
    Arch { name: "resnetv2_152x2_bit", layers: R152, width_factor: 2 },
    Arch { name: "resnetv2_152x4_bit", layers: R152, width_factor: 4 },
];

/// Looks up a registered architecture by timm's name.
pub fn find_arch(name: &str) -> Option<&'static Arch> {
    ARCHITECTURES.iter().find(|a| a.name == name)
}

impl Arch {
    /// The architecture's configuration for `num_classes` outputs.
    pub fn config(&self, num_classes: usize) -> BitConfig {
        BitConfig::bit(self.layers, self.width_factor, num_classes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_widths_match_timm() {
        let r152x2 = find_arch("resnetv2_152x2_bit").unwrap().config(1000);
        assert_eq!(r152x2.channels, vec![512, 1024, 2048, 4096]);
        assert_eq!(r152x2.stem_width, 128);
        assert_eq!(r152x2.mid_channels(0), 128);
        for arch in ARCHITECTURES {
            arch.config(1000).validate().unwrap();
        }
    }

    #[test]
    fn bottle_ratio_sets_the_middle_width_and_is_checked() {
        let mut cfg = BitConfig::bit(&[1, 1], 1, 10);
        cfg.channels = vec![16, 32];
        cfg.groups = 8;
        cfg.bottle_ratio = 0.5;
        assert_eq!((cfg.mid_channels(0), cfg.mid_channels(1)), (8, 16));
        cfg.validate().unwrap();
        for bad in [0.0, -0.25, f64::NAN] {
            cfg.bottle_ratio = bad;
            let err = cfg.validate().unwrap_err();
            assert!(err.contains("bottle_ratio"), "{bad}: {err}");
        }
    }

    #[test]
    fn make_divisible_rounds_like_timm() {
        assert_eq!(make_divisible(64), 64);
        assert_eq!(make_divisible(12), 16);
        assert_eq!(make_divisible(3), 8);
        assert_eq!(make_divisible(100), 104);
    }

    #[test]
    fn forward_macs_count_every_convolution() {
        // ResNet-50's convolutions: 4.09 G multiply–accumulates at 224 px (the usual "4.1
        // GMACs"), plus the 2048 × 1000 classifier.
        let r50 = find_arch("resnetv2_50x1_bit").unwrap().config(1000);
        let macs = r50.forward_macs(224) as f64;
        assert!((macs / 4.09e9 - 1.0).abs() < 0.01, "resnetv2_50x1_bit: {macs:e} MACs");
        // A one-block small-stem model by hand: stem 1·8·9·28², block (in 8 → out 16, mid 8):
        // shortcut 16·8·28², conv1 8·8·28², conv2 8·8·9·28², conv3 16·8·28², head 16·10.
        let mut small = BitConfig::bit(&[1], 1, 10);
        small.channels = vec![16];
        small.stem_width = 8;
        small.stem = StemKind::Small;
        small.in_chans = 1;
        let p = 28 * 28;
        let expected = 72 * p + 128 * p + 64 * p + 576 * p + 128 * p + 160;
        assert_eq!(small.forward_macs(28), expected as u64);
    }
}
