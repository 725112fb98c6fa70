//! The Outliers tab: images sorted by a score with their paths, the selected one shown in the
//! terminal with its neighbours, and the 2-D map with classes coloured and the selection marked.
//! Every score kind has its column, side by side, whichever one orders the list.

use super::evaluation::draw_outliers_empty;
use super::key_label;
use crate::eval::outlier_report::{map_bounds, OutlierRow, ScoreKind, CLASS_COLOURS};
use crate::tui::action::Action;
use crate::tui::app::App;
use crate::tui::outlier_view::{protocol_name, Preview};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::canvas::{Canvas, Points};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;
use ratatui_image::Image;
use std::path::Path;

pub fn draw(app: &App, frame: &mut Frame, area: Rect) {
    if app.outliers.rows.is_empty() {
        draw_outliers_empty(app, frame, area);
        return;
    }
    let [list, side] = Layout::horizontal([Constraint::Min(40), Constraint::Percentage(45)]).areas(area);
    match app.outliers.finder.search {
        Some(_) => super::neighbours::draw(app, frame, list),
        None => draw_list(app, frame, list),
    }
    super::neighbours::draw_prompt(app, frame, list);
    let cells = app.outliers.preview_cells;
    let [preview, map] = Layout::vertical([Constraint::Length(cells.height + 2), Constraint::Min(6)]).areas(side);
    draw_preview(app, frame, preview);
    draw_map(app, frame, map);
}

fn class_colour(app: &App, classes: &[String], label: &str) -> Color {
    if app.shell.theme.no_color {
        return Color::Reset;
    }
    match classes.iter().position(|c| c == label) {
        Some(i) => {
            let [r, g, b] = CLASS_COLOURS[i % CLASS_COLOURS.len()];
            Color::Rgb(r, g, b)
        }
        None => Color::Gray,
    }
}

fn draw_list(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.shell.theme;
    let v = &app.outliers;
    let rows = v.visible();
    let title = format!(
        " {} of {} images · by {} · kind {} · class {} · split {} ",
        rows.len(),
        v.rows.len(),
        v.score.name(),
        v.kind_name(),
        v.class.as_deref().unwrap_or("all"),
        v.split.as_deref().unwrap_or("all")
    );
    let block = Block::bordered().title(Span::styled(title, t.title())).border_style(t.border());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let evidence = evidence_line(v);
    let evidence_rows = evidence.as_ref().map_or(0, |e| if e.chars().count() <= inner.width as usize { 1 } else { 2 });
    let [evidence_area, table_area, hint_area] =
        Layout::vertical([Constraint::Length(evidence_rows), Constraint::Min(1), Constraint::Length(2)]).areas(inner);
    if let Some(e) = evidence {
        let style = if v.claims() { t.text() } else { t.muted() };
        frame.render_widget(Paragraph::new(Span::styled(e, style)).wrap(Wrap { trim: true }), evidence_area);
    }
    let keys = |a: Action, what: &str| vec![Span::styled(key_label(app, a), t.accent()), Span::styled(format!(" {what}  "), t.muted())];
    let mut hint: Vec<Span> = vec![];
    for (a, what) in [
        (Action::Right, if v.lens.on { "view" } else { "class" }),
        (Action::CycleSplit, "split"),
        (Action::ToggleScore, "score"),
        (Action::CycleKind, "kind"),
        (Action::EvalAll, "attention"),
        (Action::MarkReviewed, "seen"),
        (Action::MarkKeep, "keep"),
        (Action::MarkExclude, "exclude"),
        (Action::EditSchedule, "export"),
        (Action::CopyPath, "copy path"),
        (Action::Outliers, "rescore"),
    ] {
        hint.extend(keys(a, what));
    }
    frame.render_widget(Paragraph::new(Line::from(hint)).wrap(Wrap { trim: true }), hint_area);
    let columns = fit_columns(&v.available(), v.score, table_area.width, label_width(&rows));
    let table_rows: Vec<Row> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let cells = columns.iter().map(|c| match c {
                Column::Rank => Cell::from(format!("{}", i + 1)),
                Column::Score(k) => {
                    let cell = Cell::from(format!("{:.3}", r.score(*k)));
                    if *k == v.score {
                        cell.style(t.accent())
                    } else {
                        cell
                    }
                }
                Column::Kind => Cell::from(short_kind(&r.kind)),
                Column::Label => Cell::from(label_of(r)),
                Column::Mark => Cell::from(v.marks.get(&r.path).map(|m| m.symbol()).unwrap_or("")),
                Column::Path => Cell::from(r.path.clone()),
            });
            Row::new(cells.collect::<Vec<_>>()).style(t.text())
        })
        .collect();
    let label_width = label_width(&rows);
    let widths: Vec<Constraint> = columns.iter().map(|c| c.constraint(label_width)).collect();
    let header = Row::new(columns.iter().map(|c| c.name()).collect::<Vec<_>>()).style(t.title());
    let table = Table::new(table_rows, widths).header(header).row_highlight_style(t.selected()).column_spacing(COLUMN_SPACING);
    let mut state = TableState::default().with_selected((!rows.is_empty()).then_some(v.selected.min(rows.len() - 1)));
    frame.render_stateful_widget(table, table_area, &mut state);
}

