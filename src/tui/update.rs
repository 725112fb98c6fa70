//! `update`: the one place actions change the UI's state and turn into trainer commands. Keys are
//! routed here too, because a modal (quit dialog, help, edit form) decides what a key means before
//! the key map does.

use super::action::Action;
use super::app::{App, FileState, Pending, QuitChoice, Tab, ZOOM_STEPS};
use super::edit_form::FormField;
use super::keymap::Key;
use super::layout::tab_at;
use super::log_view::LogLevel;
use super::outlier_view::Mark;
use super::TuiExit;
use crate::files::ShowPath;
use crate::protocol::{Command, EvalKind, RunState};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, MouseButton, MouseEvent, MouseEventKind};

/// Lines a page key scrolls in the Log tab.
const PAGE: usize = 10;

pub fn handle_key(app: &mut App, key: KeyEvent) {
    // Key-release and repeat events arrive only where the terminal reports them; act on presses.
    if key.kind == KeyEventKind::Release {
        return;
    }
    app.shell.status = None;
    let k = Key::from_event(&key);
    let action = app.shell.keymap.action(k);

    if app.shell.quit_dialog.is_some() {
        let plain = k.mods.is_empty();
        let choice = match (k.code, action) {
            // A second Ctrl-C is the impatient "just stop": stop with a checkpoint.
            (_, Some(Action::Interrupt)) => Some(Some(QuitChoice::StopAndCheckpoint)),
            (KeyCode::Char('s'), _) if plain => Some(Some(QuitChoice::StopAndCheckpoint)),
            (KeyCode::Char('l'), _) if plain => Some(Some(QuitChoice::LeaveRunning)),
            (KeyCode::Char('c') | KeyCode::Char('n'), _) if plain => Some(Some(QuitChoice::Cancel)),
            (_, Some(Action::Cancel)) => Some(Some(QuitChoice::Cancel)),
            (_, Some(Action::Confirm)) => Some(app.shell.quit_dialog),
            _ => None,
        };
        match (choice, action) {
            (Some(Some(c)), _) => choose_quit(app, c),
            (_, Some(a @ (Action::Up | Action::Left | Action::Down | Action::Right | Action::NextTab | Action::PrevTab))) => {
                move_quit_selection(app, matches!(a, Action::Down | Action::Right | Action::NextTab))
            }
            _ => {}
        }
        return;
    }

    if app.shell.help {
        // The help key again turns to the page of action names; any other key closes the help,
        // and Ctrl-C and quit still do their job.
        if action == Some(Action::Help) && app.shell.help_page == 0 {
            app.shell.help_page = 1;
            return;
        }
        app.shell.help = false;
        app.shell.help_page = 0;
        if matches!(action, Some(Action::Interrupt | Action::Quit)) {
            update(app, action.unwrap_or(Action::Cancel));
        }
        return;
    }

    if app.schedule_tab.form.active && app.shell.tab == Tab::Schedules {
        match (k.code, action) {
            (_, Some(Action::Interrupt)) => update(app, Action::Interrupt),
            (KeyCode::Backspace, _) => app.schedule_tab.form.backspace(),
            (KeyCode::Char(c), _) if k.mods.is_empty() && app.schedule_tab.form.type_char(c) => {
                app.schedule_tab.form.field = FormField::Value
            }
            (_, Some(Action::Up)) | (KeyCode::BackTab, _) => app.schedule_tab.form.next_field(false),
            (_, Some(Action::Down)) | (KeyCode::Tab, _) => app.schedule_tab.form.next_field(true),
            // ←/→ change the focused choice; in the value field they do nothing, so a person
            // fixing a typo cannot change the kind of edit by accident.
            (_, Some(Action::Left)) => app.schedule_tab.form.cycle(false),
            (_, Some(Action::Right)) => app.schedule_tab.form.cycle(true),
            (_, Some(Action::Confirm)) => apply_form(app),
            (_, Some(Action::Cancel)) => app.schedule_tab.form.active = false,
            _ => {}
        }
        return;
    }

    if app.outliers.finder.prompt.is_some() && app.shell.tab == Tab::Outliers {
        type_query(app, k, action);
        return;
    }

    if let Some(a) = action {
        update(app, a);
    }
}

/// `/`'s line: typed characters, backspace, enter to search, esc to give up.
fn type_query(app: &mut App, k: Key, action: Option<Action>) {
    let Some(typed) = app.outliers.finder.prompt.as_mut() else { return };
    match (k.code, action) {
        (_, Some(Action::Interrupt)) => update(app, Action::Interrupt),
        (KeyCode::Backspace, _) => {
            typed.pop();
        }
        (KeyCode::Enter, _) => {
            let query = std::mem::take(typed);
            app.outliers.finder.prompt = None;
            if let Some(why) = app.outliers.search_file(&query) {
                app.shell.status = Some(why);
            }
        }
        (KeyCode::Esc, _) => app.outliers.finder.prompt = None,
        (KeyCode::Char(c), _) if !k.mods.contains(crossterm::event::KeyModifiers::CONTROL) && !c.is_control() => typed.push(c),
        _ => {}
    }
}

