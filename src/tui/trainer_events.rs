//! Folding the trainer's `Event`s into the UI's state, and turning the ones that answer a
//! request into the footer's outcome (`paused at it 57`, `checkpoint saved at it 57, 14.8 MiB`,
//! `k-NN 22.7% (+1.3 vs previous)`).
//!
//! Numbers follow one rule (docs/tui.md, "Numbers"): epochs and iterations are 0-based, as in
//! `log.txt` and `metrics.jsonl`; a moment between iterations is named by the next iteration to
//! run, which is also the number done.

use super::action::Action;
use super::app::{App, EvalRecord, Pending, ScheduleCurve};
use super::format::{fmt_bytes, fmt_value};
use super::log_view::LogLevel;
use crate::files::ShowPath;
use crate::protocol::{EvalKind, Event, RunState};

fn state_label(s: RunState) -> &'static str {
    match s {
        RunState::Starting => "starting",
        RunState::Running => "running",
        RunState::Paused => "paused",
        RunState::Stopped => "stopped",
        RunState::Finished => "finished",
        RunState::Failed => "failed",
    }
}

pub fn apply_event(app: &mut App, ev: Event) {
    match ev {
        Event::Schedules { .. } | Event::ScheduleEdited { .. } | Event::ScheduleUndone { .. } => apply_schedule_event(app, ev),
        Event::EvalProgress { .. } | Event::EvalResult { .. } => apply_eval_event(app, ev),
        Event::Resources(p) => app.trainer.process = Some(p),
        Event::Hello { pid, .. } => app.log_line(LogLevel::Info, format!("connected to the trainer (pid {pid})")),
        Event::Started(info) => {
            app.log_line(
                LogLevel::Info,
                format!(
                    "run {} started: {} on {}, {} epochs × {} it, batch {}, out_dim {}, {} images",
                    info.name, info.arch, info.device, info.epochs, info.niter_per_ep, info.batch_size, info.out_dim, info.num_images
                ),
            );
            app.trainer.health.set_run(info.out_dim, info.niter_per_ep);
            app.trainer.info = Some(info);
        }
        Event::Metrics(m) => {
            if app.trainer.state == RunState::Starting {
                app.trainer.state = RunState::Running;
            }
            app.trainer.store.push(&m);
            app.trainer.health.push_metrics(&m);
        }
        Event::Epoch(s) => app.log_line(
            LogLevel::Info,
            format!("epoch {} done: loss {} lr {} wd {}", s.epoch, fmt_value(s.train_loss), fmt_value(s.train_lr), fmt_value(s.train_wd)),
        ),
        Event::State { state, iter } => apply_state(app, state, iter),
        Event::CheckpointSaved(c) => {
            let what = format!("checkpoint saved at it {}, {}", c.iter, fmt_bytes(c.bytes));
            app.log_line(LogLevel::Info, format!("{what}: {}", c.path.shown()));
            if app.resolve(Pending::Checkpoint) {
                app.shell.status = Some(what);
            }
            let rows = &mut app.checkpoint_tab.rows;
            // The same weights written again under the same name (a checkpoint asked for at an
            // epoch's end) are one row.
            if let Some(same) = rows.iter_mut().find(|r| r.path == c.path && r.content_id.is_some() && r.content_id == c.content_id) {
                *same = c;
                return;
            }
            rows.push(c);
            // Keep the same checkpoint selected as a new one is inserted at the top.
            if app.checkpoint_tab.rows.len() > 1 && app.checkpoint_tab.selected > 0 {
                app.checkpoint_tab.selected += 1;
            }
        }
        Event::Alarm { kind, message, iter } => {
            if kind == crate::protocol::AlarmKind::NonFiniteLoss {
                app.trainer.health.push_non_finite(iter);
            }
            app.log_line(LogLevel::Warn, format!("ALARM {kind:?} at iteration {iter}: {message}"));
            app.shell.status = Some(format!("alarm: {message}"));
            app.trainer.last_alarm = Some(format!("it {iter}: {message}"));
        }
        Event::Warning { message } => {
            let level = if routine(&message) { LogLevel::Info } else { LogLevel::Warn };
            app.log_line(level, message)
        }
        Event::Error { message } => {
            app.log_line(LogLevel::Error, message.clone());
            // A refused edit answers the edit; a failed evaluation or command answers the rest.
            app.shell.pending.clear();
            app.shell.status = Some(format!("error: {message}"));
        }
    }
}

/// Messages that come as warnings on the wire but are the normal course of things (a run handed
/// to a detached trainer resumes from its checkpoint; a finished run is shown read-only).
fn routine(message: &str) -> bool {
    ["handed over ", "resumed from ", "resuming: ", "read-only: ", "started from the weights", "the trainer closed the connection"]
        .iter()
        .any(|p| message.starts_with(p))
}

