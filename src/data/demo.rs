//! A small synthetic data set in the project's layout, so the demo and the tests can train and
//! evaluate without downloading anything. The classes differ in texture (lattices, stripes of
//! three orientations) drawn in random grey levels, so a self-supervised model has something to
//! learn from crops that k-NN can then measure, and random weights little to go on.

use super::layout::DataLayout;
use super::rng::rng_for;
use super::DataError;
use crate::files::ShowPath;
use image::codecs::jpeg::JpegEncoder;
use image::{ImageFormat, Rgb, RgbImage};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

pub const DEMO_CLASSES: [&str; 5] = ["checkers", "dots", "dstripes", "hstripes", "vstripes"];
const MARKER: &str = "demo.json";
/// Bumped whenever the drawing changes, so an old set on disk is regenerated.
const GENERATOR_VERSION: u32 = 2;
const SPLIT_PRETEXT: u64 = 0;
const SPLIT_TRAIN: u64 = 1;
const SPLIT_VAL: u64 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Marker {
    version: u32,
    per_class: usize,
    seed: u64,
    size: u32,
    train: usize,
    val: usize,
    pretext: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoSummary {
    pub dir: PathBuf,
    pub classes: Vec<String>,
    pub train: usize,
    pub val: usize,
    pub pretext: usize,
    /// True when a complete set with the same parameters was already there.
    pub reused: bool,
}

impl fmt::Display for DemoSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.reused { "already present" } else { "written" };
        write!(
            f,
            "demo data {verb} in {}: pretext/ {} images, train/ {} and val/ {} in {} classes ({})",
            self.dir.shown(),
            self.pretext,
            self.train,
            self.val,
            self.classes.len(),
            self.classes.join(", ")
        )
    }
}

pub fn write_demo_dataset(dir: &Path, per_class: usize, seed: u64, size: u32) -> Result<DemoSummary, DataError> {
    if per_class == 0 {
        return Err(DataError::Invalid("--per_class must be at least 1".into()));
    }
    if !(8..=1024).contains(&size) {
        return Err(DataError::Invalid(format!("--size must be between 8 and 1024 pixels, got {size}")));
    }
    let classes: Vec<String> = DEMO_CLASSES.iter().map(|s| s.to_string()).collect();
    let per_class_val = per_class.div_ceil(4);
    let marker = Marker {
        version: GENERATOR_VERSION,
        per_class,
        seed,
        size,
        train: per_class * classes.len(),
        val: per_class_val * classes.len(),
        pretext: per_class * classes.len(),
    };
    let summary = |reused| DemoSummary {
        dir: dir.to_path_buf(),
        classes: classes.clone(),
        train: marker.train,
        val: marker.val,
        pretext: marker.pretext,
        reused,
    };
    if is_complete(dir, &marker) {
        return Ok(summary(true));
    }
    // A partial or different set would mix with the new one; start from clean split folders.
    for split in ["pretext", "train", "val"] {
        let p = dir.join(split);
        if p.exists() {
            fs::remove_dir_all(&p).map_err(|e| DataError::io(&p, e))?;
        }
    }
    for (c, class) in classes.iter().enumerate() {
        for (split, tag, count) in [("train", SPLIT_TRAIN, per_class), ("val", SPLIT_VAL, per_class_val)] {
            let folder = dir.join(split).join(class);
            fs::create_dir_all(&folder).map_err(|e| DataError::io(&folder, e))?;
            for i in 0..count {
                let mut rng = rng_for(&[seed, tag, c as u64, i as u64]);
                let img = render(c, size, &mut rng);
                write_image(&img, &folder.join(file_name(class, i)))?;
            }
        }
    }
    let pretext = dir.join("pretext");
    fs::create_dir_all(&pretext).map_err(|e| DataError::io(&pretext, e))?;
    for i in 0..marker.pretext {
        // Neutral names and a class drawn at random: the folder must not leak labels.
        let mut rng = rng_for(&[seed, SPLIT_PRETEXT, i as u64]);
        let c = rng.random_range(0..classes.len());
        write_image(&render(c, size, &mut rng), &pretext.join(file_name("img", i)))?;
    }
    let path = dir.join(MARKER);
    let json = serde_json::to_string_pretty(&marker).map_err(|e| DataError::Write { path: path.clone(), reason: e.to_string() })?;
    fs::write(&path, json).map_err(|e| DataError::io(&path, e))?;
    Ok(summary(false))
}

/// Both encoders in one set, so the loader's decoding is exercised on each.
fn file_name(stem: &str, i: usize) -> String {
    let ext = if i.is_multiple_of(2) { "png" } else { "jpg" };
    format!("{stem}_{i:05}.{ext}")
}