pub fn handle_mouse(app: &mut App, m: MouseEvent) {
    if app.shell.quit_dialog.is_some() || app.shell.help {
        return;
    }
    match m.kind {
        MouseEventKind::Down(MouseButton::Left) => {
            if let Some(tab) = tab_at(app.shell.size, m.column, m.row) {
                app.shell.tab = tab;
            }
        }
        MouseEventKind::ScrollUp => scroll(app, true, 3),
        MouseEventKind::ScrollDown => scroll(app, false, 3),
        _ => {}
    }
}

pub fn update(app: &mut App, action: Action) {
    use Action::*;
    match action {
        Quit | Interrupt | TogglePause | Checkpoint | EvalKnn | EvalLinear | EvalAll | Outliers | UndoScheduleEdit => {
            run_action(app, action)
        }
        Freeze | ZoomIn | ZoomOut | ToggleLogScale | Help | NextTab | PrevTab | Tab1 | Tab2 | Tab3 | Tab4 | Tab5 | Tab6 | SchedulesTab => {
            view_action(app, action)
        }
        _ => tab_action(app, action),
    }
}

/// Actions that ask something of the run (or of the TUI's own life).
fn run_action(app: &mut App, action: Action) {
    match action {
        Action::Quit => {
            if app.training_over() {
                app.shell.exit = Some(TuiExit::TrainingOver);
            } else {
                app.shell.quit_dialog = Some(QuitChoice::StopAndCheckpoint);
            }
        }
        Action::Interrupt => {
            if app.training_over() {
                app.shell.exit = Some(TuiExit::TrainingOver);
            } else if app.shell.quit_dialog.is_some() {
                choose_quit(app, QuitChoice::StopAndCheckpoint);
            } else {
                app.shell.quit_dialog = Some(QuitChoice::StopAndCheckpoint);
            }
        }
        Action::TogglePause => toggle_pause(app),
        Action::Checkpoint => request_checkpoint(app),
        Action::EvalKnn => request_eval(app, EvalKind::Knn, Tab::Evaluation),
        Action::EvalLinear => request_eval(app, EvalKind::Linear, Tab::Evaluation),
        // `a` where an image is shown: the network's attention over it.
        Action::EvalAll if app.shell.tab == Tab::Outliers => {
            if let Some(why) = app.outliers.toggle_lens() {
                app.shell.status = Some(why);
            }
        }
        Action::EvalAll => evaluate_all(app),
        Action::Outliers => request_eval(app, EvalKind::Outliers, Tab::Outliers),
        Action::UndoScheduleEdit => {
            let schedule = app.schedule_tab.edit_history.last().copied().unwrap_or_else(|| app.schedule_tab.form.schedule_name());
            if app.send(Command::UndoScheduleEdit { schedule }) {
                app.shell.pending.push(Pending::Undo(schedule));
                app.shell.status = Some(format!("undo of the last {} edit requested", schedule.label()));
            }
        }
        _ => {}
    }
}

/// `c`: a checkpoint now; the footer waits for the saved one.
fn request_checkpoint(app: &mut App) {
    if app.send(Command::Checkpoint) {
        app.shell.pending.push(Pending::Checkpoint);
        app.shell.status = Some("checkpoint requested".into());
    }
}

/// `p`: pause or resume, and on a run that is over, what can be done instead.
fn toggle_pause(app: &mut App) {
    let at = app.position().map(|i| format!(" at it {i}")).unwrap_or_default();
    match app.trainer.state {
        RunState::Paused => {
            if app.send(Command::Resume) {
                app.shell.pending.push(Pending::Resume);
                app.shell.status = Some("resume requested".into());
            }
        }
        RunState::Finished => app.shell.status = Some(format!("training finished{at}: nothing to resume")),
        // A stopped or failed run shown by `dino attach` can be continued: its client turns
        // this into a detached trainer. In-process, the trainer is gone for good.
        s if s.is_over() && app.shell.can_relaunch => {
            if app.send(Command::Resume) {
                app.shell.status = Some(format!("starting a trainer in the background to continue it{at}…"));
            }
        }
        s if s.is_over() => {
            app.shell.status = Some("this trainer has ended; run the same command again to resume from its checkpoint".into())
        }
        _ if app.trainer.gone => app.shell.status = Some("the trainer is gone".into()),
        _ => {
            if app.send(Command::Pause) {
                app.shell.pending.push(Pending::Pause);
                app.shell.status = Some("pause requested (between iterations)".into());
            }
        }
    }
}

/// Actions that change what is shown, not the run.
fn view_action(app: &mut App, action: Action) {
    match action {
        Action::SchedulesTab => app.shell.tab = Tab::Schedules,
        Action::Freeze => {
            app.shell.view.frozen_at = match app.shell.view.frozen_at {
                Some(_) => None,
                None => Some(app.current_iter().unwrap_or(0)),
            };
        }
        Action::ZoomIn => app.shell.view.zoom = (app.shell.view.zoom + 1).min(ZOOM_STEPS - 1),
        Action::ZoomOut => app.shell.view.zoom = app.shell.view.zoom.saturating_sub(1),
        Action::ToggleLogScale => app.shell.view.log_scale = !app.shell.view.log_scale,
        Action::Help => {
            app.shell.help = !app.shell.help;
            app.shell.help_page = 0;
        }
        Action::NextTab => app.shell.tab = Tab::from_index(app.shell.tab.index() + 1),
        Action::PrevTab => app.shell.tab = Tab::from_index(app.shell.tab.index() + Tab::ALL.len() - 1),
        Action::Tab1 => app.shell.tab = Tab::Dashboard,
        Action::Tab2 => app.shell.tab = Tab::Schedules,
        Action::Tab3 => app.shell.tab = Tab::Evaluation,
        Action::Tab4 => app.shell.tab = Tab::Outliers,
        Action::Tab5 => app.shell.tab = Tab::Checkpoints,
        Action::Tab6 => app.shell.tab = Tab::Log,
        _ => {}
    }
}

