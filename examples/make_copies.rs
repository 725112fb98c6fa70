//! A planted copy-detection set (issue 34): copies a data set (`pretext/`, `train/CLASS/`,
//! `val/CLASS/`, any other files) to a new folder and adds edited copies of a seeded random choice
//! of its train images, filed under new names in the same class folders. Each copy gets a random
//! subset of the edits copy-detection benchmarks use (at least one): a crop of 60-85 % of the side
//! resized back, a horizontal mirror, a brightness and contrast change, JPEG re-compression at
//! quality 30-70 (a copy without that edit is written as lossless PNG). The planted pairs and their
//! edits go to a CSV (`original,copy,edits`, paths relative to the new folder).
//!
//! `cargo run --release --example make_copies -- --src DIR --out DIR [--count 40] [--seed 0]
//!  [--pairs FILE]` (default FILE: OUT/planted-copies.csv); `scripts/make-copy-set.sh` runs it on
//! `../shared/data/cifar-vehicles`. tests/duplicates.rs includes this file for its small sets.

use anyhow::{bail, Context, Result};
use image::codecs::jpeg::JpegEncoder;
use image::imageops::{self, FilterType};
use image::RgbImage;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

/// The edits one copy received, in the order they were applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Edits {
    /// Side of the crop as a share of the image's side (0.60-0.85), resized back.
    pub crop: Option<f64>,
    pub mirror: bool,
    /// Brightness and contrast factors (each 0.6-1.4).
    pub colour: Option<(f64, f64)>,
    /// JPEG quality (30-70); `None`: written as PNG.
    pub jpeg: Option<u8>,
}

impl Edits {
    /// Each edit with probability one half, at least one.
    pub fn draw(rng: &mut impl Rng) -> Self {
        loop {
            let e = Self {
                crop: rng.random_bool(0.5).then(|| rng.random_range(0.60..=0.85)),
                mirror: rng.random_bool(0.5),
                colour: rng.random_bool(0.5).then(|| (rng.random_range(0.6..=1.4), rng.random_range(0.6..=1.4))),
                jpeg: rng.random_bool(0.5).then(|| rng.random_range(30..=70)),
            };
            if e != Self::default() {
                return e;
            }
        }
    }

    /// `crop=0.72;mirror;colour=1.21/0.83;jpeg=45`: the CSV's `edits` column.
    pub fn describe(&self) -> String {
        let mut parts = vec![];
        if let Some(c) = self.crop {
            parts.push(format!("crop={c:.2}"));
        }
        if self.mirror {
            parts.push("mirror".to_string());
        }
        if let Some((b, c)) = self.colour {
            parts.push(format!("colour={b:.2}/{c:.2}"));
        }
        if let Some(q) = self.jpeg {
            parts.push(format!("jpeg={q}"));
        }
        parts.join(";")
    }
}

/// `img` with the pixel edits of `e` (crop at a random place, mirror, brightness then contrast
/// as Pillow's `ImageEnhance` does them: a scale, then a blend with the mean grey).
pub fn apply(img: &RgbImage, e: &Edits, rng: &mut impl Rng) -> RgbImage {
    let (w, h) = img.dimensions();
    let mut out = img.clone();
    if let Some(share) = e.crop {
        let (cw, ch) = (((w as f64 * share).round() as u32).max(1), ((h as f64 * share).round() as u32).max(1));
        let (x, y) = (rng.random_range(0..=w - cw), rng.random_range(0..=h - ch));
        let cropped = imageops::crop_imm(img, x, y, cw, ch).to_image();
        out = imageops::resize(&cropped, w, h, FilterType::CatmullRom);
    }
    if e.mirror {
        out = imageops::flip_horizontal(&out);
    }
    if let Some((brightness, contrast)) = e.colour {
        let clamp = |v: f64| v.round().clamp(0.0, 255.0) as u8;
        out.pixels_mut().for_each(|p| p.0 = p.0.map(|v| clamp(v as f64 * brightness)));
        let grey = out.pixels().map(|p| 0.299 * p.0[0] as f64 + 0.587 * p.0[1] as f64 + 0.114 * p.0[2] as f64).sum::<f64>()
            / (w * h).max(1) as f64;
        out.pixels_mut().for_each(|p| p.0 = p.0.map(|v| clamp(grey + (v as f64 - grey) * contrast)));
    }
    out
}

