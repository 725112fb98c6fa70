//! Which network to build: the architectures this project knows by the reference's `--arch`
//! names, and the ResNet stem variant. Plain data, so the config can hold them typed and the model
//! can build from them without knowing about configs.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An `--arch` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    VitTiny,
    VitSmall,
    VitBase,
    #[serde(rename = "resnet18")]
    ResNet18,
    #[serde(rename = "resnet50")]
    ResNet50,
}

impl Arch {
    pub const ALL: [Arch; 5] = [Arch::VitTiny, Arch::VitSmall, Arch::VitBase, Arch::ResNet18, Arch::ResNet50];

    /// The reference's spelling (`vit_small`, `resnet50`).
    pub fn name(self) -> &'static str {
        match self {
            Self::VitTiny => "vit_tiny",
            Self::VitSmall => "vit_small",
            Self::VitBase => "vit_base",
            Self::ResNet18 => "resnet18",
            Self::ResNet50 => "resnet50",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == s)
    }

    /// The names, for error messages and help texts.
    pub fn names() -> String {
        Self::ALL.map(Arch::name).join(", ")
    }

    pub fn is_vit(self) -> bool {
        matches!(self, Self::VitTiny | Self::VitSmall | Self::VitBase)
    }

    /// Width, depth and heads of the reference's ViT presets (`vision_transformer.py`).
    pub fn vit_dims(self) -> Option<(i64, i64, i64)> {
        match self {
            Self::VitTiny => Some((192, 12, 3)),
            Self::VitSmall => Some((384, 12, 6)),
            Self::VitBase => Some((768, 12, 12)),
            Self::ResNet18 | Self::ResNet50 => None,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The first layers of a ResNet (`--resnet_stem`): torchvision's, made for 224 px images, or the
/// usual one for 32 px images. Not a reference flag; checkpoints record it with the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResNetStem {
    /// 7x7 stride-2 convolution and 3x3 stride-2 max-pool: a crop shrinks 4x before `layer1`.
    Imagenet,
    /// 3x3 stride-1 convolution, no max-pool: `layer1` sees the crop at full resolution.
    Cifar,
    /// torchvision's 7x7 stride-2 convolution without the max-pool: `layer1` sees half the crop's
    /// resolution (16x16 for a 32 px crop), four times the ImageNet stem's compute in the blocks.
    /// Its tensors are torchvision's, so a bare weights file cannot tell it from `imagenet`.
    Mid,
}

impl ResNetStem {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "imagenet" => Some(Self::Imagenet),
            "cifar" => Some(Self::Cifar),
            "mid" => Some(Self::Mid),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_serialise_as_the_reference_spells_them() {
        for a in Arch::ALL {
            assert_eq!(Arch::parse(a.name()), Some(a));
            assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{}\"", a.name()));
        }
        assert_eq!(Arch::parse("vit_huge"), None);
        assert!(Arch::VitTiny.is_vit() && !Arch::ResNet50.is_vit());
    }
}
