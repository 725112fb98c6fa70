//! The Log tab: events, warnings, alarms, edits and errors, newest at the bottom, scrollable.

use crate::tui::app::App;
use crate::tui::log_view::LogLevel;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;

pub fn draw(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.shell.theme;
    let follow = if app.log_tab.scroll == 0 { "following" } else { "scrolled — end follows" };
    let block = Block::bordered()
        .title(Span::styled(format!(" log ({} entries, {follow}) ", app.log_tab.entries.len()), t.title()))
        .border_style(t.border());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let h = inner.height as usize;
    let end = app.log_tab.entries.len().saturating_sub(app.log_tab.scroll);
    let start = end.saturating_sub(h);
    let lines: Vec<Line> = app.log_tab.entries[start..end]
        .iter()
        .map(|e| {
            let style = match e.level {
                LogLevel::Info => t.text(),
                LogLevel::Warn => t.warning(),
                LogLevel::Error => t.danger(),
            };
            let at = e.iter.map(|i| format!("it {i:>7} ")).unwrap_or_else(|| "           ".into());
            Line::from(vec![
                Span::styled(at, t.muted()),
                Span::styled(format!("{:<5} ", e.level.label()), style),
                Span::styled(e.text.clone(), style),
            ])
        })
        .collect();
    if lines.is_empty() {
        frame.render_widget(Paragraph::new(Span::styled("nothing logged yet", t.muted())), inner);
    } else {
        frame.render_widget(Paragraph::new(lines), inner);
    }
}