/// `label`, or `label→voted` where the neighbours vote for another class; `–` without labels.
fn label_of(r: &OutlierRow) -> String {
    if r.label.is_empty() {
        "–".to_string()
    } else if r.predicted != r.label {
        format!("{}→{}", r.label, r.predicted)
    } else {
        r.label.clone()
    }
}

/// As wide as the longest "label→voted" (`automobile→truck` is 16), where the path keeps room.
fn label_width(rows: &[&OutlierRow]) -> u16 {
    rows.iter().map(|r| label_of(r).chars().count()).max().unwrap_or(0).clamp(11, 24) as u16
}

const COLUMN_SPACING: u16 = 1;
/// The path column's least width: a `train/CLASS/NNNN.png` path of cifar-vehicles whole (longer
/// ones keep their start); below it a path says little.
const PATH_MIN: u16 = 20;

/// A column of the Outliers table.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Column {
    Rank,
    Score(ScoreKind),
    Kind,
    Label,
    Mark,
    Path,
}

impl Column {
    fn width(self, label_width: u16) -> u16 {
        match self {
            Self::Rank | Self::Kind | Self::Mark => 4,
            Self::Score(_) => 6,
            Self::Label => label_width,
            Self::Path => PATH_MIN,
        }
    }

    fn constraint(self, label_width: u16) -> Constraint {
        match self {
            Self::Path => Constraint::Min(PATH_MIN),
            c => Constraint::Length(c.width(label_width)),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Rank => "#",
            Self::Score(k) => column_name(k),
            Self::Kind => "kind",
            Self::Label => "label→voted",
            Self::Mark => "mark",
            Self::Path => "path",
        }
    }
}

/// The columns that fit `width` whole, in the table's order (rank, scores, kind, label, mark,
/// path). A column that does not fit is dropped, never cut, in this priority (kept first):
/// the path and the score the list is sorted by (always: what the image is and why it is where it
/// is), then `label→voted` (the evidence a person reads first for a mislabel), the mark (what the
/// person has already decided), the other scores in the order `d` cycles them (auto, mislabel,
/// stranger, disagreement, isolation: from the combined score to the narrowest), the kind (auto's
/// kind; the scores beside it say the same), and last the rank (the selection and the title's
/// count say where one is).
fn fit_columns(available: &[ScoreKind], sorted_by: ScoreKind, width: u16, label_width: u16) -> Vec<Column> {
    let mut priority = vec![Column::Path, Column::Score(sorted_by), Column::Label, Column::Mark];
    priority.extend(available.iter().filter(|k| **k != sorted_by).map(|k| Column::Score(*k)));
    priority.extend([Column::Kind, Column::Rank]);
    let mut kept: Vec<Column> = vec![];
    let mut used = 0u16;
    for c in priority {
        let need = c.width(label_width) + if kept.is_empty() { 0 } else { COLUMN_SPACING };
        // The first two are kept whatever the width.
        if kept.len() < 2 || used + need <= width {
            used = used.saturating_add(need);
            kept.push(c);
        }
    }
    let mut order = vec![Column::Rank];
    order.extend(available.iter().map(|k| Column::Score(*k)));
    order.extend([Column::Kind, Column::Label, Column::Mark, Column::Path]);
    order.into_iter().filter(|c| kept.contains(c)).collect()
}

