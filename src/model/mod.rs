//! Models: ViT and ResNet backbones, the DINO head, the multi-crop wrapper and weight I/O.
//!
//! A `DinoModel` lives in its own `VarStore` with the reference's `MultiCropWrapper` names
//! (`backbone.*`, `head.*`), so its state dict reads the same as the reference's checkpoints.

pub mod head;
mod init;
pub mod resnet;
pub mod vit;
pub mod weights;

pub use head::{DinoHead, HeadSpec};
pub use resnet::{ResNet, ResNetDepth};
pub use vit::{VisionTransformer, VitSpec};

use crate::config::TrainConfig;
use std::path::PathBuf;
use tch::{nn, nn::VarStore, Tensor};

#[derive(Debug)]
pub enum Backbone {
    Vit(VisionTransformer),
    ResNet(ResNet),
}

impl Backbone {
    /// Builds the backbone the config names; `drop_path` is the student's rate (the teacher uses 0).
    pub fn from_config(p: nn::Path, c: &TrainConfig, drop_path: f64) -> anyhow::Result<Self> {
        if c.is_vit() {
            let spec = VitSpec { drop_path_rate: drop_path, ..VitSpec::from_config(c) };
            Ok(Self::Vit(VisionTransformer::new(p, spec)))
        } else {
            let depth = ResNetDepth::from_arch(&c.arch).ok_or_else(|| anyhow::anyhow!("unknown --arch {}", c.arch))?;
            Ok(Self::ResNet(ResNet::new(p, depth, c.resnet_stem)))
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

/// The weights an evaluation runs on (the trainer hands them to its evaluator).
pub enum EvalWeights {
    /// A copy of the live teacher's backbone, taken between two iterations.
    Snapshot { vs: VarStore, backbone: Box<Backbone>, epoch: usize, iter: usize },
    /// A checkpoint of the run (its teacher), loaded by the worker.
    Checkpoint(PathBuf),
}

/// Backbone plus head: the reference's `MultiCropWrapper`.
#[derive(Debug)]
pub struct DinoModel {
    pub backbone: Backbone,
    pub head: DinoHead,
}

impl DinoModel {
    pub fn new(p: &nn::Path, c: &TrainConfig, drop_path: f64, norm_last_layer: bool) -> anyhow::Result<Self> {
        let backbone = Backbone::from_config(p / "backbone", c, drop_path)?;
        let spec = HeadSpec {
            in_dim: backbone.embed_dim(),
            out_dim: c.out_dim,
            use_bn: c.use_bn_in_head,
            norm_last_layer,
            nlayers: 3,
            hidden_dim: c.head_hidden_dim,
            bottleneck_dim: c.head_bottleneck_dim,
        };
        let head = DinoHead::new(p / "head", spec);
        Ok(Self { backbone, head })
    }

    /// One backbone pass per run of consecutive same-resolution crops, then one head pass over
    /// all of them, concatenated in crop order.
    pub fn forward_multicrop(&self, crops: &[Tensor], train: bool) -> Tensor {
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
        self.head.forward_t(&feats, train)
    }
}