/// Actions whose meaning depends on the tab: selection, forms, marks.
fn tab_action(app: &mut App, action: Action) {
    match action {
        // `e` on the Outliers tab exports the exclusion list.
        Action::EditSchedule if app.shell.tab == Tab::Outliers => export_exclusions(app),
        Action::EditSchedule => {
            app.shell.tab = Tab::Schedules;
            app.schedule_tab.form.active = true;
            app.schedule_tab.form.field = FormField::Value;
        }
        Action::CopyPath if app.shell.tab == Tab::Outliers => copy_outlier_path(app),
        Action::CopyPath => copy_selected_path(app),
        Action::MarkReviewed => mark(app, Mark::Reviewed),
        Action::MarkKeep if app.shell.tab == Tab::Checkpoints => toggle_keep(app),
        Action::MarkKeep => mark(app, Mark::Keep),
        Action::MarkExclude => mark(app, Mark::Exclude),
        Action::CycleSplit => app.outliers.cycle_split(),
        Action::ToggleScore => app.outliers.toggle_score(),
        Action::CycleKind => app.outliers.cycle_kind(),
        Action::Neighbours if app.shell.tab == Tab::Outliers => {
            if let Some(why) = app.outliers.search_selected() {
                app.shell.status = Some(why);
            }
        }
        Action::SearchFile if app.shell.tab == Tab::Outliers => app.outliers.finder.prompt = Some(String::new()),
        Action::Up => move_selection(app, true, 1),
        Action::Down => move_selection(app, false, 1),
        Action::PageUp => move_selection(app, true, PAGE),
        Action::PageDown => move_selection(app, false, PAGE),
        Action::Home => match app.shell.tab {
            Tab::Log => app.log_tab.scroll = app.log_tab.entries.len(),
            Tab::Outliers => app.outliers.select(0),
            _ => app.checkpoint_tab.selected = 0,
        },
        Action::End => match app.shell.tab {
            Tab::Log => app.log_tab.scroll = 0,
            Tab::Outliers => app.outliers.select(usize::MAX),
            _ => app.checkpoint_tab.selected = app.checkpoint_tab.rows.len().saturating_sub(1),
        },
        Action::Left | Action::Right => match app.shell.tab {
            Tab::Schedules => {
                app.schedule_tab.form.field = FormField::Schedule;
                app.schedule_tab.form.cycle(action == Action::Right);
            }
            Tab::Outliers if app.outliers.lens.on => app.outliers.step_lens(action == Action::Right),
            Tab::Outliers => app.outliers.cycle_class(action == Action::Right),
            _ => {}
        },
        Action::Confirm => match app.shell.tab {
            Tab::Checkpoints if !app.checkpoint_tab.rows.is_empty() => request_eval(app, EvalKind::Knn, Tab::Checkpoints),
            Tab::Schedules => {
                app.schedule_tab.form.active = true;
                app.schedule_tab.form.field = FormField::Value;
            }
            _ => {}
        },
        Action::Cancel if app.shell.tab == Tab::Outliers && app.outliers.finder.search.is_some() => app.outliers.close_search(),
        Action::Cancel => {
            app.schedule_tab.form.active = false;
        }

        _ => {}
    }
}

/// Evaluates the selected checkpoint when the Checkpoints tab is open, else the live teacher.
fn request_eval(app: &mut App, kind: EvalKind, show: Tab) {
    let on_row = app.shell.tab == Tab::Checkpoints && kind != EvalKind::Outliers;
    if let (true, Some((row, _))) = (on_row, selected_row(app)) {
        let state = app.checkpoint_tab.file_state(row);
        if state != FileState::Present {
            let why = if state == FileState::Gone { "its file is gone" } else { "its file now holds other weights" };
            app.shell.status = Some(format!("this checkpoint cannot be evaluated: {why}; choose another row"));
            return;
        }
    }
    let checkpoint = if on_row { selected_checkpoint(app).map(|c| c.path.clone()) } else { None };
    app.shell.tab = if checkpoint.is_some() { Tab::Checkpoints } else { show };
    let what = match kind {
        EvalKind::Knn => "k-NN evaluation",
        EvalKind::Linear => "linear evaluation",
        EvalKind::Outliers => "outlier scoring",
    };
    let of = match &checkpoint {
        Some(p) => format!(" of {}", p.shown()),
        None => String::new(),
    };
    if app.send(Command::Eval { kind, checkpoint }) {
        app.shell.pending.push(Pending::Eval(kind));
        app.shell.status = Some(format!("{what}{of} requested"));
        app.log_line(LogLevel::Info, format!("{what}{of} requested"));
    }
}

