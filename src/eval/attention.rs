//! Where a network looks: the last block's CLS attention per head, as the reference's
//! `visualize_attention.py` computes it (with the mask that keeps a share of each head's
//! attention mass), and for every backbone the first three principal components of its last
//! spatial features as colours, the view DINOv2 popularised. Pure tensors in, tensors out: the
//! files and the terminal draw them (`cmd::attention`, the TUI).

use super::EvalError;
use crate::model::Backbone;
use tch::{Kind, Tensor};

/// Per-head maps of one image at its pixel size.
#[derive(Debug)]
pub struct HeadMaps {
    /// CLS attention to each patch, nearest-upsampled by the patch size: [heads, H, W].
    pub attention: Tensor,
    /// 1 where a patch is among those holding `threshold` of the head's attention mass: [heads, H, W].
    pub mask: Option<Tensor>,
}

impl HeadMaps {
    pub fn heads(&self) -> usize {
        self.attention.size().first().copied().unwrap_or(0) as usize
    }

    /// The mean over heads, [H, W]: the overlay's single map.
    pub fn mean(&self) -> Tensor {
        self.attention.mean_dim(0, false, Kind::Float)
    }
}

/// Patches an attention map may have: its heads x tokens² floats are materialised (80 x 80
/// patches, 6 heads: about 1 GB). The reference's 480 px at patch 8 is 3,600.
pub const MAX_ATTENTION_TOKENS: i64 = 6_400;

/// The CLS attention maps of `image` ([3, H, W], normalised). As the reference, the image is
/// first cut at the bottom and right to whole patches; the maps have the cut size. Only a ViT
/// has them; a ResNet is refused with the way to its PCA map.
pub fn cls_attention(backbone: &Backbone, image: &Tensor, threshold: Option<f64>) -> Result<HeadMaps, EvalError> {
    let Backbone::Vit(vit) = backbone else {
        return Err(EvalError::Invalid("attention maps need a ViT: a ResNet has no attention (use --pca for its feature map)".into()));
    };
    let patch = vit.spec.patch_size;
    let (h0, w0) = spatial_size(image)?;
    let (h, w) = (h0 - h0 % patch, w0 - w0 % patch);
    if h == 0 || w == 0 {
        return Err(EvalError::Invalid(format!("a {w0}x{h0} image is smaller than one {patch} px patch")));
    }
    let (gh, gw) = (h / patch, w / patch);
    if gh * gw > MAX_ATTENTION_TOKENS {
        return Err(EvalError::Invalid(format!(
            "a {w}x{h} image is {} patches of {patch} px, above the {MAX_ATTENTION_TOKENS} whose attention maps fit ({} per head): lower --image_size",
            gh * gw,
            crate::human::fmt_bytes(((gh * gw + 1) as u64).pow(2) * 4),
        )));
    }
    let cut = image.narrow(1, 0, h).narrow(2, 0, w);
    let attn = tch::no_grad(|| vit.last_self_attention(&cut.unsqueeze(0))).to_kind(Kind::Float);
    let heads = attn.size()[1];
    // The CLS row, without the CLS column: one weight per patch and head.
    let cls = attn.get(0).narrow(1, 0, 1).squeeze_dim(1).narrow(1, 1, gh * gw);
    let mask = threshold.map(|t| mass_mask(&cls, t).reshape([heads, gh, gw]));
    let upsample = |m: &Tensor| m.unsqueeze(0).upsample_nearest2d([h, w], Some(patch as f64), Some(patch as f64)).squeeze_dim(0);
    Ok(HeadMaps { attention: upsample(&cls.reshape([heads, gh, gw])), mask: mask.as_ref().map(upsample) })
}

/// Per row, 1 for the largest weights that together hold `share` of the row's mass (the
/// reference: sort ascending, normalise, cumulative sum, keep where it exceeds 1 - share).
fn mass_mask(weights: &Tensor, share: f64) -> Tensor {
    let (sorted, order) = weights.sort(1, false);
    let normalised = &sorted / sorted.sum_dim_intlist(1, true, Kind::Float);
    let keep = normalised.cumsum(1, Kind::Float).gt(1.0 - share).to_kind(Kind::Float);
    // Back to the patches' own order.
    keep.gather(1, &order.argsort(1, false), false)
}

fn spatial_size(image: &Tensor) -> Result<(i64, i64), EvalError> {
    match image.size().as_slice() {
        [3, h, w] => Ok((*h, *w)),
        other => Err(EvalError::Invalid(format!("expected one [3, H, W] image, got {other:?}"))),
    }
}

