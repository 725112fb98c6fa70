//! The run directory's files as the `Event`s a TUI folds in: `metrics.jsonl` lines become
//! `Metrics`, `events.jsonl` lines the state changes, checkpoints, schedule edits and alarms they
//! record. With this an attached TUI shows a run's whole history, and a finished run read-only.

use crate::protocol::schedule::{Schedule, ScheduleEdit, ScheduleName};
use crate::protocol::{AlarmKind, CheckpointInfo, EvalKind, Event, IterMetrics, RunInfo, RunState};
use serde_json::Value;
use std::path::Path;

/// What `events.jsonl` records that a live trainer also sends on its socket as a plain `Error` or
/// `Warning`; while attached to a live run these come from the socket, so they are skipped here.
pub const ALSO_ON_SOCKET: [&str; 5] = ["error", "skipped_file", "checkpoint_unusable", "schedule_file_error", "eval"];

/// A `metrics.jsonl` line as read (no string made of it first).
pub fn metrics_bytes(line: &[u8]) -> Option<Event> {
    serde_json::from_slice::<IterMetrics>(line).ok().map(Event::Metrics)
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_string()
}

fn iter_of(v: &Value) -> usize {
    v["iter"].as_u64().unwrap_or(0) as usize
}

/// The events one `events.jsonl` line stands for; `live` skips what the socket delivers.
pub fn events_line(line: &str, live: bool) -> Vec<Event> {
    let Ok(v) = serde_json::from_str::<Value>(line) else { return vec![] };
    let kind = v["type"].as_str().unwrap_or_default();
    if live && ALSO_ON_SOCKET.contains(&kind) {
        return vec![];
    }
    match kind {
        "start" => match serde_json::from_value::<RunInfo>(v.clone()) {
            Ok(info) => {
                let iter = info.start_iter;
                vec![Event::Started(info), Event::State { state: RunState::Running, iter }]
            }
            Err(_) => vec![],
        },
        "pause" => vec![Event::State { state: RunState::Paused, iter: iter_of(&v) }],
        // A resume with a checkpoint is a restarted trainer; its `start` line follows.
        "resume" if v.get("checkpoint").is_some() => {
            vec![Event::Warning { message: format!("resumed from {} at iteration {}", text(&v, "checkpoint"), iter_of(&v)) }]
        }
        "resume" => vec![Event::State { state: RunState::Running, iter: iter_of(&v) }],
        "stop" => serde_json::from_value::<RunState>(v["state"].clone())
            .map(|state| vec![Event::State { state, iter: iter_of(&v) }])
            .unwrap_or_default(),
        "checkpoint" => serde_json::from_value::<CheckpointInfo>(v).map(|c| vec![Event::CheckpointSaved(c)]).unwrap_or_default(),
        "schedule_edit" => serde_json::from_value::<ScheduleEdit>(v).map(|edit| vec![Event::ScheduleEdited { edit }]).unwrap_or_default(),
        "schedule_undo" => serde_json::from_value::<ScheduleName>(v["schedule"].clone())
            .map(|schedule| vec![Event::ScheduleUndone { schedule }])
            .unwrap_or_default(),
        "alarm" => match serde_json::from_value::<AlarmKind>(v["kind"].clone()) {
            Ok(kind) => vec![Event::Alarm { kind, message: text(&v, "message"), iter: iter_of(&v) }],
            Err(_) => vec![],
        },
        "handover" => vec![Event::Warning {
            message: format!("handed over at iteration {}: the TUI left training running in a background trainer", iter_of(&v)),
        }],
        "handover_cancelled" => vec![Event::Warning { message: format!("hand-over cancelled: {}", text(&v, "reason")) }],
        "restored" => vec![Event::Warning { message: format!("went back to {} (iteration {})", text(&v, "checkpoint"), iter_of(&v)) }],
        "error" | "schedule_file_error" => vec![Event::Error { message: text(&v, "message") }],
        "skipped_file" => {
            vec![Event::Warning { message: format!("skipped unreadable image {}: {}", text(&v, "path"), text(&v, "reason")) }]
        }
        "checkpoint_unusable" => vec![Event::Warning { message: format!("checkpoint unusable: {}", text(&v, "message")) }],
        "warning" => vec![Event::Warning { message: text(&v, "message") }],
        "pretrained" => vec![Event::Warning { message: format!("started from the weights of {}", text(&v, "from")) }],
        "eval" => eval_result(v).into_iter().collect(),
        _ => vec![],
    }
}