fn choose_quit(app: &mut App, choice: QuitChoice) {
    app.shell.quit_dialog = None;
    // The run may have ended while the dialog was open: then there is nothing to stop or to
    // leave running, and nothing is sent.
    if app.training_over() && choice != QuitChoice::Cancel {
        app.shell.exit = Some(TuiExit::TrainingOver);
        return;
    }
    match choice {
        QuitChoice::StopAndCheckpoint => {
            app.send(Command::Stop { checkpoint: true });
            app.shell.exit = Some(TuiExit::StopTraining);
        }
        QuitChoice::LeaveRunning => app.shell.exit = Some(TuiExit::LeaveRunning),
        QuitChoice::Cancel => {}
    }
}

fn move_quit_selection(app: &mut App, forward: bool) {
    let n = QuitChoice::ALL.len();
    let i = app.shell.quit_dialog.and_then(|c| QuitChoice::ALL.iter().position(|x| *x == c)).unwrap_or(0);
    let j = if forward { (i + 1) % n } else { (i + n - 1) % n };
    app.shell.quit_dialog = Some(QuitChoice::ALL[j]);
}

fn move_selection(app: &mut App, up: bool, n: usize) {
    match app.shell.tab {
        Tab::Log => scroll(app, up, n),
        Tab::Checkpoints => {
            let last = app.checkpoint_tab.rows.len().saturating_sub(1);
            app.checkpoint_tab.selected =
                if up { app.checkpoint_tab.selected.saturating_sub(n) } else { (app.checkpoint_tab.selected + n).min(last) };
        }
        Tab::Schedules => {
            app.schedule_tab.form.active = true;
            app.schedule_tab.form.next_field(!up);
        }
        Tab::Outliers => app.outliers.move_selection(if up { -(n as isize) } else { n as isize }),
        _ => {}
    }
}

fn mark(app: &mut App, mark: Mark) {
    if app.shell.tab != Tab::Outliers {
        return;
    }
    match app.outliers.toggle_mark(mark) {
        Ok(Some(path)) => {
            let now = app.outliers.marks.get(&path).map(|m| m.symbol()).unwrap_or("unmarked");
            app.shell.status = Some(format!("{path}: {now}"));
        }
        Ok(None) => app.shell.status = Some("no image selected; press o to score the images".into()),
        Err(e) => app.shell.status = Some(format!("marks not saved: {e}")),
    }
}

fn export_exclusions(app: &mut App) {
    match app.outliers.export_exclusions() {
        Ok((path, n)) => {
            let msg = format!("{n} excluded paths written to {}; train with --exclude {}", path.shown(), path.shown());
            app.log_line(LogLevel::Info, msg.clone());
            app.shell.status = Some(msg);
        }
        Err(e) => app.shell.status = Some(format!("exclusion list not written: {e}")),
    }
}

fn copy_outlier_path(app: &mut App) {
    match app.outliers.selected_row().map(|r| app.outliers.absolute(&r.path)) {
        Some(p) => {
            let path = p.display().to_string();
            app.shell.status = Some(super::clipboard::sent_notice(&path, std::env::var_os("TMUX").is_some()));
            app.shell.clipboard = Some(path);
        }
        None => app.shell.status = Some("no image selected".into()),
    }
}

fn scroll(app: &mut App, up: bool, n: usize) {
    if app.shell.tab != Tab::Log {
        return;
    }
    app.log_tab.scroll = if up { (app.log_tab.scroll + n).min(app.log_tab.entries.len()) } else { app.log_tab.scroll.saturating_sub(n) };
}

fn apply_form(app: &mut App) {
    // The trainer starts the edit at the next iteration it runs, which may be later than this
    // (it moves on while the edit travels); its answer names the iteration, and the footer says it.
    let from_iter = app.position().unwrap_or(0);
    let schedule = app.schedule(app.schedule_tab.form.schedule_name()).map(|c| &c.schedule);
    match app.schedule_tab.form.checked_edit(from_iter, schedule) {
        Ok(edit) => {
            if app.send(Command::EditSchedule(edit)) {
                app.shell.pending.push(Pending::Edit(edit.schedule));
                app.shell.status = Some(format!("{} edit sent; it applies from the next iteration", edit.schedule.label()));
                app.log_line(LogLevel::Info, format!("schedule edit requested: {edit:?}"));
                app.schedule_tab.form.value.clear();
                app.schedule_tab.form.active = false;
            }
        }
        Err(why) => app.shell.status = Some(why),
    }
}

fn selected_checkpoint(app: &App) -> Option<&crate::protocol::CheckpointInfo> {
    selected_row(app).map(|(_, c)| c)
}

/// The selected checkpoint with its index in `rows` (oldest first; the table shows newest first
/// and `selected` counts rows from the top).
fn selected_row(app: &App) -> Option<(usize, &crate::protocol::CheckpointInfo)> {
    let idx = app.checkpoint_tab.rows.len().checked_sub(app.checkpoint_tab.selected + 1)?;
    app.checkpoint_tab.rows.get(idx).map(|c| (idx, c))
}

