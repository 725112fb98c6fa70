//! Folding the trainer's `Event`s into the UI's state.

use super::app::{App, EvalRecord, ScheduleCurve};
use super::format::{fmt_bytes, fmt_value};
use super::log_view::LogLevel;
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
            app.trainer.info = Some(info);
        }
        Event::Metrics(m) => {
            if app.trainer.state == RunState::Starting {
                app.trainer.state = RunState::Running;
            }
            app.trainer.store.push(&m);
        }
        Event::Epoch(s) => app.log_line(
            LogLevel::Info,
            format!("epoch {} done: loss {} lr {} wd {}", s.epoch, fmt_value(s.train_loss), fmt_value(s.train_lr), fmt_value(s.train_wd)),
        ),
        Event::State { state, iter } => {
            if state != app.trainer.state {
                let level = if state == RunState::Failed { LogLevel::Error } else { LogLevel::Info };
                app.log_line(level, format!("state: {} → {} at iteration {iter}", state_label(app.trainer.state), state_label(state)));
            }
            app.trainer.state = state;
        }
        Event::CheckpointSaved(c) => {
            app.log_line(
                LogLevel::Info,
                format!("checkpoint saved: {} (epoch {}, it {}, {})", c.path.display(), c.epoch, c.iter, fmt_bytes(c.bytes)),
            );
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
            app.log_line(LogLevel::Warn, format!("ALARM {kind:?} at iteration {iter}: {message}"));
            app.shell.status = Some(format!("alarm: {message}"));
            app.trainer.last_alarm = Some(format!("it {iter}: {message}"));
        }
        Event::Warning { message } => app.log_line(LogLevel::Warn, message),
        Event::Error { message } => {
            app.log_line(LogLevel::Error, message.clone());
            app.shell.status = Some(format!("error: {message}"));
        }
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
            app.log_line(
                LogLevel::Info,
                format!("schedule edited: {} from iteration {}: {:?}", edit.schedule.label(), edit.from_iter, edit.kind),
            );
        }
        Event::ScheduleUndone { schedule } => {
            if let Some(pos) = app.schedule_tab.edit_history.iter().rposition(|s| *s == schedule) {
                app.schedule_tab.edit_history.remove(pos);
            }
            app.log_line(LogLevel::Info, format!("schedule edit undone: {}", schedule.label()));
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
            let top1 = crate::protocol::headline_top1(&json);
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
                random: json["random_weights"].as_bool().unwrap_or(false),
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
    if let Err(e) = app.outliers.load(std::path::Path::new(csv), data_root, run_dir) {
        app.log_line(LogLevel::Warn, format!("outlier report {csv} not loaded: {e}"));
    }
}
