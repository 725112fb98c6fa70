//! Accuracy against labels per class: a braille chart for the terminal (`textplots`) and a figure
//! for files (`plotters`, through `figure`), both on a log-scaled x axis.

use super::figure::{self, draw_error, font, rgb, Figure};
use super::EvalError;
use colored::Colorize;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::fmt::Write as _;
use textplots::{Chart, ColorPlot, LabelBuilder, LabelFormat, Shape};

/// One method's curve: (labels per class, mean accuracy, standard deviation).
#[derive(Debug, Clone)]
pub struct AccuracyCurve {
    pub name: String,
    pub points: Vec<(f64, f64, f64)>,
    pub color: (u8, u8, u8),
}

pub const PALETTE: [(u8, u8, u8); 6] = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)];

fn log_x(n: f64) -> f64 {
    n.max(1.0).log10()
}

/// The chart as text (colours as ANSI escapes), with a legend under it.
pub fn terminal(series: &[AccuracyCurve], width: u32, height: u32) -> String {
    let xmax = series.iter().flat_map(|s| s.points.iter().map(|p| log_x(p.0))).fold(0.0f64, f64::max).max(0.1);
    let shapes: Vec<Vec<(f32, f32)>> = series.iter().map(|s| s.points.iter().map(|p| (log_x(p.0) as f32, p.1 as f32)).collect()).collect();
    let shapes: Vec<Shape> = shapes.iter().map(|p| Shape::Lines(p)).collect();
    let mut chart = Chart::new_with_y_range(width, height, 0.0, xmax as f32, 0.0, 100.0);
    // The axis names counts, not their logarithms ("1 ... 250", not "0.0 ... 2.4").
    let mut c = chart.x_label_format(LabelFormat::Custom(Box::new(|x| format!("{:.0}", 10f32.powf(x)))));
    for (s, shape) in series.iter().zip(&shapes) {
        let (r, g, b) = s.color;
        c = c.linecolorplot(shape, rgb::RGB8 { r, g, b });
    }
    c.axis();
    c.figures();
    let mut out = format!("{c}\n");
    let _ = writeln!(out, "x: labeled images per class (log scale); y: top-1 %");
    for s in series {
        let (r, g, b) = s.color;
        let _ = writeln!(out, "  {} {}", "━━".truecolor(r, g, b), s.name);
    }
    out
}

/// The label-efficiency figure: top-1 against labeled images per class (log scale), one line with
/// points and +-std bars per method, and a legend.
pub struct LabelEfficiencyPlot<'a> {
    pub series: &'a [AccuracyCurve],
    pub title: &'a str,
}

impl Figure for LabelEfficiencyPlot<'_> {
    fn size(&self) -> (u32, u32) {
        (720, 440)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(draw_error)?;
        let xmax = self.series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).fold(10.0f64, f64::max) * 1.2;
        let mut chart = ChartBuilder::on(root)
            .caption(self.title, font(15))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(48)
            .build_cartesian_2d((0.8f64..xmax).log_scale(), 0f64..100f64)
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .x_desc("labeled images per class (log scale)")
            .y_desc("top-1 accuracy (%)")
            .label_style(font(12))
            .axis_desc_style(font(13))
            .draw()
            .map_err(draw_error)?;
        for s in self.series {
            let color = rgb(s.color);
            let line = s.points.iter().map(|p| (p.0, p.1));
            chart
                .draw_series(LineSeries::new(line, color.stroke_width(2)))
                .map_err(draw_error)?
                .label(s.name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3)));
            let bars = s.points.iter().filter(|p| p.2 > 0.0).map(|p| PathElement::new(vec![(p.0, p.1 - p.2), (p.0, p.1 + p.2)], color));
            chart.draw_series(bars).map_err(draw_error)?;
            chart.draw_series(s.points.iter().map(|p| Circle::new((p.0, p.1), 3, color.filled()))).map_err(draw_error)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font(font(12))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(draw_error)
    }
}

/// The figure as an SVG document.
pub fn svg(series: &[AccuracyCurve], title: &str) -> Result<String, EvalError> {
    figure::svg(&LabelEfficiencyPlot { series, title })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> Vec<AccuracyCurve> {
        vec![
            AccuracyCurve {
                name: "k-NN <dino>".into(),
                points: vec![(1.0, 30.0, 5.0), (10.0, 50.0, 2.0), (250.0, 70.0, 0.0)],
                color: PALETTE[0],
            },
            AccuracyCurve {
                name: "random".into(),
                points: vec![(1.0, 25.0, 1.0), (10.0, 30.0, 1.0), (250.0, 40.0, 0.0)],
                color: PALETTE[1],
            },
        ]
    }

    #[test]
    fn svg_has_a_line_and_points_per_series_and_escapes_names() {
        let s = svg(&demo(), "a & b").unwrap();
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"), "{s}");
        assert!(s.contains("k-NN &lt;dino&gt;") && s.contains("a &amp; b"), "{s}");
        assert!(s.matches("<polyline").count() >= 2, "{s}");
        assert!(s.matches("<circle").count() >= 6, "{s}");
    }

    #[test]
    fn png_is_a_real_image_with_the_lines_drawn() {
        let png = figure::png(&LabelEfficiencyPlot { series: &demo(), title: "t" }).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (720, 440));
        let blue = img.pixels().filter(|p| p.0 == [31, 119, 180]).count();
        assert!(blue > 100, "the first series' colour covers {blue} pixels");
        let dark = img.pixels().filter(|p| p.0.iter().all(|&c| c < 60)).count();
        assert!(dark > 500, "text and axes: {dark} dark pixels");
    }

    #[test]
    fn terminal_chart_draws_and_lists_the_series() {
        let t = terminal(&demo(), 100, 40);
        assert!(t.contains("random") && t.lines().count() > 10);
        // The x axis in counts; the legend's colour is one the lines are drawn in.
        assert!(!t.contains("2.4") && t.contains("log scale"), "{t}");
        colored::control::set_override(true);
        let t = terminal(&demo(), 100, 40);
        colored::control::unset_override();
        let (chart, legend) = t.split_once("x: labeled").unwrap_or_default();
        let first = legend.lines().nth(1).and_then(|l| l.split("━━").next()).unwrap_or_default().trim_start();
        assert!(!first.is_empty() && chart.contains(first), "legend escape {first:?} not in the chart:\n{t}");
    }
}
