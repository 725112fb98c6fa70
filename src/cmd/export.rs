//! `dino export WEIGHTS`: a backbone written for other code to load: the reference's
//! `vision_transformer.py` / torchvision's ResNet with `strict=True`, or timm (`--names timm`),
//! as safetensors or a `torch.load`-able `.pth`. The weights are anything `--pretrained_weights`
//! takes (a run, a checkpoint, a PyTorch file, a backbone file).

use crate::eval::source::{self, CheckpointKey, SourceSpec};
use crate::files::ShowPath;
use crate::model::Backbone;
use crate::run::export::{self, Format, Names};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Clone, Args)]
#[command(rename_all = "snake_case")]
pub struct ExportArgs {
    /// What to export: a run directory (its latest checkpoint), a checkpoint .json or
    /// .safetensors, a PyTorch .pth, or a backbone file
    pub weights: String,
    /// Which network of a checkpoint: teacher or student
    #[arg(long, default_value = "teacher", value_parser = CheckpointKey::parse)]
    pub checkpoint_key: CheckpointKey,
    /// File format: safetensors, or pth (a state dict torch.load reads, weights_only=True included)
    #[arg(long, default_value = "safetensors", value_parser = Format::parse)]
    pub format: Format,
    /// Output file (default RUN_DIR/export/backbone-KEY-epNNNN.EXT for a run, else ./backbone-KEY.EXT)
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Parameter names: reference (the reference ViT, torchvision's ResNet) or timm (the same keys; see docs/interop.md)
    #[arg(long, default_value = "reference", value_parser = Names::parse)]
    pub names: Names,
    /// Config for weights without one: a TOML file, a preset name or a run directory
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Architecture for weights without a config (default: read from the tensors)
    #[arg(long)]
    pub arch: Option<String>,
}

/// How to build the module the export loads into, for the printout.
fn loader_hint(backbone: &Backbone, names: Names) -> String {
    match (backbone, names) {
        (Backbone::Vit(v), Names::Reference) => {
            let s = v.spec;
            format!(
                "vision_transformer.VisionTransformer(img_size=[{}], patch_size={}, embed_dim={}, depth={}, num_heads={}, qkv_bias=True, \
                 norm_layer=partial(nn.LayerNorm, eps=1e-6)).load_state_dict(sd, strict=True)",
                s.img_size, s.patch_size, s.embed_dim, s.depth, s.num_heads
            )
        }
        (Backbone::Vit(v), Names::Timm) => {
            let s = v.spec;
            format!(
                "timm.models.vision_transformer.VisionTransformer(img_size={}, patch_size={}, embed_dim={}, depth={}, num_heads={}, \
                 num_classes=0).load_state_dict(sd, strict=True)",
                s.img_size, s.patch_size, s.embed_dim, s.depth, s.num_heads
            )
        }
        (Backbone::ResNet(r), names) => {
            let which = if r.depth() == crate::model::ResNetDepth::R50 { "resnet50" } else { "resnet18" };
            match names {
                Names::Reference => format!("m = torchvision.models.{which}(); m.fc = nn.Identity(); m.load_state_dict(sd, strict=True)"),
                Names::Timm => format!("timm.create_model(\"{which}\", num_classes=0).load_state_dict(sd, strict=True)"),
            }
        }
    }
}

/// What torchvision's constructor does not build by itself: another width, the mid or CIFAR stem.
fn resnet_caveats(r: &crate::model::ResNet) -> Vec<String> {
    let mut lines = vec![];
    if r.width() != 64 {
        lines.push(format!(
            "this ResNet is {} channels wide at layer1 (torchvision's: 64): build the same network with every width scaled by {}/64 \
             (the tensor names are torchvision's)",
            r.width(),
            r.width()
        ));
    }
    if r.stem() == crate::model::ResNetStem::Mid {
        lines.push("this ResNet has the mid stem: set m.maxpool = nn.Identity() first".to_string());
    }
    if r.stem() == crate::model::ResNetStem::Cifar {
        lines.push(format!(
            "this ResNet has the cifar stem: set m.conv1 = nn.Conv2d(3, {}, 3, 1, 1, bias=False) and m.maxpool = nn.Identity() first",
            r.width()
        ));
    }
    lines
}

pub fn run(a: &ExportArgs) -> Result<i32> {
    let spec = SourceSpec {
        pretrained_weights: a.weights.clone(),
        checkpoint_key: a.checkpoint_key,
        config: a.config.clone(),
        arch: a.arch.clone(),
        patch_size: None,
        global_crop_size: None,
        device: tch::Device::Cpu,
        seed: 0,
    };
    let source = source::load(&spec)?;
    for note in &source.notes {
        crate::say_err!("note: {note}");
    }
    let key = a.checkpoint_key.name();
    let tensors = export::backbone_tensors(&source.vs, "", a.names);
    let path = a.output.clone().unwrap_or_else(|| export::default_path(source.run_dir.as_deref(), key, source.epoch, a.format));
    export::write(&path, &tensors, a.format, source.config.crops.global_crop_size)?;
    crate::say!("{}: {} tensors, {}", path.shown(), tensors.len(), source.description);
    crate::say!(
        "load with: sd = torch.load(\"{}\") (or safetensors.torch.load_file); {}",
        path.shown(),
        loader_hint(&source.backbone, a.names)
    );
    if let Backbone::ResNet(r) = &source.backbone {
        for line in resnet_caveats(r) {
            crate::say!("{line}");
        }
    }
    Ok(0)
}
