//! `dino ctl RUN_DIR CMD`: one command to a live run, for scripts. It connects to the control
//! socket, sends the command, and waits (with a timeout) for the trainer's acknowledgement: the
//! state change, the checkpoint saved, the schedule edited, the evaluation's result.
//!
//! Exit codes: 0 done, 1 the trainer refused or did not answer in time, 2 usage error,
//! 3 the run is not live, 4 a live trainer holds the run but its socket is busy (every
//! connection taken) or does not answer.

use crate::control::client::{Client, ClientError};
use crate::control::server::BUSY;
use crate::files::ShowPath;
use crate::protocol::schedule::{EditKind, Schedule, ScheduleEdit, ScheduleName, SCHEDULE_EDIT_REFUSED};
use crate::protocol::{Command, EvalKind, Event, RunState};
use crate::run::{lock, runs};
use std::path::Path;
use std::time::Duration;

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_NOT_LIVE: i32 = 3;
pub const EXIT_BUSY: i32 = 4;

pub const USAGE: &str = "usage: dino ctl RUN_DIR status | pause | resume | checkpoint | stop [--no-checkpoint] | \
set KEY=VALUE... [--from_iter N] | eval knn|linear [--checkpoint PATH]   [--timeout SECONDS]
  set keys: lr=X (learning rate held at X), peak_lr=X (cosine regenerated with peak X), min_lr=X (final lr),
            wd=X (weight decay held at X), wd_end=X (final weight decay), teacher_temp=X (held), momentum=X (held)";

#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Status,
    Send(Command),
    Set(Vec<ScheduleEdit>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub request: Request,
    pub timeout: Duration,
}

/// `KEY=VALUE` of `dino ctl set` as the schedule edit the Schedules tab would make.
pub fn set_edit(key: &str, value: f64, from_iter: usize) -> Result<ScheduleEdit, String> {
    use ScheduleName::*;
    let (schedule, kind) = match key {
        "lr" => (Lr, EditKind::Constant(value)),
        "peak_lr" => (Lr, EditKind::Peak(value)),
        "min_lr" => (Lr, EditKind::Final(value)),
        "wd" => (Wd, EditKind::Constant(value)),
        "wd_end" | "weight_decay_end" => (Wd, EditKind::Final(value)),
        "teacher_temp" => (TeacherTemp, EditKind::Constant(value)),
        "momentum" | "momentum_teacher" => (Momentum, EditKind::Constant(value)),
        other => return Err(format!("unknown setting {other:?}")),
    };
    Ok(ScheduleEdit { schedule, from_iter, kind })
}

pub fn parse(args: &[String]) -> Result<Parsed, String> {
    let mut timeout = Duration::from_secs(60);
    let mut from_iter = 0usize;
    let mut checkpoint = true;
    let mut eval_checkpoint: Option<std::path::PathBuf> = None;
    let mut words: Vec<&str> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = |name: &str| inline.clone().or_else(|| it.next().cloned()).ok_or(format!("{name} needs a value"));
        match flag {
            "--timeout" => {
                timeout = crate::human::parse_seconds("--timeout", &value("--timeout")?)?;
            }
            "--from_iter" | "--from-iter" => {
                let v = value("--from_iter")?;
                from_iter = v.parse().map_err(|_| format!("--from_iter {v}: not an iteration number"))?;
            }
            "--no-checkpoint" | "--no_checkpoint" => checkpoint = false,
            "--checkpoint" => eval_checkpoint = Some(value("--checkpoint")?.into()),
            f if f.starts_with("--") => return Err(format!("unknown option {f}")),
            _ => words.push(a),
        }
    }
    let request = match words.as_slice() {
        ["status"] => Request::Status,
        ["pause"] => Request::Send(Command::Pause),
        ["resume"] => Request::Send(Command::Resume),
        ["checkpoint"] => Request::Send(Command::Checkpoint),
        ["stop"] => Request::Send(Command::Stop { checkpoint }),
        ["eval", "knn"] => Request::Send(Command::Eval { kind: EvalKind::Knn, checkpoint: eval_checkpoint }),
        ["eval", "linear"] => Request::Send(Command::Eval { kind: EvalKind::Linear, checkpoint: eval_checkpoint }),
        ["set", pairs @ ..] if !pairs.is_empty() => {
            let mut edits = Vec::new();
            for p in pairs {
                let (k, v) = p.split_once('=').ok_or(format!("set {p}: expected KEY=VALUE"))?;
                let x: f64 = v.parse().map_err(|_| format!("set {p}: {v} is not a number"))?;
                // Its range is checked as the trainer checks it (`run`): a refusal, not a usage error.
                edits.push(set_edit(k, x, from_iter)?);
            }
            Request::Set(edits)
        }
        [] => return Err("no command given".into()),
        other => return Err(format!("unknown command {:?}", other.join(" "))),
    };
    Ok(Parsed { request, timeout })
}

