//! The order in which PyTorch lists the reference's parameters (`named_parameters()`, hence
//! `state_dict()` and the optimizer's parameter indices): a module's own parameters in
//! registration order, then its children in registration order, depth first. Our variables live
//! in a hash map, so this order is rebuilt from the names: the optimizer state of a reference
//! checkpoint is stored by index in that order, and exports read best in it.
//!
//! Each name component is ranked against its siblings as the reference's `__init__` methods
//! register them (`vision_transformer.py`, torchvision's `resnet.py`, `DINOHead`,
//! `MultiCropWrapper`); numeric components (`blocks.3`, `mlp.2`) compare as numbers.

use std::cmp::Ordering;

/// Registration order of every component name the reference's modules use, siblings in order:
/// wrapper (backbone, head); ViT (cls_token, pos_embed, patch_embed, blocks, norm); block (norm1,
/// attn, norm2, mlp); attention (qkv, proj); MLP (fc1, fc2); head (mlp, last_layer); ResNet
/// (conv1, bn1, layer1..4) and its blocks (conv1, bn1, conv2, bn2, conv3, bn3, downsample);
/// leaves (weight, bias; weight_g, weight_v; BatchNorm buffers after its parameters).
const RANKS: &[&str] = &[
    "backbone",
    "head",
    "cls_token",
    "pos_embed",
    "patch_embed",
    "blocks",
    "norm1",
    "attn",
    "qkv",
    "proj",
    "norm2",
    "mlp",
    "fc1",
    "fc2",
    "norm",
    "last_layer",
    "conv1",
    "bn1",
    "conv2",
    "bn2",
    "conv3",
    "bn3",
    "downsample",
    "layer1",
    "layer2",
    "layer3",
    "layer4",
    "weight",
    "bias",
    "weight_g",
    "weight_v",
    "running_mean",
    "running_var",
    "num_batches_tracked",
];

/// Where a component stands among its siblings; `None` for a name the reference does not use.
fn rank(component: &str) -> Option<(usize, u64)> {
    if let Ok(n) = component.parse::<u64>() {
        return Some((0, n));
    }
    RANKS.iter().position(|r| *r == component).map(|i| (1, i as u64))
}

/// Whether every component of `name` is one the reference's modules register, so that
/// [`reference_order`] places it exactly.
pub fn is_reference_name(name: &str) -> bool {
    name.split('.').all(|c| rank(c).is_some())
}

/// Compares two parameter names in the reference's `named_parameters()` order. Names with
/// components the reference does not use sort after the known ones of their siblings, by text.
pub fn reference_order(a: &str, b: &str) -> Ordering {
    let mut xs = a.split('.');
    let mut ys = b.split('.');
    loop {
        match (xs.next(), ys.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x == y => continue,
            (Some(x), Some(y)) => {
                return match (rank(x), rank(y)) {
                    (Some(rx), Some(ry)) => rx.cmp(&ry),
                    (Some(_), None) => Ordering::Less,
                    (None, Some(_)) => Ordering::Greater,
                    (None, None) => x.cmp(y),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(names: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        v.sort_by(|a, b| reference_order(a, b));
        v
    }

    #[test]
    fn vit_and_head_follow_registration_order() {
        let want = [
            "backbone.cls_token",
            "backbone.pos_embed",
            "backbone.patch_embed.proj.weight",
            "backbone.patch_embed.proj.bias",
            "backbone.blocks.0.norm1.weight",
            "backbone.blocks.0.norm1.bias",
            "backbone.blocks.0.attn.qkv.weight",
            "backbone.blocks.0.attn.qkv.bias",
            "backbone.blocks.0.attn.proj.weight",
            "backbone.blocks.0.attn.proj.bias",
            "backbone.blocks.0.norm2.weight",
            "backbone.blocks.0.norm2.bias",
            "backbone.blocks.0.mlp.fc1.weight",
            "backbone.blocks.0.mlp.fc1.bias",
            "backbone.blocks.0.mlp.fc2.weight",
            "backbone.blocks.0.mlp.fc2.bias",
            "backbone.blocks.2.norm1.weight",
            "backbone.blocks.10.norm1.weight",
            "backbone.norm.weight",
            "backbone.norm.bias",
            "head.mlp.0.weight",
            "head.mlp.0.bias",
            "head.mlp.2.weight",
            "head.mlp.10.bias",
            "head.last_layer.weight_g",
            "head.last_layer.weight_v",
        ];
        let mut shuffled: Vec<&str> = want.to_vec();
        shuffled.reverse();
        shuffled.swap(3, 17);
        assert_eq!(sorted(&shuffled), want);
        assert!(want.iter().all(|n| is_reference_name(n)));
        assert!(!is_reference_name("backbone.blocks.0.ls1.gamma"));
    }

    #[test]
    fn resnet_follows_torchvision_registration_order() {
        let want = [
            "conv1.weight",
            "bn1.weight",
            "bn1.bias",
            "bn1.running_mean",
            "layer1.0.conv1.weight",
            "layer1.0.bn1.weight",
            "layer1.0.conv3.weight",
            "layer1.0.bn3.bias",
            "layer1.0.downsample.0.weight",
            "layer1.0.downsample.1.weight",
            "layer1.1.conv1.weight",
            "layer4.2.bn3.bias",
        ];
        let mut shuffled: Vec<&str> = want.to_vec();
        shuffled.sort();
        assert_eq!(sorted(&shuffled), want);
    }
}