/// What the report may claim and why, for labeled rows: the features' k-NN against random
/// weights; a report without that evidence claims nothing.
fn evidence_line(v: &crate::tui::outlier_view::OutlierView) -> Option<String> {
    if v.rows.iter().all(|r| r.label.is_empty()) {
        return None;
    }
    Some(v.evidence.as_ref().map_or_else(|| "no feature evidence in this report: no label-error claim".to_string(), |e| e.short()))
}

fn column_name(k: ScoreKind) -> &'static str {
    match k {
        ScoreKind::Auto => "auto",
        ScoreKind::Mislabel => "mislab",
        ScoreKind::Stranger => "strang",
        ScoreKind::Disagreement => "disagr",
        ScoreKind::Isolation => "isol",
    }
}

fn short_kind(kind: &str) -> &'static str {
    match kind {
        "mislabel" => "mis",
        "stranger" => "str",
        _ => "",
    }
}

fn draw_preview(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.shell.theme;
    let v = &app.outliers;
    let title = match &v.preview {
        Some(Preview { view: Some(view), .. }) => format!(" {view} ({}) ", protocol_name(&v.picker)),
        _ => format!(" selected ({}) ", protocol_name(&v.picker)),
    };
    let block = Block::bordered().title(Span::styled(title, t.title())).border_style(t.border());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [image_area, info_area] = Layout::horizontal([Constraint::Length(v.preview_cells.width + 1), Constraint::Min(10)]).areas(inner);
    let Some((key, absolute)) = v.selected_image() else { return };
    match &v.preview {
        Some(p) if p.path == key => frame.render_widget(Image::new(&p.protocol), image_area),
        _ => frame.render_widget(Paragraph::new(Span::styled("(image not readable)", t.muted())), image_area),
    }
    let width = info_area.width as usize;
    let lines = match (&v.finder.search, v.selected_row()) {
        (Some(s), _) => hit_lines(app, v.hits().get(s.selected), &absolute, width),
        (None, Some(row)) => info_lines(app, row, width),
        (None, None) => vec![],
    };
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), info_area);
}

/// The selected neighbour: its path, class and similarity to the query.
fn hit_lines<'a>(app: &'a App, hit: Option<&crate::tui::lens::Hit>, absolute: &Path, width: usize) -> Vec<Line<'a>> {
    let t = &app.shell.theme;
    let Some(hit) = hit else { return vec![] };
    let shown = app.outliers.data_root.as_deref().and_then(|r| hit.path.strip_prefix(r).ok()).unwrap_or(&hit.path).display().to_string();
    let mut lines = vec![
        Line::from(Span::styled(fit_path(&shown, width), t.accent())),
        Line::from(vec![
            Span::styled("label ", t.muted()),
            Span::styled(if hit.label.is_empty() { "–".to_string() } else { hit.label.clone() }, t.text()),
            Span::styled("  cosine ", t.muted()),
            Span::styled(format!("{:.3}", hit.similarity), t.text()),
        ]),
    ];
    if let Some(l) = lens_line(app, absolute) {
        lines.insert(1, l);
    }
    lines
}

/// `path` in at most `width` columns: its end (the file name and its folders) kept, the start cut
/// to `…`, so a neighbour takes one line however deep its folder is.
fn fit_path(path: &str, width: usize) -> String {
    let n = path.chars().count();
    if n <= width {
        return path.to_string();
    }
    let keep = width.saturating_sub(1);
    let tail: String = path.chars().skip(n - keep).collect();
    format!("…{tail}")
}