/// The message for a run nobody serves, with its status from the files.
pub fn not_live_message(run_dir: &Path) -> String {
    let status = runs::status(run_dir);
    let what = match status {
        runs::Status::Unknown => "it has no events.jsonl; is this a run directory?".to_string(),
        s => format!("the run is {} (from events.jsonl)", s.label()),
    };
    format!("no trainer is serving {}; {what}", crate::control::client::socket_path(run_dir).shown())
}

/// Runs one `dino ctl` invocation; prints results on stdout and problems on stderr.
pub fn run(run_dir: &Path, args: &[String]) -> i32 {
    let parsed = match parse(args) {
        Ok(p) => p,
        Err(e) => {
            crate::say_err!("dino ctl: {e}\n{USAGE}");
            return EXIT_USAGE;
        }
    };
    // The same range check as the trainer's, before bothering it.
    if let Request::Set(edits) = &parsed.request {
        if let Some(reason) = edits.iter().find_map(|e| e.check_value().err()) {
            crate::say_err!("dino ctl: {SCHEDULE_EDIT_REFUSED}: {reason}");
            return EXIT_FAILED;
        }
    }
    let Some(connected) = connect_within(run_dir, parsed.timeout) else {
        return report(run_dir, Err(CtlFailure::NoAnswer(parsed.timeout)));
    };
    let mut client = match connected {
        Ok(c) => c,
        Err(ClientError::NotLive { .. })
            if matches!(parsed.request, Request::Send(Command::Stop { .. })) && runs::handover_under_way(run_dir) =>
        {
            return stop_during_handover(run_dir)
        }
        Err(ClientError::NotLive { .. }) if lock::holder(run_dir).is_none() => {
            crate::say_err!("dino ctl: {}", not_live_message(run_dir));
            if parsed.request == Request::Status {
                crate::say!("{}", offline_status(run_dir));
            }
            return EXIT_NOT_LIVE;
        }
        Err(e) => return busy_or_failed(run_dir, &e.to_string()),
    };
    report(run_dir, execute(&mut client, &parsed, run_dir))
}

/// Prints what became of a command and gives the exit code.
fn report(run_dir: &Path, outcome: Result<String, CtlFailure>) -> i32 {
    match outcome {
        Ok(out) => {
            crate::say!("{out}");
            EXIT_OK
        }
        Err(CtlFailure::Closed) if lock::holder(run_dir).is_some() => busy_or_failed(run_dir, "the trainer closed the connection"),
        Err(CtlFailure::Closed) => {
            crate::say_err!("dino ctl: the trainer closed the connection; {}", not_live_message(run_dir));
            EXIT_NOT_LIVE
        }
        Err(CtlFailure::Busy(m)) => {
            crate::say_err!("dino ctl: busy: {m}");
            EXIT_BUSY
        }
        Err(CtlFailure::NoAnswer(waited)) => {
            let pid = lock::holder(run_dir).map_or_else(|| "?".to_string(), |p| p.to_string());
            crate::say_err!(
                "dino ctl: not answering: the trainer (pid {pid}) holds {} but did not answer within {:.0} s \
                 (stopped, e.g. by SIGSTOP or a debugger, or hung)",
                run_dir.shown(),
                waited.as_secs_f64()
            );
            EXIT_BUSY
        }
        Err(CtlFailure::Failed(m)) => {
            crate::say_err!("dino ctl: {m}");
            EXIT_FAILED
        }
    }
}