/// The last spatial features of `image` as [h, w, C] (`Backbone::spatial_features`: a ViT's
/// normalised patch tokens, a ResNet's last stage).
fn spatial_features(backbone: &Backbone, image: &Tensor) -> Result<Tensor, EvalError> {
    spatial_size(image)?;
    let map = tch::no_grad(|| backbone.spatial_features(&image.unsqueeze(0)).map);
    Ok(map.get(0).permute([1, 2, 0]).to_kind(Kind::Float))
}

/// The first three principal components of the last spatial features as an RGB map [3, H, W]
/// in [0, 1], each component stretched to its own range and upsampled (nearest) to the image.
/// Signs are fixed so that each component's largest projection is positive: the same weights
/// give the same colours on every run.
pub fn pca_map(backbone: &Backbone, image: &Tensor) -> Result<Tensor, EvalError> {
    let (h, w) = spatial_size(image)?;
    let features = spatial_features(backbone, image)?;
    let (gh, gw, d) = features.size3().map_err(|e| EvalError::Invalid(e.to_string()))?;
    let rows = features.reshape([gh * gw, d]).to_device(tch::Device::Cpu);
    let centred = &rows - rows.mean_dim(0, true, Kind::Float);
    // torch.svd (reduced): V's columns are the principal directions.
    let (_, _, v) = centred.svd(true, true);
    let vh = v.transpose(0, 1);
    let k = vh.size()[0].min(3);
    let mut projected = centred.matmul(&vh.narrow(0, 0, k).transpose(0, 1));
    if k < 3 {
        projected = Tensor::cat(&[projected, Tensor::zeros([gh * gw, 3 - k], (Kind::Float, tch::Device::Cpu))], 1);
    }
    let largest = projected.abs().argmax(0, false);
    let sign = projected.gather(0, &largest.unsqueeze(0), false).sign().clamp_min(0.0) * 2.0 - 1.0;
    let projected = projected * sign;
    let (lo, hi) = (projected.amin(0, true), projected.amax(0, true));
    let stretched = (&projected - &lo) / (hi - &lo).clamp_min(1e-12);
    let grid = stretched.transpose(0, 1).reshape([1, 3, gh, gw]);
    Ok(grid.upsample_nearest2d([h, w], None, None).squeeze_dim(0))
}

/// The shorter side an image is shown to a network at when none is asked for: the reference's
/// 480 for networks trained at 224 px or more, else the size it trained at (a 32 px network
/// shown a 480 px image attends to textures it never saw at that scale).
pub fn default_view_size(global_crop_size: usize) -> usize {
    if global_crop_size >= 224 {
        480
    } else {
        global_crop_size
    }
}

/// The side multiple an image is cut to: whole patches for a ViT, any size for a ResNet.
pub fn patch_multiple(backbone: &Backbone) -> usize {
    match backbone {
        Backbone::Vit(v) => v.spec.patch_size.max(1) as usize,
        Backbone::ResNet(_) => 1,
    }
}

/// An image as the network is shown it: resized (shorter side `size`), cut to whole patches,
/// as pixels for people and as a normalised [3, H, W] tensor on `device`.
pub fn view(img: &image::RgbImage, backbone: &Backbone, size: usize, device: tch::Device) -> Result<(image::RgbImage, Tensor), EvalError> {
    let multiple = patch_multiple(backbone);
    let (pixels, chw) = crate::data::whole_view(img, size, multiple);
    let (w, h) = (pixels.width() as usize, pixels.height() as usize);
    if w < multiple || h < multiple {
        return Err(EvalError::Invalid(format!("at {size} px the image is {w}x{h}, smaller than one {multiple} px patch")));
    }
    Ok((pixels, Tensor::from_slice(&chw).reshape([3, h as i64, w as i64]).to_device(device)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mass_mask_keeps_the_largest_weights_holding_the_share() {
        // Weights 0.5, 0.1, 0.3, 0.1: 60 % of the mass needs 0.5 and 0.3 (0.8 > 0.6 once 0.5 is
        // in alone at 0.5 < 0.6).
        let w = Tensor::from_slice(&[0.5f32, 0.1, 0.3, 0.1]).reshape([1, 4]);
        let m = mass_mask(&w, 0.6);
        assert_eq!(Vec::<f32>::try_from(m.flatten(0, -1)).unwrap(), vec![1.0, 0.0, 1.0, 0.0]);
    }
}