fn info_lines<'a>(app: &'a App, row: &'a OutlierRow, width: usize) -> Vec<Line<'a>> {
    let t = &app.shell.theme;
    let v = &app.outliers;
    let label_of = |p: &str| v.rows.iter().find(|r| r.path == p).map(|r| r.label.as_str()).unwrap_or("?");
    let opt = |x: Option<f64>| x.map(|d| format!("{d:.3}")).unwrap_or_else(|| "–".into());
    let likely = v.likely_error(row).map(|c| Line::from(Span::styled(format!("likely label error: {c}"), t.accent())));
    let mut lines = vec![
        Line::from(Span::styled(fit_path(&row.path, width), t.accent())),
        Line::from(vec![
            Span::styled("label ", t.muted()),
            Span::styled(row.label.as_str(), t.text()),
            Span::styled("  voted ", t.muted()),
            Span::styled(row.predicted.as_str(), t.text()),
        ]),
        Line::from(vec![
            Span::styled("mislabel ", t.muted()),
            Span::styled(opt(row.mislabel), t.text()),
            Span::styled("  stranger ", t.muted()),
            Span::styled(opt(row.stranger), t.text()),
        ]),
        Line::from(vec![
            Span::styled("disagreement ", t.muted()),
            Span::styled(opt(row.disagreement), t.text()),
            Span::styled("  isolation ", t.muted()),
            Span::styled(format!("{:.3}", row.isolation), t.text()),
        ]),
        Line::from(Span::styled("nearest neighbours:", t.muted())),
    ];
    if let Some(l) = likely {
        lines.insert(2, l);
    }
    if let Some(l) = lens_line(app, &v.absolute(&row.path)) {
        lines.insert(1, l);
    }
    for p in row.neighbour_paths().take(8) {
        let label = format!("{:<11}", label_of(p));
        let path = fit_path(p, width.saturating_sub(label.chars().count()));
        lines.push(Line::from(vec![Span::styled(label, t.text()), Span::styled(path, t.muted())]));
    }
    lines
}

/// With the lens on: which picture is shown and how to step, or that it is on its way, or why
/// there is none.
fn lens_line<'a>(app: &'a App, image: &Path) -> Option<Line<'a>> {
    let t = &app.shell.theme;
    let lens = &app.outliers.lens;
    if !lens.on {
        return None;
    }
    if let Some((_, _, i, n)) = lens.shown(image) {
        let checkpoint = lens.current.as_ref().map(|p| p.checkpoint.as_str()).unwrap_or("");
        return Some(Line::from(vec![
            Span::styled(format!("view {}/{n} ", i + 1), t.accent()),
            Span::styled(format!("←/→ · ckpt {checkpoint} · {} off", key_label(app, Action::EvalAll)), t.muted()),
        ]));
    }
    Some(match &lens.error {
        Some(e) => Line::from(Span::styled(format!("lens: {e}"), t.warning())),
        None => Line::from(Span::styled("lens: computing…", t.muted())),
    })
}

fn draw_map(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.shell.theme;
    let v = &app.outliers;
    let classes = v.classes();
    let mut legend: Vec<Span> = vec![Span::styled(" map ", t.title())];
    for c in &classes {
        legend.push(Span::styled(format!("● {c} "), Style::default().fg(class_colour(app, &classes, c))));
    }
    let block = Block::bordered().title(Line::from(legend)).border_style(t.border());
    let [x0, x1, y0, y1] = map_bounds(&v.rows).map(f64::from);
    let groups: Vec<(Vec<(f64, f64)>, Color)> = classes
        .iter()
        .map(|c| c.as_str())
        .chain(std::iter::once(""))
        .map(|c| {
            let pts = v.rows.iter().filter(|r| r.label == c).map(|r| (r.umap_x as f64, r.umap_y as f64)).collect();
            (pts, class_colour(app, &classes, c))
        })
        .collect();
    let selected = v.selected_row().map(|r| (r.umap_x as f64, r.umap_y as f64));
    let highlight = t.accent().fg.unwrap_or(Color::White);
    let canvas =
        Canvas::default().block(block).marker(Marker::Braille).x_bounds([x0, x1.max(x0 + 1e-6)]).y_bounds([y0, y1.max(y0 + 1e-6)]).paint(
            move |ctx| {
                for (pts, color) in &groups {
                    ctx.draw(&Points { coords: pts, color: *color });
                }
                if let Some((x, y)) = selected {
                    ctx.layer();
                    ctx.print(x, y, Span::styled("◉", Style::default().fg(highlight)));
                }
            },
        );
    frame.render_widget(canvas, area);
}
