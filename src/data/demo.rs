//! A small synthetic data set in the project's layout, so the demo and the tests can train and
//! evaluate without downloading anything. The classes differ in shape and texture, not just in
//! colour, so a self-supervised model has something to learn that k-NN can then measure.

use super::layout::DataLayout;
use super::rng::rng_for;
use super::DataError;
use image::codecs::jpeg::JpegEncoder;
use image::{ImageFormat, Rgb, RgbImage};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

pub const DEMO_CLASSES: [&str; 5] = ["blobs", "checkers", "circles", "stripes", "triangles"];
const MARKER: &str = "demo.json";
/// Bumped whenever the drawing changes, so an old set on disk is regenerated.
const GENERATOR_VERSION: u32 = 1;
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
            self.dir.display(),
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
    let Ok(text) = fs::read_to_string(dir.join(MARKER)) else { return false };
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

fn random_colour<R: Rng>(rng: &mut R) -> [f32; 3] {
    [rng.random_range(0.0..255.0), rng.random_range(0.0..255.0), rng.random_range(0.0..255.0)]
}

/// One image of class `class`: a noisy gradient background and the class's pattern, placed,
/// scaled, rotated and coloured at random.
pub(crate) fn render<R: Rng>(class: usize, size: u32, rng: &mut R) -> RgbImage {
    let s = size as f32;
    let bg0 = random_colour(rng);
    let bg1 = random_colour(rng);
    let fg = random_colour(rng);
    let fg2 = random_colour(rng);
    let angle: f32 = rng.random_range(0.0..std::f32::consts::TAU);
    let (sin, cos) = angle.sin_cos();
    let cx = rng.random_range(0.3..0.7) * s;
    let cy = rng.random_range(0.3..0.7) * s;
    let scale = rng.random_range(0.5..1.0) * s;
    let noise = rng.random_range(4.0..20.0f32);
    let grad_dir = rng.random_range(0.0..std::f32::consts::TAU);
    let (gs, gc) = grad_dir.sin_cos();
    // Class-specific parameters drawn up front so every pixel sees the same shape.
    let circles: Vec<(f32, f32, f32)> = (0..rng.random_range(1..4))
        .map(|_| (rng.random_range(0.2..0.8) * s, rng.random_range(0.2..0.8) * s, rng.random_range(0.1..0.25) * scale))
        .collect();
    let period = rng.random_range(0.12..0.3) * scale;
    let tri: Vec<(f32, f32)> = (0..3)
        .map(|k| {
            let a = angle + k as f32 * std::f32::consts::TAU / 3.0;
            (cx + 0.45 * scale * a.cos(), cy + 0.45 * scale * a.sin())
        })
        .collect();
    let blobs: Vec<(f32, f32, f32, [f32; 3])> = (0..rng.random_range(3..7))
        .map(|_| (rng.random_range(0.0..s), rng.random_range(0.0..s), rng.random_range(0.06..0.2) * s, random_colour(rng)))
        .collect();
    let mut img = RgbImage::new(size, size);
    for (x, y, px) in img.enumerate_pixels_mut() {
        let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
        let t = (((fx - s / 2.0) * gc + (fy - s / 2.0) * gs) / s + 0.5).clamp(0.0, 1.0);
        let mut c = [0.0f32; 3];
        for k in 0..3 {
            c[k] = bg0[k] * (1.0 - t) + bg1[k] * t;
        }
        // Coordinates in the pattern's rotated frame.
        let (u, v) = ((fx - cx) * cos + (fy - cy) * sin, -(fx - cx) * sin + (fy - cy) * cos);
        let paint: Option<[f32; 3]> = match class {
            0 => {
                let mut best: Option<[f32; 3]> = None;
                for &(bx, by, r, col) in &blobs {
                    let d2 = ((fx - bx).powi(2) + (fy - by).powi(2)) / (r * r);
                    if d2 < 1.0 + 0.3 * ((fx * 0.7).sin() * (fy * 0.9).cos()) {
                        best = Some(col);
                    }
                }
                best
            }
            1 => {
                let cell = period.max(2.0);
                let (i, j) = ((u / cell).floor() as i64, (v / cell).floor() as i64);
                Some(if (i + j).rem_euclid(2) == 0 { fg } else { fg2 })
            }
            2 => circles.iter().any(|&(ox, oy, r)| (fx - ox).powi(2) + (fy - oy).powi(2) < r * r).then_some(fg),
            3 => {
                let phase = (u / period.max(2.0)).rem_euclid(1.0);
                Some(if phase < 0.5 { fg } else { fg2 })
            }
            _ => inside_triangle(fx, fy, &tri).then_some(fg),
        };
        if let Some(p) = paint {
            c = p;
        }
        for ch in c.iter_mut() {
            *ch += rng.random_range(-noise..noise);
        }
        *px = Rgb(c.map(|v| v.clamp(0.0, 255.0) as u8));
    }
    img
}

fn inside_triangle(x: f32, y: f32, t: &[(f32, f32)]) -> bool {
    let side = |(ax, ay): (f32, f32), (bx, by): (f32, f32)| (bx - ax) * (y - ay) - (by - ay) * (x - ax);
    let (d0, d1, d2) = (side(t[0], t[1]), side(t[1], t[2]), side(t[2], t[0]));
    (d0 >= 0.0 && d1 >= 0.0 && d2 >= 0.0) || (d0 <= 0.0 && d1 <= 0.0 && d2 <= 0.0)
}
