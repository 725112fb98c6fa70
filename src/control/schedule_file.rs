//! Schedule edits by file, for people who prefer an editor to the Schedules tab. The trainer's
//! process watches `RUN_DIR/schedule-edits.toml` (with `notify`, and by polling once a second for
//! filesystems that send no notifications) and applies each new entry as the Schedules tab would:
//!
//! ```toml
//! [[edit]]
//! schedule = "lr"        # lr | wd | teacher_temp | momentum
//! kind = "constant"      # constant | scale | peak | final | warmup_epochs
//! value = 1e-4
//! from_iter = 120        # optional; default: the next iteration
//! ```
//!
//! The whole file is checked first: one bad entry and nothing is applied, and an error event names
//! the line. Each entry is applied once; which were is recorded in `events.jsonl`
//! (`schedule_file_edit`, with the entry's key), so a restarted trainer does not apply them again.
//! Deleting an entry does not undo it (use `u` in the TUI).

use super::hub::Hub;
use crate::files::ShowPath;
use crate::protocol::schedule::{EditKind, ScheduleEdit, ScheduleName};
use crate::protocol::{Command, Event};
use crate::run::dir::{append_event, append_event_lines, event_line, EVENTS_FILE};
use crossbeam_channel::Sender;
use notify::Watcher;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const EDITS_FILE: &str = "schedule-edits.toml";
/// Polling period: the fallback when `notify` is silent (NFS, some container mounts).
const POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EditsFile {
    #[serde(default)]
    edit: Vec<toml::Spanned<Entry>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum KindName {
    Constant,
    Scale,
    Peak,
    Final,
    WarmupEpochs,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    schedule: ScheduleName,
    kind: KindName,
    value: toml::Value,
    from_iter: Option<usize>,
}

/// One valid entry of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileEdit {
    /// Identifies the entry across reads: its content, plus its rank among identical entries so a
    /// repeated `scale` is applied as many times as it is written.
    pub key: String,
    /// 1-based line of the entry's `[[edit]]` table.
    pub line: usize,
    pub edit: ScheduleEdit,
}

/// 1-based line numbers of byte offsets, counted once for the whole file (counting from the
/// start for each of 10,000 entries made reading a big file quadratic).
struct Lines(Vec<usize>);

impl Lines {
    fn of(text: &str) -> Self {
        Lines(text.bytes().enumerate().filter(|(_, b)| *b == b'\n').map(|(i, _)| i).collect())
    }

    fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|nl| *nl < offset) + 1
    }
}

/// Parses and checks the whole file; an error names the file and the line.
pub fn parse(text: &str) -> Result<Vec<FileEdit>, String> {
    let lines = Lines::of(text);
    let file: EditsFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| format!(" line {}", lines.line(s.start))).unwrap_or_default();
        format!("{EDITS_FILE}{line}: {}", e.message())
    })?;
    let mut out: Vec<FileEdit> = Vec::new();
    let mut ranks: HashMap<String, usize> = HashMap::new();
    for spanned in file.edit {
        let line = lines.line(spanned.span().start);
        let e = spanned.into_inner();
        let bad = |what: String| format!("{EDITS_FILE} line {line}: {what}; no edit applied");
        let value = match e.value {
            toml::Value::Float(f) => f,
            toml::Value::Integer(i) => i as f64,
            other => return Err(bad(format!("value must be a number, not {other}"))),
        };
        if !value.is_finite() || value < 0.0 {
            return Err(bad(format!("value must be a finite number >= 0, not {value}")));
        }
        let kind = match e.kind {
            KindName::Constant => EditKind::Constant(value),
            KindName::Scale => EditKind::Scale(value),
            KindName::Peak => EditKind::Peak(value),
            KindName::Final => EditKind::Final(value),
            KindName::WarmupEpochs if value.fract() == 0.0 => EditKind::WarmupEpochs(value as usize),
            KindName::WarmupEpochs => return Err(bad(format!("warmup_epochs takes a whole number, not {value}"))),
        };
        // 0 means "from the next iteration": the trainer moves edits in the past to its current one.
        let edit = ScheduleEdit { schedule: e.schedule, from_iter: e.from_iter.unwrap_or(0), kind };
        // The value's range here, the curve's at the trainer (it knows the schedule).
        edit.check_value().map_err(|r| bad(r.to_string()))?;
        let content = format!("{:?}/{:?}/{}", edit.schedule, edit.kind, e.from_iter.map_or("next".into(), |i| i.to_string()));
        let rank = ranks.entry(content.clone()).or_default();
        out.push(FileEdit { key: format!("{content}#{rank}"), line, edit });
        *rank += 1;
    }
    Ok(out)
}

/// Keys of entries applied by earlier trainers on this run directory.
fn applied_keys(run_dir: &Path) -> HashSet<String> {
    crate::files::read_to_string(&run_dir.join(EVENTS_FILE))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "schedule_file_edit")
        .filter_map(|v| v["key"].as_str().map(str::to_string))
        .collect()
}

