//! File to 8-bit RGB, whatever the file holds: the format is read from the content (a PNG named
//! `.jpg` still loads), EXIF orientation is applied as PIL's `exif_transpose` would, and every
//! colour model (grey, palette, alpha, CMYK, 16-bit) becomes RGB8 like PIL's `convert("RGB")`.

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};
use std::io::Cursor;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode {path}: {reason}")]
pub struct DecodeError {
    pub path: PathBuf,
    pub reason: String,
}

impl DecodeError {
    fn new(path: &Path, reason: impl Into<String>) -> Self {
        Self { path: path.to_path_buf(), reason: reason.into() }
    }
}

pub fn load_rgb(path: &Path) -> Result<RgbImage, DecodeError> {
    let bytes = std::fs::read(path).map_err(|e| DecodeError::new(path, e.to_string()))?;
    decode_rgb(&bytes).map_err(|reason| DecodeError::new(path, reason))
}

/// Decodes an in-memory file; the error is a reason without a path, for callers that have one.
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, String> {
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    if reader.format().is_none() {
        return Err("not an image (content matches no supported format)".into());
    }
    let mut decoder = reader.into_decoder().map_err(|e| format!("corrupt or unsupported: {e}"))?;
    // A broken EXIF block must not cost the pixels: fall back to the stored orientation.
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| format!("corrupt or truncated: {e}"))?;
    img.apply_orientation(orientation);
    Ok(match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.into_rgb8(),
    })
}