/// Connects, waiting at most `timeout`: connecting blocks while the socket's backlog is full,
/// which happens to a trainer that stopped accepting (SIGSTOP, a hang) once enough clients tried.
/// None: no connection within the timeout. The thread left behind ends with the process.
fn connect_within(run_dir: &Path, timeout: Duration) -> Option<Result<Client, ClientError>> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let dir = run_dir.to_path_buf();
    match std::thread::Builder::new().name("ctl-connect".into()).spawn(move || tx.send(Client::connect(&dir))) {
        Ok(_) => rx.recv_timeout(timeout).ok(),
        Err(_) => Some(Client::connect(run_dir)),
    }
}

/// A stop between the two trainers of a hand-over: recorded for the background trainer, which
/// looks for it on start holding the lock. One that took the lock before the record may have
/// looked already: then the stop must go through its socket (exit 4, try again).
fn stop_during_handover(run_dir: &Path) -> i32 {
    if let Err(e) = crate::run::dir::record_stop_request(run_dir) {
        crate::say_err!("dino ctl: the run is being handed over to a background trainer, and the stop cannot be recorded: {e:#}");
        return EXIT_FAILED;
    }
    if let Some(pid) = lock::holder(run_dir) {
        crate::say_err!("dino ctl: busy: the run's background trainer (pid {pid}) is starting; try again to stop it through its socket");
        return EXIT_BUSY;
    }
    crate::say!("{{\"stop\":\"recorded\",\"reason\":\"the run is being handed over; its background trainer stops on start\"}}");
    EXIT_OK
}

/// The socket failed while a trainer holds the run's lock: it is alive, so the run is busy (or
/// hung), not over. Without a holder the failure is reported as it is.
fn busy_or_failed(run_dir: &Path, what: &str) -> i32 {
    match lock::holder(run_dir) {
        Some(pid) => {
            crate::say_err!(
                "dino ctl: busy: the trainer (pid {pid}) holds {} but its socket did not serve us ({what}); try again",
                run_dir.shown()
            );
            EXIT_BUSY
        }
        None => {
            crate::say_err!("dino ctl: {what}");
            EXIT_FAILED
        }
    }
}

fn offline_status(run_dir: &Path) -> serde_json::Value {
    let s = runs::summarize(run_dir);
    let f = runs::file_state(run_dir);
    serde_json::json!({
        "live": false,
        "status": s.status.label(),
        "iter": f.iter,
        "run": f.info,
        "last_metrics": runs::last_metrics(run_dir),
        "health": s.health,
    })
}

enum CtlFailure {
    Closed,
    /// Connected, but not even the greeting every client gets at once came within the timeout:
    /// the trainer holds the run and does not answer (a SIGSTOP, a hang).
    NoAnswer(Duration),
    /// The server refused us for want of a free connection.
    Busy(String),
    Failed(String),
}

impl From<ClientError> for CtlFailure {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Closed { .. } | ClientError::NotLive { .. } => CtlFailure::Closed,
            // Writing to a connection the server already closed (a refusal we had not read yet).
            ClientError::Io { source, .. }
                if matches!(source.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset) =>
            {
                CtlFailure::Closed
            }
            other => CtlFailure::Failed(other.to_string()),
        }
    }
}