/// How long the file's content must stay the same before it is read as meant: a file written in
/// pieces (a slow editor, `cat >>`) is neither reported as broken nor half-applied meanwhile.
pub const SETTLE: Duration = Duration::from_millis(750);

/// The watcher's state, separate from its thread so tests can drive it step by step.
pub struct EditsFollower {
    run_dir: PathBuf,
    applied: HashSet<String>,
    settle: Duration,
    /// The content read last and since when it has not changed.
    seen: Option<(String, std::time::Instant)>,
    /// Last content acted on, so an unchanged bad file reports its error once, not every second.
    last_text: Option<String>,
    /// Why the file could not be read last time (a FIFO in its place, say), reported once.
    last_error: Option<String>,
}

impl EditsFollower {
    pub fn new(run_dir: &Path) -> Self {
        Self::with_settle(run_dir, SETTLE)
    }

    /// A follower that acts on a content once it has been unchanged for `settle` (zero: at once).
    pub fn with_settle(run_dir: &Path, settle: Duration) -> Self {
        Self { run_dir: run_dir.to_path_buf(), applied: applied_keys(run_dir), settle, seen: None, last_text: None, last_error: None }
    }

    /// The error to report for a file that is there and cannot be read (not for a missing
    /// one: no edits yet), once until it changes.
    fn unreadable(&mut self, path: &Path, e: &std::io::Error) -> Option<String> {
        if e.kind() == std::io::ErrorKind::NotFound {
            self.last_error = None;
            return None;
        }
        let message = format!("{}: {e}; its edits are not applied", path.shown());
        if self.last_error.as_ref() == Some(&message) {
            return None;
        }
        // In the run's history too: a client that subscribes later still learns of it.
        let _ = append_event(&self.run_dir, "schedule_file_error", &serde_json::json!({ "message": message }));
        self.last_error = Some(message.clone());
        Some(message)
    }

    /// Reads the file if it changed and has settled; returns the commands to send and the error
    /// to report.
    pub fn check(&mut self) -> (Vec<Command>, Option<String>) {
        let path = self.run_dir.join(EDITS_FILE);
        let text = match crate::files::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                self.last_text = None;
                self.seen = None;
                return (vec![], self.unreadable(&path, &e));
            }
        };
        self.last_error = None;
        if self.last_text.as_deref() == Some(text.as_str()) {
            return (vec![], None);
        }
        match &self.seen {
            Some((seen, since)) if *seen == text && since.elapsed() >= self.settle => {}
            Some((seen, _)) if *seen == text => return (vec![], None),
            _ => {
                self.seen = Some((text.clone(), std::time::Instant::now()));
                if !self.settle.is_zero() {
                    return (vec![], None);
                }
            }
        }
        self.last_text = Some(text.clone());
        let edits = match parse(&text) {
            Ok(e) => e,
            Err(message) => {
                let _ = append_event(&self.run_dir, "schedule_file_error", &serde_json::json!({ "message": message }));
                return (vec![], Some(message));
            }
        };
        let (mut commands, mut lines) = (vec![], String::new());
        for e in edits {
            if self.applied.insert(e.key.clone()) {
                let details = serde_json::json!({ "key": e.key, "line": e.line, "edit": e.edit });
                match event_line("schedule_file_edit", &details) {
                    Ok(line) => lines += &line,
                    Err(err) => tracing::warn!("{err:#}"),
                }
                commands.push(Command::EditSchedule(e.edit));
            }
        }
        // Recorded before they are sent, so a trainer restarted meanwhile does not apply them twice.
        if lines.is_empty() {
            return (commands, None);
        }
        if let Err(err) = append_event_lines(&self.run_dir, &lines) {
            tracing::warn!("{err:#}");
        }
        (commands, None)
    }
}

/// The watching thread; stops when dropped.
pub struct EditsWatch {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EditsWatch {
    pub fn start(run_dir: &Path, commands: Sender<Command>, hub: Hub) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = crossbeam_channel::unbounded::<()>();
        // Without notify (no inotify watches left, say) the polling below still works.
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if res.is_ok_and(|e| e.paths.iter().any(|p| p.file_name().is_some_and(|n| n == EDITS_FILE))) {
                let _ = tx.send(());
            }
        })
        .and_then(|mut w| w.watch(run_dir, notify::RecursiveMode::NonRecursive).map(|_| w))
        .map_err(|e| tracing::info!("{EDITS_FILE}: no change notifications ({e}); polling"))
        .ok();
        let mut follower = EditsFollower::new(run_dir);
        let s = stop.clone();
        let thread = std::thread::Builder::new().name("schedule-edits".into()).spawn(move || {
            let _watcher = watcher;
            while !s.load(Ordering::SeqCst) {
                let (cmds, error) = follower.check();
                if let Some(message) = error {
                    tracing::warn!("{message}");
                    hub.publish(Event::Error { message });
                }
                for c in cmds {
                    if commands.send(c).is_err() {
                        return;
                    }
                }
                let _ = rx.recv_timeout(POLL);
                // An editor's save is often several events; one check after them is enough.
                while rx.try_recv().is_ok() {}
            }
        })?;
        Ok(Self { stop, thread: Some(thread) })
    }
}

