//! Figures written to files: the label-efficiency plot and the 2-D map of the embeddings. Each is
//! drawn once, by `plotters`, on any backend; `write` picks SVG or PNG from the file name. Text
//! uses DejaVu Sans embedded in the binary (`assets/fonts`, its licence beside it), so a figure
//! looks the same on every machine and needs no font installed.

use super::EvalError;
use crate::files::ShowPath;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is a constant of the binary; should it ever be refused, text is drawn with
        // nothing and the figure keeps its shapes.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES);
    });
}

/// Something that draws itself on a drawing area of any backend.
pub trait Figure {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

fn fail<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

/// Whether a figure named `path` is SVG (`.svg`) or PNG (`.png`, or no extension: a device such
/// as `/dev/stdout`); any other extension is refused, as its bytes would not be what it names
/// (`x.bmp` once held PNG bytes).
pub fn is_svg(path: &Path) -> Result<bool, EvalError> {
    match path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).as_deref() {
        Some("svg") => Ok(true),
        Some("png") | None => Ok(false),
        Some(other) => Err(EvalError::Invalid(format!("{}: a figure is written as .png or .svg, not .{other}", path.shown()))),
    }
}

/// Writes `figure` to `path` atomically, as the extension names (`is_svg`).
pub fn write(path: &Path, figure: &impl Figure) -> Result<(), EvalError> {
    register_font();
    let svg_wanted = is_svg(path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| EvalError::io(dir, e))?;
    }
    let bytes = if svg_wanted { svg(figure)?.into_bytes() } else { png(figure)? };
    crate::run::dir::write_atomic(path, &bytes).map_err(|e| EvalError::io(path, format!("{e:#}")))
}

pub fn svg(figure: &impl Figure) -> Result<String, EvalError> {
    register_font();
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, figure.size()).into_drawing_area();
        figure.draw(&root).and_then(|()| root.present().map_err(fail)).map_err(EvalError::Invalid)?;
    }
    Ok(out)
}

pub fn png(figure: &impl Figure) -> Result<Vec<u8>, EvalError> {
    register_font();
    let (w, h) = figure.size();
    let mut pixels = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
        figure.draw(&root).and_then(|()| root.present().map_err(fail)).map_err(EvalError::Invalid)?;
    }
    let img = image::RgbImage::from_raw(w, h, pixels).ok_or_else(|| EvalError::Invalid("figure buffer has the wrong size".into()))?;
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).map_err(|e| EvalError::Invalid(format!("cannot encode the figure as PNG: {e}")))?;
    Ok(out.into_inner())
}

pub fn rgb((r, g, b): (u8, u8, u8)) -> RGBColor {
    RGBColor(r, g, b)
}

/// The embedded font at `size` pixels.
pub fn font(size: u32) -> FontDesc<'static> {
    (FONT, size).into_font()
}

pub fn draw_error<E: std::fmt::Debug>(e: E) -> String {
    fail(e)
}
