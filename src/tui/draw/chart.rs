//! A line chart over pre-downsampled points, with bounds and labels computed from the data. Every
//! chart in the UI goes through here so they look and scale alike.

use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::symbols::Marker;
use ratatui::text::Line;
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType};
use ratatui::Frame;

pub struct ChartSeries {
    pub points: Vec<(f64, f64)>,
    pub style: Style,
    pub marker: Marker,
    /// Lines between the points, or the points alone (sparse series, where a line of one point
    /// would not show).
    pub graph: GraphType,
}

impl ChartSeries {
    pub fn new(points: Vec<(f64, f64)>, style: Style) -> Self {
        Self { points, style, marker: Marker::Braille, graph: GraphType::Line }
    }

    /// The points alone, each drawn with `marker`.
    pub fn scatter(points: Vec<(f64, f64)>, style: Style, marker: Marker) -> Self {
        Self { points, style, marker, graph: GraphType::Scatter }
    }

    /// A horizontal line at `y` across `x` (a reference level: chance, a baseline).
    pub fn level(y: f64, [x0, x1]: [f64; 2], style: Style) -> Self {
        Self { points: vec![(x0, y), (x1, y)], style, marker: Marker::Dot, graph: GraphType::Line }
    }
}

pub struct ChartSpec<'a> {
    pub block: Block<'a>,
    pub series: Vec<ChartSeries>,
    pub x_bounds: [f64; 2],
    /// Axis labels (the x and y ranges) shown when the chart has room for them.
    pub labels: bool,
    /// Formats a y value for the labels (log-scale charts undo the log here).
    pub y_fmt: fn(f64) -> String,
    /// A vertical marker (current iteration) drawn over the series.
    pub marker_x: Option<(f64, Style)>,
    pub axis_style: Style,
}

/// y bounds over all points with a little headroom; a flat series gets a band around its value.
pub fn y_bounds(series: &[ChartSeries]) -> Option<[f64; 2]> {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for s in series {
        for &(_, y) in &s.points {
            lo = lo.min(y);
            hi = hi.max(y);
        }
    }
    if !lo.is_finite() || !hi.is_finite() {
        return None;
    }
    // A series that moves by less than a thousandth of its value (a momentum of 0.98999 to
    // 0.99001) is drawn as flat: padding its own span would print one value at both ends.
    let span = if hi - lo > 1e-3 * hi.abs().max(lo.abs()) { hi - lo } else { 0.0 };
    let pad = if span > 0.0 {
        span * 0.05
    } else if lo != 0.0 {
        lo.abs() * 0.05
    } else {
        1.0
    };
    // The headroom never crosses a bound the data respects: a learning rate or an accuracy
    // (never below 0) gets no negative axis, a momentum (in [0, 1]) no axis above 1.
    let floor = if lo >= 0.0 { 0.0 } else { f64::NEG_INFINITY };
    let ceiling = if lo >= 0.0 && hi <= 1.0 && hi > lo { 1.0 } else { f64::INFINITY };
    Some([(lo - pad).max(floor), (hi + pad).min(ceiling)])
}

pub fn render(frame: &mut Frame, area: Rect, spec: ChartSpec<'_>) {
    let Some([y0, y1]) = y_bounds(&spec.series) else {
        frame.render_widget(spec.block, area);
        return;
    };
    let [x0, x1] = spec.x_bounds;
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    let marker_pts = spec.marker_x.map(|(x, _)| vec![(x, y0), (x, y1)]).unwrap_or_default();
    // A line through one point draws nothing: a lone point is drawn as a visible mark.
    let mut datasets: Vec<Dataset> = spec
        .series
        .iter()
        .map(|s| {
            let (marker, graph) = if s.points.len() == 1 { (Marker::Block, GraphType::Scatter) } else { (s.marker, s.graph) };
            Dataset::default().marker(marker).graph_type(graph).style(s.style).data(&s.points)
        })
        .collect();
    if let Some((_, style)) = spec.marker_x {
        datasets.push(Dataset::default().marker(Marker::Braille).graph_type(GraphType::Line).style(style).data(&marker_pts));
    }
    let mut x_axis = Axis::default().bounds([x0, x1]).style(spec.axis_style);
    let mut y_axis = Axis::default().bounds([y0, y1]).style(spec.axis_style);
    if spec.labels && area.height >= 6 && area.width >= 24 {
        x_axis = x_axis.labels([Line::from(format!("{}", x0.round() as i64)), Line::from(format!("{}", x1.round() as i64))]);
        y_axis = y_axis.labels([Line::from((spec.y_fmt)(y0)), Line::from((spec.y_fmt)(y1))]);
    }
    let chart = Chart::new(datasets).block(spec.block).x_axis(x_axis).y_axis(y_axis);
    frame.render_widget(chart, area);
}

/// A text bar like `█████░░░░░`, readable without colour.
pub fn bar(width: usize, fraction: f64) -> String {
    let f = if fraction.is_finite() { fraction.clamp(0.0, 1.0) } else { 0.0 };
    let full = ((width as f64) * f).round() as usize;
    let full = full.min(width);
    "█".repeat(full) + &"░".repeat(width - full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headroom_stays_inside_the_range_the_data_keeps() {
        let s = |pts: &[f64]| vec![ChartSeries::new(pts.iter().map(|y| (0.0, *y)).collect(), Style::default())];
        assert_eq!(y_bounds(&s(&[1e-6, 5e-4])).map(|b| b[0]), Some(0.0), "a learning rate gets no negative axis");
        assert_eq!(y_bounds(&s(&[0.996, 1.0])).map(|b| b[1]), Some(1.0), "a momentum stays at most 1");
        let nearly_flat = y_bounds(&s(&[0.98999, 0.99001])).unwrap_or_default();
        let fmt = crate::tui::format::fmt_value;
        assert_ne!(fmt(nearly_flat[0]), fmt(nearly_flat[1]), "{nearly_flat:?}: the axis names two values");
        let loss = y_bounds(&s(&[-1.0, 3.0])).unwrap_or_default();
        assert!(loss[0] < -1.0 && loss[1] > 3.0, "{loss:?}");
    }
}