/// The server's refusal for want of a connection slot, the first line a refused client gets.
fn busy(e: &Event) -> Option<CtlFailure> {
    match e {
        Event::Error { message } if message.starts_with(BUSY) => Some(CtlFailure::Busy(message.clone())),
        _ => None,
    }
}

/// Errors meant for this client: replies to a bad request (other errors are broadcast to all).
fn rejected(e: &Event) -> Option<String> {
    match e {
        Event::Error { message } if message.starts_with("bad request") || message.contains("not carried out") => Some(message.clone()),
        _ => None,
    }
}

/// Waits for the greeting the server sends every client first. A refusal for want of a slot comes
/// instead of it; nothing at all means a trainer that does not answer.
fn greeted(client: &mut Client, timeout: Duration) -> Result<Event, CtlFailure> {
    let mut refused = None;
    let first = client.wait_for(timeout, |e| {
        refused = busy(e);
        refused.is_some() || matches!(e, Event::Hello { .. })
    })?;
    match (refused, first) {
        (Some(b), _) => Err(b),
        (None, Some(hello)) => Ok(hello),
        (None, None) => Err(CtlFailure::NoAnswer(timeout)),
    }
}

fn execute(client: &mut Client, p: &Parsed, run_dir: &Path) -> Result<String, CtlFailure> {
    let hello = greeted(client, p.timeout)?;
    match &p.request {
        Request::Status => status(client, &hello, p.timeout, run_dir),
        Request::Send(cmd) => {
            client.send(cmd)?;
            let mut failure: Option<String> = None;
            let ack = client.wait_for(p.timeout, |e| {
                if let Some(m) = rejected(e) {
                    failure = Some(m);
                    return true;
                }
                match (cmd, e) {
                    (Command::Pause, Event::State { state: RunState::Paused, .. }) => true,
                    (Command::Resume, Event::State { state: RunState::Running, .. }) => true,
                    (Command::Stop { .. }, Event::State { state, .. }) => state.is_over(),
                    (Command::Checkpoint, Event::CheckpointSaved(_)) => true,
                    (Command::Checkpoint, Event::Warning { message }) if message.contains("not checkpointing") => {
                        failure = Some(message.clone());
                        true
                    }
                    (Command::Eval { kind, .. }, Event::EvalResult { kind: k, .. }) => k == kind,
                    (Command::Eval { .. }, Event::Error { message }) => {
                        failure = Some(message.clone());
                        true
                    }
                    // A run that ends while we wait has answered in its way.
                    (_, Event::State { state, .. }) if state.is_over() => {
                        failure = Some(format!("the run ended ({state:?}) before acknowledging"));
                        true
                    }
                    _ => false,
                }
            })?;
            if let Some(m) = failure {
                return Err(CtlFailure::Failed(m));
            }
            match ack {
                Some(e) => Ok(serde_json::to_string(&e).unwrap_or_default()),
                None => Err(CtlFailure::Failed(format!("no acknowledgement within {:.0} s", p.timeout.as_secs_f64()))),
            }
        }
        Request::Set(edits) => {
            for e in edits {
                client.send(&Command::EditSchedule(*e))?;
            }
            let mut pending: Vec<ScheduleEdit> = edits.clone();
            let mut done: Vec<Event> = Vec::new();
            let mut failure: Option<String> = None;
            client.wait_for(p.timeout, |e| {
                if let Some(m) = rejected(e) {
                    failure = Some(m);
                    return true;
                }
                // The trainer's own range check (the curve the edit makes) refused it.
                if let Event::Error { message } = e {
                    if message.starts_with(SCHEDULE_EDIT_REFUSED) {
                        failure = Some(message.clone());
                        return true;
                    }
                }
                if let Event::ScheduleEdited { edit } = e {
                    if let Some(i) = pending.iter().position(|x| x.schedule == edit.schedule && x.kind == edit.kind) {
                        pending.remove(i);
                        done.push(e.clone());
                    }
                }
                pending.is_empty()
            })?;
            if let Some(m) = failure {
                return Err(CtlFailure::Failed(m));
            }
            if !pending.is_empty() {
                return Err(CtlFailure::Failed(format!(
                    "{} edit(s) not acknowledged within {:.0} s",
                    pending.len(),
                    p.timeout.as_secs_f64()
                )));
            }
            Ok(done.iter().map(|e| serde_json::to_string(e).unwrap_or_default()).collect::<Vec<_>>().join("\n"))
        }
    }
}

