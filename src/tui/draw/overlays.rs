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
    if app.shell.help_page == 1 {
        return draw_action_names(app, frame, area);
    }
    let t = &app.shell.theme;
    let w = area.width.saturating_sub(4).min(100);
    let h = area.height.saturating_sub(2).min(HELP_ORDER.len().div_ceil(2) as u16 + 2);
    let r = centered(area, w, h);
    frame.render_widget(Clear, r);
    let more = key_label(app, Action::Help);
    let title = format!(" Keys — {more} again: keys.toml names · any key closes ");
    let block = Block::bordered().title(Span::styled(title, t.title())).border_style(t.border());
    let inner = block.inner(r);
    frame.render_widget(block, r);
    // Related keys share a line so the whole list fits an 80x24 terminal in two columns.
    let groups: Vec<(Vec<Action>, &str)> = HELP_ORDER
        .iter()
        .map(|g| match g {
            HelpEntry::One(a) => (vec![*a], a.description()),
            HelpEntry::Group(actions, text) => (actions.to_vec(), *text),
        })
        .collect();
    let entries: Vec<Line> = groups
        .iter()
        .map(|(actions, text)| {
            let keys: Vec<String> = actions.iter().flat_map(|a| app.shell.keymap.keys_for(*a)).map(|k| k.label()).collect();
            let single_chars = actions.len() > 1 && keys.iter().all(|k| k.chars().count() == 1);
            let joiner = if single_chars {
                ""
            } else if actions.len() > 1 {
                "/"
            } else {
                " "
            };
            Line::from(vec![Span::styled(format!("{:>10} ", keys.join(joiner)), t.accent()), Span::styled(text.to_string(), t.text())])
        })
        .collect();
    let two_columns = inner.width >= 60;
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

/// The second help page: every action under the name `keys.toml` binds it by, with its keys, in
/// as many columns as fit.
fn draw_action_names(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.shell.theme;
    let entries: Vec<(String, String)> = Action::all()
        .map(|a| (a.name().to_string(), app.shell.keymap.keys_for(a).iter().map(|k| k.label()).collect::<Vec<_>>().join(" ")))
        .collect();
    let col_w = entries.iter().map(|(n, k)| n.chars().count() + k.chars().count() + 2).max().unwrap_or(20) as u16;
    let w = area.width.saturating_sub(2).min(130);
    let cols = ((w.saturating_sub(2)) / col_w).max(1) as usize;
    let rows = entries.len().div_ceil(cols);
    let h = area.height.saturating_sub(2).min(rows as u16 + 2);
    let r = centered(area, w, h);
    frame.render_widget(Clear, r);
    let title = " keys.toml action names (e.g. toggle_pause = \"space\") — any key closes ";
    let block = Block::bordered().title(Span::styled(title, t.title())).border_style(t.border());
    let inner = block.inner(r);
    frame.render_widget(block, r);
    for c in 0..cols {
        let x = inner.x + c as u16 * col_w;
        if x >= inner.x + inner.width {
            break;
        }
        let lines: Vec<Line> = entries
            .iter()
            .skip(c * rows)
            .take(rows)
            .map(|(name, keys)| Line::from(vec![Span::styled(format!("{name} "), t.text()), Span::styled(keys.clone(), t.accent())]))
            .collect();
        let width = col_w.min(inner.x + inner.width - x);
        frame.render_widget(Paragraph::new(lines), Rect { x, width, ..inner });
    }
}

pub fn draw_quit(app: &App, frame: &mut Frame, area: Rect, choice: QuitChoice) {
    let t = &app.shell.theme;
    let r = centered(area, 46, 8);
    frame.render_widget(Clear, r);
    let block = Block::bordered().title(Span::styled(" Quit? ", t.title())).border_style(t.warning());
    let inner = block.inner(r);
    frame.render_widget(block, r);
    let option = |c: QuitChoice, key: &str, text: &str| {
        let style = if c == choice { t.selected() } else { t.text() };
        Line::from(vec![Span::styled(format!(" [{key}] "), t.accent()), Span::styled(text.to_string(), style)])
    };
    let state = if app.training_over() {
        " The run has ended: nothing to stop."
    } else if app.trainer.state == crate::protocol::RunState::Paused {
        " Training is paused."
    } else {
        " Training is still running."
    };
    let lines = vec![
        Line::from(Span::styled(state, t.text())),
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

enum HelpEntry {
    One(Action),
    Group(&'static [Action], &'static str),
}

const HELP_ORDER: [HelpEntry; 31] = [
    HelpEntry::One(Action::TogglePause),
    HelpEntry::One(Action::Checkpoint),
    HelpEntry::One(Action::EvalKnn),
    HelpEntry::One(Action::EvalLinear),
    HelpEntry::One(Action::EvalAll),
    HelpEntry::One(Action::Outliers),
    HelpEntry::One(Action::SchedulesTab),
    HelpEntry::One(Action::EditSchedule),
    HelpEntry::One(Action::UndoScheduleEdit),
    HelpEntry::One(Action::Freeze),
    HelpEntry::One(Action::ZoomIn),
    HelpEntry::One(Action::ZoomOut),
    HelpEntry::One(Action::ToggleLogScale),
    HelpEntry::One(Action::CopyPath),
    HelpEntry::Group(&[Action::MarkReviewed, Action::MarkKeep, Action::MarkExclude], "mark seen / keep / exclude"),
    HelpEntry::One(Action::CycleSplit),
    HelpEntry::One(Action::ToggleScore),
    HelpEntry::One(Action::CycleKind),
    HelpEntry::One(Action::Neighbours),
    HelpEntry::One(Action::SearchFile),
    HelpEntry::Group(&[Action::Tab1, Action::Tab2, Action::Tab3, Action::Tab4, Action::Tab5, Action::Tab6], "tabs"),
    HelpEntry::One(Action::NextTab),
    HelpEntry::One(Action::PrevTab),
    HelpEntry::Group(&[Action::Up, Action::Down], "move / scroll / field"),
    HelpEntry::Group(&[Action::Left, Action::Right], "choose / class / view"),
    HelpEntry::Group(&[Action::PageUp, Action::PageDown], "page up / down"),
    HelpEntry::Group(&[Action::Home, Action::End], "oldest / follow newest"),
    HelpEntry::One(Action::Confirm),
    HelpEntry::One(Action::Cancel),
    HelpEntry::One(Action::Help),
    HelpEntry::Group(&[Action::Quit, Action::Interrupt], "quit (ctrl-c twice: stop)"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_action() {
        for a in Action::all() {
            let listed = HELP_ORDER.iter().any(|e| match e {
                HelpEntry::One(x) => *x == a,
                HelpEntry::Group(xs, _) => xs.contains(&a),
            });
            assert!(listed, "{a:?} missing from the help overlay");
        }
    }
}
