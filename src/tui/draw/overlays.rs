//! The help overlay and the quit dialog, drawn over whatever tab is showing.

use super::key_label;
use crate::tui::action::Action;
use crate::tui::app::{App, QuitChoice};
use crate::tui::layout::centered;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};
use ratatui::Frame;

pub fn draw_help(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let w = area.width.saturating_sub(4).min(100);
    let h = area.height.saturating_sub(2).min(Action::ALL.len() as u16 / 2 + 4);
    let r = centered(area, w, h);
    frame.render_widget(Clear, r);
    let block = Block::bordered().title(Span::styled(" Keys — any key closes ", t.title())).border_style(t.border());
    let inner = block.inner(r);
    frame.render_widget(block, r);
    let entries: Vec<Line> = Action::ALL
        .iter()
        .map(|a| {
            let keys: Vec<String> = app.keymap.keys_for(*a).iter().map(|k| k.label()).collect();
            Line::from(vec![
                Span::styled(format!("{:>10} ", keys.join(" ")), t.accent()),
                Span::styled(a.description(), t.text()),
            ])
        })
        .collect();
    let two_columns = inner.width >= 80;
    if two_columns {
        let half = entries.len().div_ceil(2);
        let left = Rect { width: inner.width / 2, ..inner };
        let right = Rect { x: inner.x + inner.width / 2, width: inner.width - inner.width / 2, ..inner };
        frame.render_widget(Paragraph::new(entries[..half].to_vec()), left);
        frame.render_widget(Paragraph::new(entries[half..].to_vec()), right);
    } else {
        frame.render_widget(Paragraph::new(entries), inner);
    }
}

pub fn draw_quit(app: &App, frame: &mut Frame, area: Rect, choice: QuitChoice) {
    let t = &app.theme;
    let r = centered(area, 46, 8);
    frame.render_widget(Clear, r);
    let block = Block::bordered().title(Span::styled(" Quit? ", t.title())).border_style(t.warning());
    let inner = block.inner(r);
    frame.render_widget(block, r);
    let option = |c: QuitChoice, key: &str, text: &str| {
        let style = if c == choice { t.selected() } else { t.text() };
        Line::from(vec![Span::styled(format!(" [{key}] "), t.accent()), Span::styled(text.to_string(), style)])
    };
    let lines = vec![
        Line::from(Span::styled(" Training is still running.", t.text())),
        option(QuitChoice::StopAndCheckpoint, "s", "stop training and checkpoint"),
        option(QuitChoice::LeaveRunning, "l", "leave training running"),
        option(QuitChoice::Cancel, "c", "cancel"),
        Line::from(Span::styled(
            format!(" ←→ choose · {} confirm · {} cancels", key_label(app, Action::Confirm), key_label(app, Action::Cancel)),
            t.muted(),
        )),
    ];
    frame.render_widget(Paragraph::new(lines), inner);
}