/// `m` on the Checkpoints tab: keep (or stop keeping) the selected checkpoint whatever the
/// retention says, in `checkpoints/keep.json`.
fn toggle_keep(app: &mut App) {
    let Some((_, c)) = selected_row(app) else { return };
    let Some(id) = c.content_id.clone() else {
        app.shell.status = Some("this checkpoint predates content ids: it cannot be marked (numbered checkpoints are always kept)".into());
        return;
    };
    let Some(dir) = c.path.parent().map(std::path::Path::to_path_buf) else { return };
    match crate::run::checkpoint::toggle_keep(&dir, &id) {
        Ok(kept) => {
            if kept {
                app.checkpoint_tab.kept.insert(id);
            } else {
                app.checkpoint_tab.kept.remove(&id);
            }
            app.shell.status = Some(if kept { "kept: retention will not remove it" } else { "no longer kept" }.into());
        }
        Err(e) => app.shell.status = Some(format!("cannot mark it: {e:#}")),
    }
}

/// Queues a k-NN evaluation of every checkpoint whose file is there and that has none yet, and
/// the random-weights baseline when the run has none.
fn evaluate_all(app: &mut App) {
    let todo: Vec<std::path::PathBuf> = app
        .checkpoint_tab
        .rows
        .iter()
        .enumerate()
        .filter(|(i, c)| {
            app.checkpoint_tab.file_state(*i) == FileState::Present
                && !app.eval_tab.records.iter().any(|r| r.kind == EvalKind::Knn && r.is_of(c))
        })
        .map(|(_, c)| c.path.clone())
        .collect();
    let baseline = !app.eval_tab.records.iter().any(|r| r.kind == EvalKind::Knn && r.random);
    if baseline && !app.send(Command::EvalBaseline { kind: EvalKind::Knn }) {
        return;
    }
    let n = todo.len();
    for checkpoint in todo {
        if !app.send(Command::Eval { kind: EvalKind::Knn, checkpoint: Some(checkpoint) }) {
            return;
        }
    }
    let base = if baseline { " and the random-weights baseline" } else { "" };
    let msg = format!("k-NN of {n} checkpoint(s){base} queued");
    app.log_line(LogLevel::Info, msg.clone());
    app.shell.status = Some(msg);
}

