//! Models: ViT and ResNet backbones, the DINO head, the multi-crop wrapper and weight I/O.
//!
//! A `DinoModel` lives in its own `VarStore` with the reference's `MultiCropWrapper` names
//! (`backbone.*`, `head.*`), so its state dict reads the same as the reference's checkpoints.

pub mod arch;
pub mod autocast;
pub mod cuda_backend;
pub mod grads;
pub mod head;
mod init;
pub mod names;
pub mod resnet;
pub mod vit;
pub mod weights;

pub use arch::{Arch, ResNetStem};
pub use head::{DinoHead, HeadSpec};
pub use resnet::{ResNet, ResNetDepth};
pub use vit::{VisionTransformer, VitSpec};

use std::path::PathBuf;
use tch::{nn, nn::VarStore, Tensor};

/// Everything needed to build a backbone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BackboneSpec {
    Vit(VitSpec),
    /// `width`: channels of `layer1` (64 in torchvision's; `--resnet_width`).
    ResNet {
        depth: ResNetDepth,
        stem: ResNetStem,
        width: i64,
    },
}

#[derive(Debug)]
pub enum Backbone {
    Vit(VisionTransformer),
    ResNet(ResNet),
}

impl Backbone {
    pub fn new(p: nn::Path, spec: &BackboneSpec) -> Self {
        match *spec {
            BackboneSpec::Vit(v) => Self::Vit(VisionTransformer::new(p, v)),
            BackboneSpec::ResNet { depth, stem, width } => Self::ResNet(ResNet::new(p, depth, stem, width)),
        }
    }

    pub fn embed_dim(&self) -> i64 {
        match self {
            Self::Vit(v) => v.embed_dim(),
            Self::ResNet(r) => r.embed_dim(),
        }
    }

    /// One feature vector per image: the normalised CLS token (ViT) or the pooled output (ResNet).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            Self::Vit(v) => v.forward_t(x, train),
            Self::ResNet(r) => r.forward_t(x, train),
        }
    }
}

/// A backbone's last spatial feature map and, for a ViT, its CLS token.
#[derive(Debug)]
pub struct SpatialFeatures {
    /// [B, C, h, w]: ViT patch tokens on their grid, or a ResNet's last stage.
    pub map: Tensor,
    /// [B, C]: the normalised CLS token (ViT only).
    pub cls: Option<Tensor>,
}

impl Backbone {
    /// The last spatial feature map of a batch (evaluation mode), for pooling other than the
    /// backbone's own: copy detection's GeM, principal components.
    pub fn spatial_features(&self, x: &Tensor) -> SpatialFeatures {
        match self {
            Self::Vit(v) => {
                let (map, cls) = v.patch_map(x);
                SpatialFeatures { map, cls: Some(cls) }
            }
            Self::ResNet(r) => SpatialFeatures { map: r.feature_map(x, false), cls: None },
        }
    }

    /// Input pixels per cell of the last spatial map: a ViT's patch size; a ResNet's 32 with
    /// torchvision's stem, 16 with the mid one, 8 with the CIFAR one.
    pub fn feature_stride(&self) -> usize {
        match self {
            Self::Vit(v) => v.spec.patch_size.max(1) as usize,
            Self::ResNet(r) => match r.stem() {
                ResNetStem::Imagenet => 32,
                ResNetStem::Mid => 16,
                ResNetStem::Cifar => 8,
            },
        }
    }
}

/// The weights an evaluation runs on (the trainer hands them to its evaluator).
pub enum EvalWeights {
    /// A copy of the live teacher's backbone, taken between two iterations; `content_id` names the
    /// checkpoint saved at that iteration, if one was, so retention keeps what was evaluated.
    Snapshot { vs: VarStore, backbone: Box<Backbone>, epoch: usize, iter: usize, content_id: Option<String> },
    /// A checkpoint of the run (its teacher), loaded by the worker.
    Checkpoint(PathBuf),
    /// The architecture with random weights (seeded): the baseline a trained run is compared with.
    Random { seed: u64 },
}

/// Backbone plus head: the reference's `MultiCropWrapper`.
#[derive(Debug)]
pub struct DinoModel {
    pub backbone: Backbone,
    pub head: DinoHead,
}

impl DinoModel {
    /// The head's `in_dim` is the backbone's output width, whatever `head` says.
    pub fn new(p: &nn::Path, backbone: &BackboneSpec, head: HeadSpec) -> Self {
        let backbone = Backbone::new(p / "backbone", backbone);
        let head = DinoHead::new(p / "head", HeadSpec { in_dim: backbone.embed_dim(), ..head });
        Self { backbone, head }
    }

    /// One backbone pass per run of consecutive same-resolution crops, then one head pass over
    /// all of them, concatenated in crop order.
    pub fn forward_multicrop(&self, crops: &[Tensor], train: bool) -> Tensor {
        self.forward_multicrop_with_features(crops, train).0
    }

    /// [`Self::forward_multicrop`], and the backbone features the head saw (same row order).
    pub fn forward_multicrop_with_features(&self, crops: &[Tensor], train: bool) -> (Tensor, Tensor) {
        let mut feats = vec![];
        let mut start = 0;
        while start < crops.len() {
            let side = crops[start].size()[3];
            let end = (start..crops.len()).find(|&i| crops[i].size()[3] != side).unwrap_or(crops.len());
            let batch = if end - start == 1 { crops[start].shallow_clone() } else { Tensor::cat(&crops[start..end], 0) };
            feats.push(self.backbone.forward_t(&batch, train));
            start = end;
        }
        let feats = if feats.len() == 1 { feats.remove(0) } else { Tensor::cat(&feats, 0) };
        (self.head.forward_t(&feats, train), feats)
    }
}