/// Writes `img` as JPEG at `quality`, or as PNG when `None`.
pub fn save(img: &RgbImage, path: &Path, jpeg: Option<u8>) -> Result<()> {
    match jpeg {
        Some(q) => {
            let mut bytes = vec![];
            JpegEncoder::new_with_quality(&mut bytes, q).encode_image(img)?;
            std::fs::write(path, bytes)?;
        }
        None => img.save(path)?,
    }
    Ok(())
}

fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    std::fs::create_dir_all(dst).with_context(|| format!("cannot create {}", dst.display()))?;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(src)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    entries.sort();
    for p in entries {
        let to = dst.join(p.file_name().unwrap_or_default());
        if p.is_dir() {
            copy_tree(&p, &to)?;
        } else {
            std::fs::copy(&p, &to).with_context(|| format!("cannot copy {}", p.display()))?;
        }
    }
    Ok(())
}

fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = vec![];
    for class in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let class = class?.path();
        if class.is_dir() {
            for f in std::fs::read_dir(&class)? {
                let f = f?.path();
                if f.extension().is_some_and(|e| ["jpg", "jpeg", "png"].contains(&e.to_string_lossy().to_lowercase().as_str())) {
                    files.push(f);
                }
            }
        }
    }
    files.sort();
    Ok(files)
}

/// A file name in `dir` no file has, numbered after the highest number there (`1250.jpg`), so
/// nothing in the name tells a copy from an original.
fn fresh_name(dir: &Path, ext: &str) -> Result<PathBuf> {
    let highest = std::fs::read_dir(dir)?.filter_map(|e| e.ok()?.path().file_stem()?.to_str()?.parse::<u64>().ok()).max().unwrap_or(0);
    Ok(dir.join(format!("{:04}.{ext}", highest + 1)))
}

/// One planted pair: the original and its copy (relative to the planted set's root) and the edits.
#[derive(Debug, Clone)]
pub struct Planted {
    pub original: String,
    pub copy: String,
    pub edits: Edits,
}

/// Copies `src` to `out` (which must not exist yet) and plants `count` edited copies of train
/// images chosen with `seed`; returns the pairs.
pub fn plant(src: &Path, out: &Path, count: usize, seed: u64) -> Result<Vec<Planted>> {
    if out.exists() {
        bail!("{} exists already: give a new folder", out.display());
    }
    let train = src.join("train");
    let files = image_files(&train)?;
    if files.len() < count {
        bail!("{} holds {} images in class folders, fewer than the {count} to copy", train.display(), files.len());
    }
    copy_tree(src, out)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut chosen = sample(&mut rng, files.len(), count).into_vec();
    chosen.sort_unstable();
    let mut planted = vec![];
    for i in chosen {
        let rel = files[i].strip_prefix(src).unwrap_or(&files[i]).to_path_buf();
        let img = image::open(&files[i]).with_context(|| format!("cannot read {}", files[i].display()))?.to_rgb8();
        let edits = Edits::draw(&mut rng);
        let copy = apply(&img, &edits, &mut rng);
        let dir = out.join(rel.parent().unwrap_or(Path::new("")));
        let path = fresh_name(&dir, if edits.jpeg.is_some() { "jpg" } else { "png" })?;
        save(&copy, &path, edits.jpeg)?;
        let copy_rel = path.strip_prefix(out).unwrap_or(&path).to_string_lossy().into_owned();
        planted.push(Planted { original: rel.to_string_lossy().into_owned(), copy: copy_rel, edits });
    }
    Ok(planted)
}

/// The pairs as CSV: `original,copy,edits`.
pub fn write_pairs(path: &Path, planted: &[Planted]) -> Result<()> {
    let mut text = String::from("original,copy,edits\n");
    for p in planted {
        text.push_str(&format!("{},{},{}\n", p.original, p.copy, p.edits.describe()));
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

#[allow(dead_code)]
fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let src = PathBuf::from(flag("--src").unwrap_or_else(|| "../shared/data/cifar-vehicles".into()));
    let Some(out) = flag("--out").map(PathBuf::from) else { bail!("give --out DIR: the new folder for the planted set") };
    let count: usize = flag("--count").map_or(Ok(40), |v| v.parse().context("--count: expected a number"))?;
    let seed: u64 = flag("--seed").map_or(Ok(0), |v| v.parse().context("--seed: expected a number"))?;
    let pairs = flag("--pairs").map_or_else(|| out.join("planted-copies.csv"), PathBuf::from);
    let planted = plant(&src, &out, count, seed)?;
    write_pairs(&pairs, &planted)?;
    println!("{}: {} planted copies of train images (pairs: {})", out.display(), planted.len(), pairs.display());
    Ok(())
}
