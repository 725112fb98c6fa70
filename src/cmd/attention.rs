//! `dino attention`: where a network looks, written as the reference's `visualize_attention.py`
//! writes it (`img.png`, `attn-head{j}.png`, `mask_th{t}_head{j}.png`) plus an overlay of the mean
//! map on the image and a sheet of all of them side by side, large enough to look at. `--pca`
//! writes the first three principal components of the last spatial features as colours instead,
//! for every backbone (ResNets have no attention).

use crate::config::validate::resolve_device;
use crate::data::load_rgb;
use crate::eval::attention::{cls_attention, default_view_size, pca_map, view, HeadMaps};
use crate::eval::heatmap::{blend_mask, mask_colour, overlay, rgb_of, sheet, viridis};
use crate::eval::source::{self, CheckpointKey, ModelSource, SourceSpec};
use crate::files::ShowPath;
use anyhow::{bail, Context, Result};
use clap::Args;
use image::RgbImage;
use std::path::{Path, PathBuf};
use tch::Device;

#[derive(Debug, Clone, Args)]
#[command(rename_all = "snake_case")]
pub struct AttentionArgs {
    /// Weights: a run directory or run name (its latest checkpoint), a checkpoint, a reference
    /// checkpoint.pth or official ViT .pth, a backbone .safetensors, or `random`
    #[arg(long)]
    pub pretrained_weights: String,
    /// Which network of a DINO checkpoint: teacher or student
    #[arg(long, default_value = "teacher", value_parser = CheckpointKey::parse)]
    pub checkpoint_key: CheckpointKey,
    /// Images to look at (any format the loader reads)
    #[arg(long, required = true, num_args = 1..)]
    pub image: Vec<PathBuf>,
    /// Where the PNG files go: with one image the files themselves, with several a folder per
    /// image (default RUN_DIR/attention/IMAGE for a run, else ./attention/IMAGE)
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Share of each head's attention mass the masks keep, in (0, 1]
    #[arg(long, default_value_t = 0.6, allow_negative_numbers = true)]
    pub threshold: f64,
    /// Shorter side the image is resized to before it is cut to whole patches (default: the
    /// reference's 480 for networks trained at 224 px or more, else the training crop size)
    #[arg(long, allow_negative_numbers = true)]
    pub image_size: Option<i64>,
    /// Instead of attention: the first three principal components of the last spatial features
    /// (ViT patch tokens, ResNet's last stage) as red, green and blue; every backbone
    #[arg(long)]
    pub pca: bool,
    /// Config for weights without one (and for `random`): a TOML file, a preset name or a run directory
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Architecture when the weights carry no config: vit_tiny, vit_small, vit_base, resnet18, resnet50
    #[arg(long)]
    pub arch: Option<String>,
    /// Patch size (ViT) when the weights carry no config
    #[arg(long, allow_negative_numbers = true)]
    pub patch_size: Option<i64>,
    /// Device: auto, cpu, cuda, cuda:N
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Seed of the random initialisation (`random`)
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

fn check(a: &AttentionArgs) -> Result<()> {
    if !(a.threshold > 0.0 && a.threshold <= 1.0) {
        bail!("invalid value {} for --threshold: expected a share of the attention mass in (0, 1]", a.threshold);
    }
    if let Some(s) = a.image_size {
        if !(1..=4096).contains(&s) {
            bail!("invalid value {s} for --image_size: expected a side in pixels from 1 to 4096");
        }
    }
    Ok(())
}

pub fn run(a: &AttentionArgs) -> Result<i32> {
    check(a)?;
    let device = resolve_device(&a.device)?;
    let spec = SourceSpec {
        pretrained_weights: a.pretrained_weights.clone(),
        checkpoint_key: a.checkpoint_key,
        config: a.config.clone(),
        arch: a.arch.clone(),
        patch_size: a.patch_size,
        global_crop_size: None,
        device,
        seed: a.seed,
    };
    let source = source::load(&spec)?;
    crate::say_err!("looking with {}", source.description);
    for note in &source.notes {
        crate::say_err!("  note: {note}");
    }
    if !a.pca && !matches!(source.backbone, crate::model::Backbone::Vit(_)) {
        bail!("{} is a ResNet: it has no attention to draw; add --pca for its feature map", a.pretrained_weights);
    }
    let size = a.image_size.map(|s| s as usize).unwrap_or(default_view_size(source.config.crops.global_crop_size));
    let folders = output_folders(a, source.run_dir.as_deref())?;
    // One unreadable image among many is named and skipped; the others are still drawn.
    let mut failed = vec![];
    for (path, folder) in a.image.iter().zip(&folders) {
        match draw_one(a, &source, path, folder, size, device) {
            Ok((written, w, h)) => crate::say!("{}: {written} files in {} ({w}x{h} px)", path.shown(), folder.shown()),
            Err(e) => {
                crate::say_err!("error: {e:#}");
                failed.push(path.shown().to_string());
            }
        }
    }
    if !failed.is_empty() {
        bail!("{} of {} images not drawn: {}", failed.len(), a.image.len(), failed.join(", "));
    }
    Ok(0)
}

/// The files of one image; how many were written and the size the network saw.
fn draw_one(a: &AttentionArgs, source: &ModelSource, path: &Path, folder: &Path, size: usize, device: Device) -> Result<(usize, u32, u32)> {
    let img = load_rgb(path).with_context(|| format!("cannot read the image {}", path.shown()))?;
    let (pixels, image) = view(&img, &source.backbone, size, device).with_context(|| format!("{} at --image_size {size}", path.shown()))?;
    std::fs::create_dir_all(folder).with_context(|| format!("cannot create {}", folder.shown()))?;
    write_png(&folder.join("img.png"), &pixels)?;
    let written = if a.pca {
        let rgb = rgb_of(&pca_map(&source.backbone, &image)?);
        write_png(&folder.join("pca.png"), &rgb)?;
        write_png(&folder.join("pca-sheet.png"), &sheet(&[&pixels, &rgb]))?;
        2
    } else {
        let maps = cls_attention(&source.backbone, &image, Some(a.threshold))?;
        write_attention(folder, &pixels, &maps, a.threshold)?
    };
    Ok((written + 1, pixels.width(), pixels.height()))
}

/// One folder per image: `--output_dir` itself for a single image (the reference's layout),
/// else a subfolder named by the image's file stem, or by its folder and stem when two images
/// share a stem (`airplane-0000`, `ship-0000`), numbered if they still collide.
fn output_folders(a: &AttentionArgs, run_dir: Option<&Path>) -> Result<Vec<PathBuf>> {
    if let (Some(dir), [_]) = (&a.output_dir, a.image.as_slice()) {
        return Ok(vec![dir.clone()]);
    }
    let base = a.output_dir.clone().unwrap_or_else(|| run_dir.map(|r| r.join("attention")).unwrap_or_else(|| PathBuf::from("attention")));
    let part = |p: Option<&std::ffi::OsStr>| {
        p.map(|s| s.to_string_lossy().into_owned()).filter(|s| crate::files::check_plain_name(s).is_ok()).unwrap_or_else(|| "image".into())
    };
    let stems: Vec<String> = a.image.iter().map(|p| part(p.file_stem())).collect();
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    let mut out = vec![];
    for (p, stem) in a.image.iter().zip(&stems) {
        let shared = stems.iter().filter(|s| *s == stem).count() > 1;
        let name = if shared { format!("{}-{stem}", part(p.parent().and_then(Path::file_name))) } else { stem.clone() };
        let n = seen.entry(name.clone()).or_default();
        *n += 1;
        out.push(base.join(if *n == 1 { name } else { format!("{name}-{n}") }));
    }
    Ok(out)
}

/// Heads in viridis (each stretched to its own range, as matplotlib's `imsave` does), masks on
/// the image, the overlay of the mean map and the sheet. Returns how many files it wrote.
fn write_attention(folder: &Path, pixels: &RgbImage, maps: &HeadMaps, threshold: f64) -> Result<usize> {
    let mut tiles = vec![];
    for j in 0..maps.heads() as i64 {
        let head = viridis(&maps.attention.get(j));
        write_png(&folder.join(format!("attn-head{j}.png")), &head)?;
        if let Some(mask) = &maps.mask {
            let masked = blend_mask(pixels, &mask.get(j), mask_colour(j as usize));
            write_png(&folder.join(format!("mask_th{threshold}_head{j}.png")), &masked)?;
        }
        tiles.push(head);
    }
    let overlay = overlay(pixels, &maps.mean());
    write_png(&folder.join("attn-overlay.png"), &overlay)?;
    let mut all = vec![pixels, &overlay];
    all.extend(tiles.iter());
    write_png(&folder.join("attention-sheet.png"), &sheet(&all))?;
    let masks = if maps.mask.is_some() { maps.heads() } else { 0 };
    Ok(maps.heads() + masks + 2)
}

fn write_png(path: &Path, img: &RgbImage) -> Result<()> {
    crate::files::write_output_via(path, |tmp| -> Result<()> { Ok(img.save_with_format(tmp, image::ImageFormat::Png)?) })
        .with_context(|| format!("cannot write {}", path.shown()))
}