fn copy_selected_path(app: &mut App) {
    match selected_checkpoint(app) {
        Some(c) => {
            let path = c.path.display().to_string();
            app.shell.status = Some(super::clipboard::sent_notice(&path, std::env::var_os("TMUX").is_some()));
            app.shell.clipboard = Some(path);
        }
        None => app.shell.status = Some("no checkpoint to copy".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::schedule::{EditKind, ScheduleEdit, ScheduleName};
    use crate::protocol::Event;
    use crate::tui::fixtures;
    use crate::tui::trainer_events::apply_event;
    use crossterm::event::KeyModifiers;

    fn press(app: &mut App, code: KeyCode) {
        handle_key(app, KeyEvent::new(code, KeyModifiers::NONE));
    }

    fn chars(app: &mut App, s: &str) {
        for c in s.chars() {
            press(app, KeyCode::Char(c));
        }
    }

    #[test]
    fn pause_key_sends_pause_when_running_and_resume_when_paused() {
        let (mut app, rx) = fixtures::app(10);
        assert_eq!(app.trainer.state, RunState::Running);
        press(&mut app, KeyCode::Char('p'));
        assert_eq!(rx.try_recv(), Ok(Command::Pause));
        apply_event(&mut app, Event::State { state: RunState::Paused, iter: 10 });
        press(&mut app, KeyCode::Char('p'));
        assert_eq!(rx.try_recv(), Ok(Command::Resume));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn command_keys_send_their_commands() {
        let (mut app, rx) = fixtures::app(10);
        press(&mut app, KeyCode::Char('c'));
        assert_eq!(rx.try_recv(), Ok(Command::Checkpoint));
        press(&mut app, KeyCode::Char('k'));
        assert_eq!(rx.try_recv(), Ok(Command::Eval { kind: EvalKind::Knn, checkpoint: None }));
        assert_eq!(app.shell.tab, Tab::Evaluation);
        press(&mut app, KeyCode::Char('l'));
        assert_eq!(rx.try_recv(), Ok(Command::Eval { kind: EvalKind::Linear, checkpoint: None }));
        press(&mut app, KeyCode::Char('o'));
        assert_eq!(rx.try_recv(), Ok(Command::Eval { kind: EvalKind::Outliers, checkpoint: None }));
        assert_eq!(app.shell.tab, Tab::Outliers);
        press(&mut app, KeyCode::Char('s'));
        assert_eq!(app.shell.tab, Tab::Schedules);
    }

    #[test]
    fn tabs_switch_by_number_tab_key_and_mouse() {
        let (mut app, _rx) = fixtures::app(10);
        press(&mut app, KeyCode::Char('5'));
        assert_eq!(app.shell.tab, Tab::Checkpoints);
        press(&mut app, KeyCode::Tab);
        assert_eq!(app.shell.tab, Tab::Log);
        press(&mut app, KeyCode::Tab);
        assert_eq!(app.shell.tab, Tab::Dashboard);
        handle_key(&mut app, KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT));
        assert_eq!(app.shell.tab, Tab::Log);
        app.shell.size = (160, 48);
        let (_, _, x, _) = crate::tui::layout::tab_labels(160)[1];
        handle_mouse(
            &mut app,
            MouseEvent { kind: MouseEventKind::Down(MouseButton::Left), column: x + 2, row: 0, modifiers: KeyModifiers::NONE },
        );
        assert_eq!(app.shell.tab, Tab::Schedules);
    }

    #[test]
    fn view_keys_zoom_freeze_and_log_scale() {
        let (mut app, _rx) = fixtures::app(300);
        // Steps relative to the 300 iterations held (of 500 planned: the first step must show
        // less than there is): a quarter, a sixteenth, then the floor.
        let run = app.held_len();
        assert_eq!(run, 300);
        press(&mut app, KeyCode::Char('+'));
        assert_eq!(app.shell.view.window(run), Some(75));
        press(&mut app, KeyCode::Char('+'));
        assert_eq!(app.shell.view.window(run), Some(18));
        press(&mut app, KeyCode::Char('+'));
        assert_eq!(app.shell.view.window(run), Some(10));
        press(&mut app, KeyCode::Char('-'));
        press(&mut app, KeyCode::Char('-'));
        press(&mut app, KeyCode::Char('-'));
        press(&mut app, KeyCode::Char('-'));
        assert_eq!(app.shell.view.window(run), None);
        // A short run still zooms: 40 iterations become the last 10.
        let short = crate::tui::app::ChartView { zoom: 1, ..Default::default() };
        assert_eq!(short.window(40), Some(10));
        press(&mut app, KeyCode::Char('g'));
        assert!(app.shell.view.log_scale);
        press(&mut app, KeyCode::Char('f'));
        assert_eq!(app.shell.view.frozen_at, Some(299));
        press(&mut app, KeyCode::Char('f'));
        assert_eq!(app.shell.view.frozen_at, None);
    }

    #[test]
    fn schedule_form_sends_the_edit_from_the_next_iteration() {
        let (mut app, rx) = fixtures::app(300);
        press(&mut app, KeyCode::Char('e'));
        assert!(app.schedule_tab.form.active);
        // Digits go to the form, not to the tab keys.
        chars(&mut app, "1e-4");
        assert_eq!(app.shell.tab, Tab::Schedules);
        press(&mut app, KeyCode::Enter);
        let expect = ScheduleEdit { schedule: ScheduleName::Lr, from_iter: 300, kind: EditKind::Constant(1e-4) };
        assert_eq!(rx.try_recv(), Ok(Command::EditSchedule(expect)));
        assert!(!app.schedule_tab.form.active);

        // Weight decay, scaled by 2.
        press(&mut app, KeyCode::Char('e'));
        press(&mut app, KeyCode::Up);
        press(&mut app, KeyCode::Up);
        assert_eq!(app.schedule_tab.form.field, FormField::Schedule);
        press(&mut app, KeyCode::Right);
        press(&mut app, KeyCode::Down);
        press(&mut app, KeyCode::Right);
        chars(&mut app, "2");
        press(&mut app, KeyCode::Enter);
        let expect = ScheduleEdit { schedule: ScheduleName::Wd, from_iter: 300, kind: EditKind::Scale(2.0) };
        assert_eq!(rx.try_recv(), Ok(Command::EditSchedule(expect)));
    }

    #[test]
    fn invalid_form_value_sends_nothing_and_says_why() {
        let (mut app, rx) = fixtures::app(300);
        press(&mut app, KeyCode::Char('e'));
        chars(&mut app, "1e");
        press(&mut app, KeyCode::Enter);
        assert!(rx.try_recv().is_err());
        assert!(app.shell.status.as_deref().is_some_and(|s| s.contains("not a number")));
        press(&mut app, KeyCode::Esc);
        assert!(!app.schedule_tab.form.active);
    }

    #[test]
    fn undo_targets_the_last_edited_schedule() {
        let (mut app, rx) = fixtures::app(300);
        let edit = ScheduleEdit { schedule: ScheduleName::TeacherTemp, from_iter: 300, kind: EditKind::Constant(0.05) };
        apply_event(&mut app, Event::ScheduleEdited { edit });
        press(&mut app, KeyCode::Char('u'));
        assert_eq!(rx.try_recv(), Ok(Command::UndoScheduleEdit { schedule: ScheduleName::TeacherTemp }));
    }

    #[test]
    fn quit_dialog_stop_leave_and_cancel() {
        let (mut app, rx) = fixtures::app(10);
        press(&mut app, KeyCode::Char('q'));
        assert!(app.shell.quit_dialog.is_some());
        press(&mut app, KeyCode::Esc);
        assert!(app.shell.quit_dialog.is_none() && app.shell.exit.is_none());

        press(&mut app, KeyCode::Char('q'));
        press(&mut app, KeyCode::Char('l'));
        assert_eq!(app.shell.exit, Some(TuiExit::LeaveRunning));
        assert!(rx.try_recv().is_err(), "leaving sends nothing");

        app.shell.exit = None;
        press(&mut app, KeyCode::Char('q'));
        press(&mut app, KeyCode::Enter); // default choice: stop and checkpoint
        assert_eq!(app.shell.exit, Some(TuiExit::StopTraining));
        assert_eq!(rx.try_recv(), Ok(Command::Stop { checkpoint: true }));

        app.shell.exit = None;
        press(&mut app, KeyCode::Char('q'));
        press(&mut app, KeyCode::Right);
        press(&mut app, KeyCode::Right);
        press(&mut app, KeyCode::Enter);
        assert_eq!(app.shell.exit, None, "cancel selected");
    }

    #[test]
    fn quit_dialog_rechecks_the_run_when_the_choice_is_made() {
        let (mut app, rx) = fixtures::app(10);
        press(&mut app, KeyCode::Char('q'));
        assert!(app.shell.quit_dialog.is_some());
        // The run finishes while the dialog says it is running.
        apply_event(&mut app, Event::State { state: RunState::Finished, iter: 500 });
        press(&mut app, KeyCode::Char('l'));
        assert_eq!(app.shell.exit, Some(TuiExit::TrainingOver), "nothing to leave running");
        assert!(rx.try_recv().is_err(), "nothing sent");
    }

    #[test]
    fn requests_resolve_into_outcomes() {
        let (mut app, _rx) = fixtures::app(57);
        press(&mut app, KeyCode::Char('p'));
        assert!(app.shell.status.as_deref().is_some_and(|s| s.contains("pause requested")));
        apply_event(&mut app, Event::State { state: RunState::Paused, iter: 57 });
        assert_eq!(app.shell.status.as_deref(), Some("paused at it 57 — p resumes"));
        // A resume from elsewhere (`dino ctl resume`) replaces it.
        apply_event(&mut app, Event::State { state: RunState::Running, iter: 57 });
        assert_eq!(app.shell.status.as_deref(), Some("resumed at it 57"));
        press(&mut app, KeyCode::Char('c'));
        assert_eq!(app.shell.status.as_deref(), Some("checkpoint requested"));
        let c = crate::protocol::CheckpointInfo {
            path: "runs/demo/checkpoints/checkpoint-it00000058.json".into(),
            epoch: 1,
            iter: 58,
            bytes: 15_518_924,
            loss: None,
            time: 0.0,
            content_id: None,
        };
        apply_event(&mut app, Event::CheckpointSaved(c));
        assert_eq!(app.shell.status.as_deref(), Some("checkpoint saved at it 58, 14.8 MiB"));
        press(&mut app, KeyCode::Char('k'));
        let json = serde_json::json!({"kind": "knn", "iter": 58, "results": [{"k": 20, "top1": 47.3}]});
        apply_event(&mut app, Event::EvalResult { kind: EvalKind::Knn, summary: "k-NN".into(), json });
        // The fixture's last k-NN (epoch 1's) was 46.0.
        assert_eq!(app.shell.status.as_deref(), Some("k-NN 47.3% (+1.3 vs previous)"));
        assert!(app.shell.pending.is_empty());
        // An older checkpoint evaluated in between does not become "previous": the next result is
        // compared with the latest earlier iteration's (47.3 at it 58), not with it 10's 30.0.
        let old = serde_json::json!({"kind": "knn", "iter": 10, "results": [{"k": 20, "top1": 30.0}]});
        apply_event(&mut app, Event::EvalResult { kind: EvalKind::Knn, summary: "k-NN".into(), json: old });
        assert_eq!(app.shell.status.as_deref(), Some("k-NN 30.0%"), "nothing earlier than it 10 to compare with");
        let next = serde_json::json!({"kind": "knn", "iter": 70, "results": [{"k": 20, "top1": 48.0}]});
        apply_event(&mut app, Event::EvalResult { kind: EvalKind::Knn, summary: "k-NN".into(), json: next });
        assert_eq!(app.shell.status.as_deref(), Some("k-NN 48.0% (+0.7 vs previous)"));
    }

    #[test]
    fn arrows_in_the_value_field_leave_the_kind_alone() {
        let (mut app, _rx) = fixtures::app(30);
        press(&mut app, KeyCode::Char('e'));
        chars(&mut app, "3");
        press(&mut app, KeyCode::Right);
        press(&mut app, KeyCode::Left);
        assert_eq!(app.schedule_tab.form.choice(), crate::tui::edit_form::EditChoice::Constant);
        assert_eq!(app.schedule_tab.form.value, "3");
    }

    #[test]
    fn p_on_a_stopped_run_says_what_it_does() {
        let (mut app, rx) = fixtures::app(10);
        apply_event(&mut app, Event::State { state: RunState::Stopped, iter: 10 });
        press(&mut app, KeyCode::Char('p'));
        assert!(rx.try_recv().is_err(), "in-process, the trainer is gone: nothing to send");
        assert!(app.shell.status.as_deref().is_some_and(|s| s.contains("run the same command again")));
        app.shell.can_relaunch = true;
        press(&mut app, KeyCode::Char('p'));
        assert_eq!(rx.try_recv(), Ok(Command::Resume));
        assert!(app.shell.status.as_deref().is_some_and(|s| s.contains("background")));
    }

    #[test]
    fn ctrl_c_twice_stops_with_checkpoint() {
        let (mut app, rx) = fixtures::app(10);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        handle_key(&mut app, ctrl_c);
        assert!(app.shell.quit_dialog.is_some());
        handle_key(&mut app, ctrl_c);
        assert_eq!(app.shell.exit, Some(TuiExit::StopTraining));
        assert_eq!(rx.try_recv(), Ok(Command::Stop { checkpoint: true }));
    }

    #[test]
    fn quit_is_immediate_once_training_is_over() {
        let (mut app, rx) = fixtures::app(10);
        apply_event(&mut app, Event::State { state: RunState::Finished, iter: 10 });
        press(&mut app, KeyCode::Char('q'));
        assert_eq!(app.shell.exit, Some(TuiExit::TrainingOver));
        assert!(app.shell.quit_dialog.is_none());
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn checkpoint_tab_enter_evaluates_and_y_copies_the_path() {
        let (mut app, rx) = fixtures::app(300);
        press(&mut app, KeyCode::Char('5'));
        press(&mut app, KeyCode::Enter);
        let newest = Some("runs/demo/checkpoints/checkpoint0003.pth".into());
        assert_eq!(rx.try_recv(), Ok(Command::Eval { kind: EvalKind::Knn, checkpoint: newest.clone() }));
        press(&mut app, KeyCode::Char('l'));
        assert_eq!(rx.try_recv(), Ok(Command::Eval { kind: EvalKind::Linear, checkpoint: newest }));
        assert_eq!(app.shell.tab, Tab::Checkpoints, "the table stays open, its rows show the results");
        press(&mut app, KeyCode::Char('y'));
        assert_eq!(app.shell.clipboard.as_deref(), Some("runs/demo/checkpoints/checkpoint0003.pth"));
    }

    #[test]
    fn trainer_error_is_shown_and_logged() {
        let (mut app, _rx) = fixtures::app(10);
        apply_event(&mut app, Event::Error { message: "CUDA out of memory".into() });
        assert!(app.shell.status.as_deref().is_some_and(|s| s.contains("CUDA out of memory")));
        assert!(app.log_tab.entries.iter().any(|e| e.level == LogLevel::Error && e.text.contains("CUDA out of memory")));
    }

    #[test]
    fn closed_command_channel_is_reported_not_fatal() {
        let (mut app, rx) = fixtures::app(10);
        drop(rx);
        press(&mut app, KeyCode::Char('c'));
        assert!(app.trainer.gone);
        press(&mut app, KeyCode::Char('q'));
        assert_eq!(app.shell.exit, Some(TuiExit::TrainingOver));
    }

    #[test]
    fn help_toggles_and_any_key_closes_it() {
        let (mut app, rx) = fixtures::app(10);
        press(&mut app, KeyCode::Char('?'));
        assert!(app.shell.help);
        press(&mut app, KeyCode::Char('c'));
        assert!(!app.shell.help);
        assert!(rx.try_recv().is_err(), "the closing key does nothing else");
    }

    #[test]
    fn outlier_keys_select_filter_mark_and_export() {
        let (mut app, _rx) = fixtures::app(10);
        let _data = fixtures::with_outliers(&mut app);
        let run = tempfile::tempdir().unwrap();
        app.outliers.run_dir = Some(run.path().to_path_buf());
        press(&mut app, KeyCode::Char('4'));
        let first = app.outliers.selected_row().unwrap().path.clone();
        assert_eq!(first, "train/ship/0004.png");
        press(&mut app, KeyCode::Char('x'));
        press(&mut app, KeyCode::Down);
        let second = app.outliers.selected_row().unwrap().path.clone();
        press(&mut app, KeyCode::Char('x'));
        press(&mut app, KeyCode::Char('m'));
        assert_eq!(app.outliers.marks.get(&second), Some(&Mark::Keep), "another mark replaces exclude");
        press(&mut app, KeyCode::Char('e'));
        assert_eq!(app.shell.tab, Tab::Outliers, "e exports here instead of editing a schedule");
        let list = std::fs::read_to_string(run.path().join("exclude.txt")).unwrap();
        let listed: Vec<&str> = list.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(listed, vec![first.as_str()]);
        assert!(run.path().join("evals/outlier-marks.json").exists(), "marks survive a restart");
        // Class filter: only one class listed, then back to all after the last class.
        press(&mut app, KeyCode::Right);
        assert_eq!(app.outliers.class.as_deref(), Some("airplane"));
        assert!(app.outliers.visible().iter().all(|r| r.label == "airplane"));
        for _ in 0..3 {
            press(&mut app, KeyCode::Right);
        }
        assert_eq!(app.outliers.class, None);
        press(&mut app, KeyCode::Char('d'));
        assert_eq!(app.outliers.score, crate::eval::outlier_report::ScoreKind::Mislabel, "auto, then mislabel");
        press(&mut app, KeyCode::Char('t'));
        assert_eq!(app.outliers.kind.as_deref(), Some("mislabel"));
        assert!(app.outliers.visible().iter().all(|r| r.kind == "mislabel"));
        press(&mut app, KeyCode::Char('t'));
        press(&mut app, KeyCode::Char('t'));
        assert_eq!(app.outliers.kind, None, "all kinds again");
        for _ in 0..4 {
            press(&mut app, KeyCode::Char('d'));
        }
        assert_eq!(app.outliers.score, crate::eval::outlier_report::ScoreKind::Auto, "round the five kinds");
        press(&mut app, KeyCode::Char('y'));
        assert!(app.shell.clipboard.as_deref().unwrap().ends_with(".png"));
    }
}