/// A recorded k-NN or linear evaluation (by the trainer or `dino eval`) as the result event.
fn eval_result(v: Value) -> Option<Event> {
    let kind = serde_json::from_value::<EvalKind>(v["kind"].clone()).ok()?;
    let at = v["epoch"].as_u64().map(|e| format!(" at epoch {e}")).unwrap_or_default();
    let summary = match kind {
        EvalKind::Outliers => format!("outliers of {} images of {}{at} (recorded)", v["num_images"], v["split"].as_str().unwrap_or("?")),
        _ => {
            let top1 = crate::protocol::headline_top1(&v)?;
            format!("{} top-1 {top1:.2}%{at} (recorded)", kind.label())
        }
    };
    Some(Event::EvalResult { kind, summary, json: v })
}

/// The schedules a resumed run would use: the latest checkpoint's (edits included), else the
/// config's curves with the edits `events.jsonl` records.
pub fn schedules(run_dir: &Path) -> Option<Event> {
    let ckpt = run_dir.join(super::dir::CHECKPOINT_DIR).join(crate::run::checkpoint::LATEST);
    if let Ok(meta) = crate::run::checkpoint::read_meta(&ckpt) {
        return Some(Event::Schedules { schedules: meta.schedules });
    }
    let config = crate::config::TrainConfig::from_toml_file(&run_dir.join(super::dir::CONFIG_FILE)).ok()?;
    let state = super::runs::file_state(run_dir);
    let niter = state.info?.niter_per_ep;
    let mut all = crate::config::schedules::build(&config, niter, 1);
    let events = crate::files::read_to_string(&run_dir.join(super::dir::EVENTS_FILE)).unwrap_or_default();
    for e in events.lines().flat_map(|l| events_line(l, false)) {
        match e {
            Event::ScheduleEdited { edit } => {
                if let Some(s) = all.get_mut(&edit.schedule) {
                    s.apply(edit);
                }
            }
            Event::ScheduleUndone { schedule } => {
                let _ = all.get_mut(&schedule).and_then(Schedule::undo);
            }
            _ => {}
        }
    }
    Some(Event::Schedules { schedules: all.into_iter().collect() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lines_become_events() {
        let pause = r#"{"type":"pause","iter":12,"time":1}"#;
        assert_eq!(events_line(pause, false), vec![Event::State { state: RunState::Paused, iter: 12 }]);
        let stop = r#"{"type":"stop","state":"finished","iter":15,"time":1}"#;
        assert_eq!(events_line(stop, true), vec![Event::State { state: RunState::Finished, iter: 15 }]);
        let edit = r#"{"type":"schedule_edit","schedule":"lr","from_iter":20,"kind":"constant","value":0.001,"time":1}"#;
        assert!(matches!(&events_line(edit, false)[..], [Event::ScheduleEdited { edit }] if edit.from_iter == 20));
        let err = r#"{"type":"error","message":"boom","time":1}"#;
        assert_eq!(events_line(err, false).len(), 1);
        assert!(events_line(err, true).is_empty(), "the socket delivers it while live");
        assert!(events_line("garbage", false).is_empty());
        let handover = r#"{"type":"handover","iter":532,"time":1}"#;
        assert!(
            matches!(&events_line(handover, false)[..], [Event::Warning { message }] if message.starts_with("handed over at iteration 532")),
            "{:?}",
            events_line(handover, false)
        );
        assert!(events_line(r#"{"type":"note","message":"x"}"#, false).is_empty());
        let eval = r#"{"type":"eval","kind":"knn","epoch":3,"iter":30,"results":[{"k":20,"top1":61.5}],"time":1}"#;
        match &events_line(eval, false)[..] {
            [Event::EvalResult { kind: EvalKind::Knn, summary, json }] => {
                assert!(summary.contains("61.50%") && summary.contains("epoch 3"), "{summary}");
                assert_eq!(json["iter"], 30);
            }
            other => panic!("{other:?}"),
        }
        assert!(events_line(eval, true).is_empty(), "a live trainer sends its results on the socket");
        let probe = r#"{"type":"eval","kind":"linear","test_acc1":70.0,"time":1}"#;
        assert!(matches!(&events_line(probe, false)[..], [Event::EvalResult { kind: EvalKind::Linear, .. }]));
        assert!(events_line(r#"{"type":"eval","kind":"label-efficiency"}"#, false).is_empty());
    }
}