fn is_complete(dir: &Path, want: &Marker) -> bool {
    let Ok(text) = crate::files::read_to_string(&dir.join(MARKER)) else { return false };
    let Ok(found) = serde_json::from_str::<Marker>(&text) else { return false };
    if &found != want {
        return false;
    }
    match DataLayout::discover(dir) {
        Ok(l) => {
            l.pretext().len() == want.pretext
                && l.train().map(|s| s.len()) == Some(want.train)
                && l.val().map(|s| s.len()) == Some(want.val)
        }
        Err(_) => false,
    }
}

fn write_image(img: &RgbImage, path: &Path) -> Result<(), DataError> {
    let err = |e: image::ImageError| DataError::Write { path: path.to_path_buf(), reason: e.to_string() };
    if path.extension().is_some_and(|e| e == "jpg") {
        let file = fs::File::create(path).map_err(|e| DataError::io(path, e))?;
        let mut w = BufWriter::new(file);
        JpegEncoder::new_with_quality(&mut w, 90).encode_image(img).map_err(err)
    } else {
        img.save_with_format(path, ImageFormat::Png).map_err(err)
    }
}

/// One image of class `class`: a texture two random grey levels draw (at least 60 apart, either
/// one the foreground), with pixel noise. The classes differ in structure visible in any crop:
/// lattices (checkers, dots) at a random angle, stripes near one of three orientations (a
/// horizontal flip maps each onto itself, so DINO's augmentation keeps them apart). Grey levels
/// rather than colours because two crops of one image share its colours: with random colours
/// DINO learns colour, which says nothing of the class (docs/evaluation.md, "The demo").
pub(crate) fn render<R: Rng>(class: usize, size: u32, rng: &mut R) -> RgbImage {
    let s = size as f32;
    // The period scales with the image: 6-14 px at the demo's 48 px.
    let period = rng.random_range(0.125..0.29) * s;
    let mask = Texture::draw(class, s, period, rng);
    let (mut bg, mut fg) = grey_pair(rng);
    if rng.random_bool(0.5) {
        std::mem::swap(&mut bg, &mut fg);
    }
    let mut img = RgbImage::new(size, size);
    for (x, y, px) in img.enumerate_pixels_mut() {
        let level = if mask.covers(x as f32 + 0.5, y as f32 + 0.5) { fg } else { bg };
        let c: [f32; 3] = std::array::from_fn(|_| level + rng.random_range(-10.0..10.0f32));
        *px = Rgb(c.map(|v| v.clamp(0.0, 255.0) as u8));
    }
    img
}

/// Two grey levels at least 60 apart.
fn grey_pair<R: Rng>(rng: &mut R) -> (f32, f32) {
    let a: f32 = rng.random_range(0.0..255.0);
    let mut b: f32 = rng.random_range(0.0..255.0);
    while (a - b).abs() < 60.0 {
        b = rng.random_range(0.0..255.0);
    }
    (a, b)
}

/// A class's pattern, placed at random: a point is foreground or not.
struct Texture {
    class: usize,
    period: f32,
    /// The pattern's frame: origin and direction of its first axis.
    cx: f32,
    cy: f32,
    cos: f32,
    sin: f32,
}

impl Texture {
    fn draw<R: Rng>(class: usize, s: f32, period: f32, rng: &mut R) -> Self {
        let angle = match DEMO_CLASSES[class] {
            // Stripes across the named direction, within 15 degrees; diagonal either way.
            "vstripes" => rng.random_range(-15.0..15.0f32).to_radians(),
            "hstripes" => (90.0 + rng.random_range(-15.0..15.0f32)).to_radians(),
            "dstripes" => (45.0 + rng.random_range(-15.0..15.0f32) + if rng.random_bool(0.5) { 90.0 } else { 0.0 }).to_radians(),
            _ => rng.random_range(0.0..std::f32::consts::TAU),
        };
        let (sin, cos) = angle.sin_cos();
        Self { class, period, cx: rng.random_range(0.0..s), cy: rng.random_range(0.0..s), cos, sin }
    }

    fn covers(&self, x: f32, y: f32) -> bool {
        let (dx, dy) = (x - self.cx, y - self.cy);
        let (u, v) = (dx * self.cos + dy * self.sin, -dx * self.sin + dy * self.cos);
        let p = self.period;
        match DEMO_CLASSES[self.class] {
            "checkers" => ((u / p).floor() + (v / p).floor()).rem_euclid(2.0) < 1.0,
            "dots" => {
                let (fu, fv) = ((u / p).rem_euclid(1.0) - 0.5, (v / p).rem_euclid(1.0) - 0.5);
                fu * fu + fv * fv < 0.09
            }
            _ => (u / p).rem_euclid(1.0) < 0.5,
        }
    }
}
