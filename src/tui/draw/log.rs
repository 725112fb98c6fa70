//! The Log tab: events, warnings, alarms, edits and errors, newest at the bottom, scrollable by
//! entry. Long entries wrap under their text (not under the iteration column), so nothing is cut
//! at any width.

use crate::tui::app::App;
use crate::tui::log_view::{LogEntry, LogLevel};
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;

/// Columns before an entry's text: `it 1234567 ` and the level.
const PREFIX: usize = 17;

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
    // Newest first until the screen is full, then put back in order.
    let mut lines: Vec<Line> = Vec::new();
    for e in app.log_tab.entries[..end].iter().rev() {
        if lines.len() >= h {
            break;
        }
        let mut entry = entry_lines(app, e, inner.width as usize);
        entry.reverse();
        lines.extend(entry);
    }
    lines.truncate(h);
    lines.reverse();
    if lines.is_empty() {
        frame.render_widget(Paragraph::new(Span::styled("nothing logged yet", t.muted())), inner);
    } else {
        frame.render_widget(Paragraph::new(lines), inner);
    }
}

fn entry_lines(app: &App, e: &LogEntry, width: usize) -> Vec<Line<'static>> {
    let t = &app.shell.theme;
    let style: Style = match e.level {
        LogLevel::Info => t.text(),
        LogLevel::Warn => t.warning(),
        LogLevel::Error => t.danger(),
    };
    let at = e.iter.map(|i| format!("it {i:>7} ")).unwrap_or_else(|| "           ".into());
    let (prefix, text_w) = if width > PREFIX + 10 { (true, width - PREFIX) } else { (false, width.max(1)) };
    let chunks = wrap(&e.text, text_w);
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            let mut spans = Vec::new();
            if prefix && i == 0 {
                spans.push(Span::styled(at.clone(), t.muted()));
                spans.push(Span::styled(format!("{:<5} ", e.level.label()), style));
            } else if prefix {
                spans.push(Span::raw(" ".repeat(PREFIX)));
            }
            spans.push(Span::styled(chunk, style));
            Line::from(spans)
        })
        .collect()
}

/// `text` in pieces of at most `width` characters, broken at spaces where there is one.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest: Vec<char> = text.chars().collect();
    while rest.len() > width {
        let cut = rest[..=width].iter().rposition(|c| *c == ' ').filter(|i| *i > 0).unwrap_or(width);
        out.push(rest[..cut].iter().collect());
        let skip = if rest.get(cut) == Some(&' ') { cut + 1 } else { cut };
        rest.drain(..skip);
    }
    out.push(rest.into_iter().collect());
    out
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn long_entries_wrap_at_spaces_and_keep_every_character() {
        let text = "unknown action `foo_bar` (the action names are listed under ? in the TUI)";
        let parts = wrap(text, 20);
        assert!(parts.iter().all(|p| p.chars().count() <= 20), "{parts:?}");
        assert_eq!(parts.join(" "), text);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
    }
}