impl Drop for EditsWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "[[edit]]\nschedule = \"lr\"\nkind = \"constant\"\nvalue = 1e-4\nfrom_iter = 120\n\n[[edit]]\nschedule = \"wd\"\nkind = \"final\"\nvalue = 0\n";

    #[test]
    fn good_file_parses_with_lines() {
        let e = parse(GOOD).expect("valid");
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].edit, ScheduleEdit { schedule: ScheduleName::Lr, from_iter: 120, kind: EditKind::Constant(1e-4) });
        assert_eq!(e[1].edit.kind, EditKind::Final(0.0));
        assert_eq!(e[1].edit.from_iter, 0);
        assert!(e[0].line <= 2 && e[1].line >= 7, "{e:?}");
    }

    #[test]
    fn bad_entries_name_their_line() {
        let bad_schedule = GOOD.replace("\"wd\"", "\"weight\"");
        let msg = parse(&bad_schedule).expect_err("unknown schedule");
        assert!(msg.contains("line 8") && msg.contains("weight"), "{msg}");
        let msg = parse(&GOOD.replace("value = 0", "value = -1")).expect_err("negative");
        assert!(msg.contains("line 7") && msg.contains("-1"), "{msg}");
        let msg = parse("[[edit]]\nschedule = \"lr\"\nkind = \"constant\"\nvalue = 1\ncolour = 3\n").expect_err("unknown key");
        assert!(msg.contains("colour"), "{msg}");
        let msg = parse("[[edit]\n").expect_err("syntax");
        assert!(msg.contains("line 1"), "{msg}");
        // The schedules' ranges, as the config's.
        let msg = parse("[[edit]]\nschedule = \"momentum\"\nkind = \"constant\"\nvalue = 3\n").expect_err("momentum 3");
        assert!(msg.contains("line 1") && msg.contains("[0, 1]"), "{msg}");
        let msg = parse("[[edit]]\nschedule = \"teacher_temp\"\nkind = \"constant\"\nvalue = 0\n").expect_err("temperature 0");
        assert!(msg.contains("(0, 1]"), "{msg}");
    }

    #[test]
    fn a_file_still_being_written_is_neither_reported_nor_applied_until_it_settles() {
        let d = tempfile::tempdir().expect("tmp");
        let f = d.path().join(EDITS_FILE);
        let settle = Duration::from_millis(300);
        let mut w = EditsFollower::with_settle(d.path(), settle);
        // Half of an entry: a syntax error if read as complete.
        std::fs::write(&f, &GOOD[..30]).expect("write");
        assert_eq!(w.check(), (vec![], None), "just written: wait");
        std::fs::write(&f, &GOOD[..60]).expect("write");
        assert_eq!(w.check(), (vec![], None), "still changing");
        std::fs::write(&f, GOOD).expect("write");
        assert_eq!(w.check(), (vec![], None));
        std::thread::sleep(settle + Duration::from_millis(50));
        assert_eq!(w.check().0.len(), 2, "settled: applied");
        // A file that stays broken is reported, once, after it settles.
        std::fs::write(&f, "[[edit]\n").expect("write");
        assert_eq!(w.check(), (vec![], None));
        std::thread::sleep(settle + Duration::from_millis(50));
        assert!(w.check().1.is_some_and(|e| e.contains("line 1")));
        assert_eq!(w.check(), (vec![], None), "reported once");
    }

    #[test]
    fn follower_applies_each_entry_once_across_restarts_and_nothing_from_a_bad_file() {
        let d = tempfile::tempdir().expect("tmp");
        let f = d.path().join(EDITS_FILE);
        std::fs::write(&f, GOOD).expect("write");
        let mut w = EditsFollower::with_settle(d.path(), Duration::ZERO);
        assert_eq!(w.check().0.len(), 2);
        assert_eq!(w.check().0.len(), 0, "unchanged file");
        std::fs::write(&f, format!("{GOOD}\n[[edit]]\nschedule = \"lr\"\nkind = \"scale\"\nvalue = 0.5\n")).expect("write");
        assert_eq!(
            w.check().0,
            vec![Command::EditSchedule(ScheduleEdit { schedule: ScheduleName::Lr, from_iter: 0, kind: EditKind::Scale(0.5) })]
        );
        std::fs::write(&f, format!("{GOOD}\n[[edit]]\nschedule = \"lr\"\nkind = \"scale\"\nvalue = \"half\"\n")).expect("write");
        let (cmds, err) = w.check();
        assert!(cmds.is_empty());
        assert!(err.expect("error").contains("line 12"));
        // A new trainer on the same directory remembers what was applied.
        let mut again = EditsFollower::with_settle(d.path(), Duration::ZERO);
        std::fs::write(&f, GOOD).expect("write");
        assert!(again.check().0.is_empty());
    }
}