/// The live run's status as one JSON object, from the snapshot a client gets on connecting, with
/// the health verdict read off the run directory (as `dino runs` shows it).
fn status(client: &mut Client, hello: &Event, timeout: Duration, run_dir: &Path) -> Result<String, CtlFailure> {
    let mut out = serde_json::json!({ "live": true, "socket": client.path });
    if let Event::Hello { pid, protocol } = hello {
        out["pid"] = (*pid).into();
        out["protocol"] = (*protocol).into();
    }
    out["health"] = serde_json::to_value(runs::health_of(run_dir)).unwrap_or_default();
    let mut schedules: Vec<(ScheduleName, Schedule)> = Vec::new();
    let mut asked = false;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        // The snapshot arrives at once; a trainer still building its model has no state yet.
        let e = match client.recv(left.min(Duration::from_secs(2)))? {
            Some(e) => e,
            None if !asked && !left.is_zero() => {
                client.send(&Command::Status)?;
                asked = true;
                continue;
            }
            None => {
                out["state"] = "starting".into();
                break;
            }
        };
        if let Some(b) = busy(&e) {
            return Err(b);
        }
        match e {
            Event::Started(info) => out["run"] = serde_json::to_value(info).unwrap_or_default(),
            Event::Schedules { schedules: s } => schedules = s,
            Event::Metrics(m) => {
                // The 0-based epoch of the last iteration done, as the TUI's header and log.txt
                // name it; `iter` below is the iterations done (the next one's 0-based index).
                out["epoch"] = m.epoch.into();
                out["last_metrics"] = serde_json::to_value(m).unwrap_or_default();
            }
            Event::State { state, iter } => {
                out["state"] = serde_json::to_value(state).unwrap_or_default();
                out["iter"] = iter.into();
                let mut now = serde_json::Map::new();
                for (name, s) in schedules.drain(..) {
                    now.insert(
                        serde_json::to_value(name).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
                        s.value(iter).into(),
                    );
                }
                out["schedules"] = now.into();
                break;
            }
            _ => {}
        }
    }
    Ok(out.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn commands_parse_and_bad_ones_say_why() {
        assert_eq!(parse(&args("pause")).map(|p| p.request), Ok(Request::Send(Command::Pause)));
        assert_eq!(parse(&args("stop --no-checkpoint")).map(|p| p.request), Ok(Request::Send(Command::Stop { checkpoint: false })));
        let p = parse(&args("set lr=1e-4 min_lr=0 --from_iter 40 --timeout 5")).expect("set");
        assert_eq!(p.timeout, Duration::from_secs(5));
        assert_eq!(
            p.request,
            Request::Set(vec![
                ScheduleEdit { schedule: ScheduleName::Lr, from_iter: 40, kind: EditKind::Constant(1e-4) },
                ScheduleEdit { schedule: ScheduleName::Lr, from_iter: 40, kind: EditKind::Final(0.0) },
            ])
        );
        for (bad, needle) in [
            ("", "no command"),
            ("dance", "unknown command"),
            ("set lr", "KEY=VALUE"),
            ("set lr=x", "not a number"),
            ("set colour=1", "unknown setting"),
            ("eval umap", "unknown command"),
            ("pause --timeout -1", "positive"),
            ("pause --timeout 1e19", "at most"),
            ("pause --timeout=inf", "positive"),
            ("pause --bogus", "unknown option"),
        ] {
            let e = parse(&args(bad)).expect_err(bad);
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }
}
