//! Accuracy against labels per class: a braille chart for the terminal (`textplots`) and an SVG
//! file written by hand (no plotting dependency), both on a log-scaled x axis.

use std::fmt::Write as _;
use textplots::{Chart, ColorPlot, Shape};

/// One method's curve: (labels per class, mean accuracy, standard deviation).
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64, f64)>,
    pub color: (u8, u8, u8),
}

pub const PALETTE: [(u8, u8, u8); 6] = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)];

fn log_x(n: f64) -> f64 {
    n.max(1.0).log10()
}

/// The chart as text (colours as ANSI escapes), with a legend under it.
pub fn terminal(series: &[Series], width: u32, height: u32) -> String {
    let xmax = series.iter().flat_map(|s| s.points.iter().map(|p| log_x(p.0))).fold(0.0f64, f64::max).max(0.1);
    let shapes: Vec<Vec<(f32, f32)>> = series.iter().map(|s| s.points.iter().map(|p| (log_x(p.0) as f32, p.1 as f32)).collect()).collect();
    let shapes: Vec<Shape> = shapes.iter().map(|p| Shape::Lines(p)).collect();
    let mut chart = Chart::new_with_y_range(width, height, 0.0, xmax as f32, 0.0, 100.0);
    let mut c = &mut chart;
    for (s, shape) in series.iter().zip(&shapes) {
        let (r, g, b) = s.color;
        c = c.linecolorplot(shape, rgb::RGB8 { r, g, b });
    }
    c.axis();
    c.figures();
    let mut out = format!("{c}\n");
    let _ = writeln!(out, "x: labeled images per class, log10 scale (0 = 1, 1 = 10, 2 = 100); y: top-1 %");
    for s in series {
        let (r, g, b) = s.color;
        let _ = writeln!(out, "  \x1b[38;2;{r};{g};{b}m━━\x1b[0m {}", s.name);
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A self-contained SVG: axes with ticks at 1, 10, 100, ..., one polyline with points and
/// +-std error bars per series, and a legend.
pub fn svg(series: &[Series], title: &str) -> String {
    let (w, h) = (720.0, 440.0);
    let (left, right, top, bottom) = (60.0, 200.0, 40.0, 50.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let xmax = series.iter().flat_map(|s| s.points.iter().map(|p| log_x(p.0))).fold(0.0f64, f64::max).max(0.1);
    let px = |n: f64| left + log_x(n) / xmax * pw;
    let py = |acc: f64| top + (1.0 - acc.clamp(0.0, 100.0) / 100.0) * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#, left + pw / 2.0, esc(title));
    for acc in (0..=100).step_by(20) {
        let y = py(acc as f64);
        let _ = writeln!(s, r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##, left + pw);
        let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{acc}</text>"#, left - 6.0, y + 4.0);
    }
    let mut tick = 1.0;
    while log_x(tick) <= xmax + 1e-9 {
        let x = px(tick);
        let _ = writeln!(s, r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/>"##, top + ph);
        let _ = writeln!(s, r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{tick}</text>"#, top + ph + 16.0);
        tick *= 10.0;
    }
    let _ = writeln!(s, r#"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">labeled images per class (log scale)</text>"#,
        left + pw / 2.0,
        h - 12.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">top-1 accuracy (%)</text>"#,
        top + ph / 2.0,
        top + ph / 2.0
    );
    for (i, se) in series.iter().enumerate() {
        let (r, g, b) = se.color;
        let color = format!("rgb({r},{g},{b})");
        let pts: Vec<String> = se.points.iter().map(|p| format!("{:.1},{:.1}", px(p.0), py(p.1))).collect();
        let _ = writeln!(s, r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#, pts.join(" "));
        for p in &se.points {
            let (x, y) = (px(p.0), py(p.1));
            if p.2 > 0.0 {
                let _ =
                    writeln!(s, r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="{color}"/>"#, py(p.1 - p.2), py(p.1 + p.2));
            }
            let _ = writeln!(s, r#"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="{color}"/>"#);
        }
        let ly = top + 10.0 + i as f64 * 20.0;
        let lx = left + pw + 14.0;
        let _ = writeln!(s, r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="3"/>"#, lx + 22.0);
        let _ = writeln!(s, r#"<text x="{}" y="{}">{}</text>"#, lx + 28.0, ly + 4.0, esc(&se.name));
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> Vec<Series> {
        vec![
            Series { name: "k-NN <dino>".into(), points: vec![(1.0, 30.0, 5.0), (10.0, 50.0, 2.0), (250.0, 70.0, 0.0)], color: PALETTE[0] },
            Series { name: "random".into(), points: vec![(1.0, 25.0, 1.0), (10.0, 30.0, 1.0), (250.0, 40.0, 0.0)], color: PALETTE[1] },
        ]
    }

    #[test]
    fn svg_has_a_polyline_per_series_and_escapes_names() {
        let s = svg(&demo(), "a & b");
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<polyline").count(), 2);
        assert!(s.contains("k-NN &lt;dino&gt;") && s.contains("a &amp; b"));
        assert_eq!(s.matches("<circle").count(), 6);
    }

    #[test]
    fn terminal_chart_draws_and_lists_the_series() {
        let t = terminal(&demo(), 100, 40);
        assert!(t.contains("random") && t.lines().count() > 10);
    }
}
