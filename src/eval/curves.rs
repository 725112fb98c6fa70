//! `dino compare --plot`: runs' loss and k-NN top-1 in one figure, stacked, against iteration or
//! training time, one colour per run in both panels and a legend naming what differs.

use super::figure::{draw_error, font, rgb, Figure};
use super::plot::PALETTE;
use crate::run::compare::{CurvePoint, Curves};
use plotters::coord::Shift;
use plotters::prelude::*;

/// The x axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// Iterations.
    Iter,
    /// Minutes spent in iterations (pauses and evaluations left out).
    Time,
}

impl By {
    /// `--by`'s spelling.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "iter" => Ok(Self::Iter),
            "time" => Ok(Self::Time),
            other => Err(format!("`{other}`: expected iter or time")),
        }
    }

    fn x(self, p: &CurvePoint) -> f64 {
        match self {
            Self::Iter => p.iter as f64,
            Self::Time => p.seconds / 60.0,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Iter => "iteration",
            Self::Time => "minutes of training",
        }
    }
}

/// The figure: each run's curves with the label its legend entry reads.
pub struct ComparePlot<'a> {
    pub runs: Vec<(String, &'a Curves)>,
    pub by: By,
}

impl ComparePlot<'_> {
    fn x_max(&self) -> f64 {
        let all = self.runs.iter().flat_map(|(_, c)| c.loss.iter().chain(&c.knn));
        all.map(|p| self.by.x(p)).fold(0.0, f64::max).max(1e-6)
    }

    fn panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        title: &str,
        y_desc: &str,
        points: fn(&Curves) -> &[CurvePoint],
    ) -> Result<(), String> {
        let values = || self.runs.iter().flat_map(|(_, c)| points(c).iter().map(|p| p.value));
        let (lo, hi) = (values().fold(f64::INFINITY, f64::min), values().fold(f64::NEG_INFINITY, f64::max));
        let (lo, hi) = if lo.is_finite() && hi.is_finite() { (lo, hi) } else { (0.0, 1.0) };
        let pad = ((hi - lo) * 0.08).max(hi.abs() * 0.02).max(1e-3);
        let mut chart = ChartBuilder::on(area)
            .caption(title, font(14))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0f64..self.x_max(), (lo - pad)..(hi + pad))
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .x_desc(self.by.name())
            .y_desc(y_desc)
            .label_style(font(12))
            .axis_desc_style(font(13))
            .draw()
            .map_err(draw_error)?;
        for (i, (label, curves)) in self.runs.iter().enumerate() {
            let color = rgb(PALETTE[i % PALETTE.len()]);
            let line = points(curves).iter().map(|p| (self.by.x(p), p.value));
            chart
                .draw_series(LineSeries::new(line, color.stroke_width(2)))
                .map_err(draw_error)?
                .label(label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3)));
            let dots = points(curves).iter().map(|p| Circle::new((self.by.x(p), p.value), 3, color.filled()));
            if points(curves).len() <= 60 {
                chart.draw_series(dots).map_err(draw_error)?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(font(12))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(draw_error)
    }
}

impl Figure for ComparePlot<'_> {
    fn size(&self) -> (u32, u32) {
        (760, 640)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(draw_error)?;
        let panels = root.split_evenly((2, 1));
        self.panel(&panels[0], "loss (mean of each 1/400 of the run)", "loss", |c| &c.loss)?;
        self.panel(&panels[1], "k-NN top-1 (k = 20)", "top-1 %", |c| &c.knn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(scale: f64) -> Curves {
        let p = |i: usize, v: f64| CurvePoint { iter: i, seconds: i as f64 * 2.0, value: v };
        Curves {
            loss: (0..50).map(|i| p(i * 10, 5.0 - scale * i as f64 / 50.0)).collect(),
            knn: (1..=5).map(|e| p(e * 100, 30.0 + scale * 5.0 * e as f64)).collect(),
        }
    }

    #[test]
    fn both_panels_draw_a_line_per_run_with_the_legend() {
        let (a, b) = (run(1.0), run(2.0));
        let plot = ComparePlot { runs: vec![("lr=0.001".into(), &a), ("lr=0.004".into(), &b)], by: By::Time };
        let svg = super::super::figure::svg(&plot).unwrap();
        // Each run's colour: its loss and k-NN lines and their two legend samples.
        for colour in ["#1F77B4", "#FF7F0E"] {
            assert_eq!(svg.matches(&format!("<polyline fill=\"none\" opacity=\"1\" stroke=\"{colour}\"")).count(), 4, "{colour}\n{svg}");
        }
        assert!(svg.contains("lr=0.004") && svg.contains("minutes of training"), "{svg}");
    }
}