/// A state change, in the Log and, as the outcome of a pause or resume (whoever asked: a key
/// here, `dino ctl`, another TUI), in the footer.
fn apply_state(app: &mut App, state: RunState, iter: usize) {
    let before = app.trainer.state;
    if state == before {
        return;
    }
    let level = if state == RunState::Failed { LogLevel::Error } else { LogLevel::Info };
    let what = match (before, state) {
        (RunState::Paused, RunState::Running) => format!("resumed at it {iter}"),
        (_, RunState::Running) => format!("running from it {iter}"),
        (_, s) => format!("{} at it {iter}", state_label(s)),
    };
    let epoch = app.epoch().map(|e| format!(" (epoch {e})")).unwrap_or_default();
    app.log_line(level, format!("{what}{epoch}"));
    app.resolve(Pending::Pause);
    app.resolve(Pending::Resume);
    app.trainer.state = state;
    let status = match state {
        RunState::Paused => {
            let key = app.shell.keymap.keys_for(Action::TogglePause).first().map(|k| k.label()).unwrap_or_else(|| "-".into());
            Some(format!("{what} — {key} resumes"))
        }
        RunState::Running if before != RunState::Starting => Some(what),
        s if s.is_over() => {
            // Nothing pending can be answered any more.
            app.shell.pending.clear();
            Some(what)
        }
        _ => None,
    };
    if status.is_some() {
        app.shell.status = status;
    }
}

fn apply_schedule_event(app: &mut App, ev: Event) {
    match ev {
        Event::Schedules { schedules } => {
            app.schedule_tab.curves = schedules
                .into_iter()
                .map(|(name, schedule)| {
                    let values = schedule.values().into_iter().map(|v| v as f32).collect();
                    ScheduleCurve { name, schedule, values }
                })
                .collect();
        }
        Event::ScheduleEdited { edit } => {
            app.schedule_tab.edit_history.push(edit.schedule);
            let what = format!("{} edit applied from it {}", edit.schedule.label(), edit.from_iter);
            app.log_line(LogLevel::Info, format!("{what}: {:?}", edit.kind));
            if app.resolve(Pending::Edit(edit.schedule)) {
                app.shell.status = Some(what);
            }
        }
        Event::ScheduleUndone { schedule } => {
            if let Some(pos) = app.schedule_tab.edit_history.iter().rposition(|s| *s == schedule) {
                app.schedule_tab.edit_history.remove(pos);
            }
            app.log_line(LogLevel::Info, format!("schedule edit undone: {}", schedule.label()));
            if app.resolve(Pending::Undo(schedule)) {
                app.shell.status = Some(format!("last {} edit undone", schedule.label()));
            }
        }
        _ => {}
    }
}

fn apply_eval_event(app: &mut App, ev: Event) {
    match ev {
        Event::EvalProgress { kind, done, total } => {
            app.eval_tab.progress.retain(|(k, _, _)| *k != kind);
            if done < total {
                app.eval_tab.progress.push((kind, done, total));
            }
        }
        Event::EvalResult { kind, summary, json } => {
            app.eval_tab.progress.retain(|(k, _, _)| *k != kind);
            app.log_line(LogLevel::Info, format!("{} result: {summary}", kind.label()));
            let number = |key: &str| json[key].as_u64().map(|v| v as usize);
            let iter = number("iter").or_else(|| app.current_iter());
            if kind == EvalKind::Outliers {
                load_outliers(app, &json);
            }
            if let Some(p) = crate::protocol::health::KnnPoint::from_record(&json) {
                app.trainer.health.push_knn(p);
            }
            let top1 = crate::protocol::headline_top1(&json);
            let random = json["random_weights"].as_bool().unwrap_or(false);
            let student = crate::protocol::is_student_result(&json);
            let asked = app.resolve(Pending::Eval(kind));
            if let (Some(v), false, EvalKind::Knn | EvalKind::Linear) = (top1, random, kind) {
                // Teachers are compared with the teacher of the latest earlier iteration (not with
                // whatever was evaluated last: an older checkpoint may have been); a student's
                // result stands alone.
                let previous = app
                    .eval_tab
                    .records
                    .iter()
                    .filter(|r| r.kind == kind && r.stands_for_the_run() && r.top1.is_some())
                    .filter(|r| iter.is_some_and(|i| r.iter.is_some_and(|ri| ri < i)))
                    .max_by_key(|r| r.iter)
                    .and_then(|r| r.top1);
                let delta = previous.filter(|_| !student).map(|p| format!(" ({:+.1} vs previous)", v - p)).unwrap_or_default();
                let whose = if student { " (student)" } else { "" };
                app.shell.status = Some(format!("{}{whose} {v:.1}%{delta}", kind.label()));
            } else if asked {
                app.shell.status = Some(format!("{} done: {summary}", kind.label()));
            }
            let per_k = json["results"]
                .as_array()
                .map(|rs| rs.iter().filter_map(|r| Some((r["k"].as_u64()? as usize, r["top1"].as_f64()?))).collect())
                .unwrap_or_default();
            app.eval_tab.records.push(EvalRecord {
                kind,
                summary,
                iter,
                epoch: number("epoch"),
                top1,
                content_id: json["content_id"].as_str().map(String::from),
                random,
                student,
                per_k,
                num_classes: number("num_classes"),
            });
        }
        _ => {}
    }
}

/// Shows an outlier report's rows in the Outliers tab.
fn load_outliers(app: &mut App, json: &serde_json::Value) {
    let Some(csv) = json["csv"].as_str() else { return };
    let data_root = json["data_root"].as_str().map(std::path::PathBuf::from);
    let run_dir = app.trainer.info.as_ref().map(|r| r.run_dir.clone());
    let evidence = serde_json::from_value(json["feature_evidence"].clone()).ok();
    if let Err(e) = app.outliers.load_report(std::path::Path::new(csv), evidence, data_root, run_dir) {
        app.log_line(LogLevel::Warn, format!("outlier report {csv} not loaded: {e}"));
    }
}
