//! Event fan-out: the trainer emits every event once, into one channel; the hub copies each to
//! the local consumer (headless printer or in-process TUI) and to every control-socket client.
//! It also remembers what a client joining late needs first (the run's facts, its schedules, its
//! state, the latest metrics); everything older is in the run directory's files.
//!
//! The trainer must never wait for a watcher, so clients get bounded queues and one that falls
//! too far behind is dropped instead of slowing training.

use crate::protocol::{Event, IterMetrics, RunInfo, RunState, PROTOCOL_VERSION};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};

/// Events a client may have queued before it is considered stuck (a few minutes of a fast run).
pub const CLIENT_QUEUE: usize = 16_384;

#[derive(Debug, Default, Clone)]
struct Snapshot {
    started: Option<RunInfo>,
    schedules: Option<Event>,
    state: Option<(RunState, usize)>,
    metrics: Option<IterMetrics>,
}

impl Snapshot {
    fn record(&mut self, e: &Event) {
        match e {
            Event::Started(i) => self.started = Some(i.clone()),
            Event::Schedules { .. } => self.schedules = Some(e.clone()),
            Event::State { state, iter } => self.state = Some((*state, *iter)),
            Event::Metrics(m) => {
                // Keeps the state's iteration current for late joiners.
                if let Some((_, iter)) = &mut self.state {
                    *iter = m.iter + 1;
                }
                self.metrics = Some(m.clone());
            }
            _ => {}
        }
    }

    fn events(&self) -> Vec<Event> {
        let mut out = vec![Event::Hello { protocol: PROTOCOL_VERSION, pid: std::process::id() }];
        out.extend(self.started.clone().map(Event::Started));
        out.extend(self.schedules.clone());
        out.extend(self.metrics.clone().map(Event::Metrics));
        out.extend(self.state.map(|(state, iter)| Event::State { state, iter }));
        out
    }
}

struct Client {
    id: u64,
    tx: Sender<Event>,
}

#[derive(Default)]
struct Inner {
    snapshot: Snapshot,
    clients: Vec<Client>,
    /// None once the trainer's channel closed: nothing more will come.
    local: Option<Sender<Event>>,
    closed: bool,
    next_id: u64,
}

/// Cheap to clone; every clone publishes to and subscribes on the same fan-out.
#[derive(Clone, Default)]
pub struct Hub {
    inner: Arc<Mutex<Inner>>,
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; carrying on is safe.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts copying `trainer_events` to subscribers; returns the hub and the local consumer's
    /// receiver. The thread ends, closing every subscriber, when the trainer's channel closes.
    pub fn start(trainer_events: Receiver<Event>) -> std::io::Result<(Hub, Receiver<Event>, std::thread::JoinHandle<()>)> {
        let (local_tx, local_rx) = crossbeam_channel::unbounded();
        let hub = Hub::default();
        hub.lock().local = Some(local_tx);
        let h = hub.clone();
        let thread = std::thread::Builder::new().name("event-hub".into()).spawn(move || {
            for e in trainer_events.iter() {
                h.publish(e);
            }
            h.close();
        })?;
        Ok((hub, local_rx, thread))
    }

    /// Sends an event to everyone: the trainer's own, or one raised beside it (a bad
    /// schedule-edits file).
    pub fn publish(&self, e: Event) {
        let mut inner = self.lock();
        if inner.closed {
            return;
        }
        inner.snapshot.record(&e);
        inner.clients.retain(|c| match c.tx.try_send(e.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                tracing::warn!("control client {} is {CLIENT_QUEUE} events behind; dropping it", c.id);
                false
            }
            // The client's session ended; forget it quietly (the session logged why).
            Err(TrySendError::Disconnected(_)) => false,
        });
        if let Some(local) = &inner.local {
            // The local consumer may have stopped reading (a TUI that quit); training goes on.
            if local.send(e).is_err() {
                inner.local = None;
            }
        }
    }

    /// A new client's queue, primed with the hello line and the snapshot, then every event from
    /// now on. Returns its id (for log lines) and the queue; a closed hub gives a queue holding
    /// only the snapshot, already disconnected.
    pub fn subscribe(&self) -> (u64, Receiver<Event>) {
        let mut inner = self.lock();
        let (tx, rx) = crossbeam_channel::bounded(CLIENT_QUEUE);
        for e in inner.snapshot.events() {
            let _ = tx.try_send(e);
        }
        inner.next_id += 1;
        let id = inner.next_id;
        if !inner.closed {
            inner.clients.push(Client { id, tx });
        }
        (id, rx)
    }

    /// Whether the trainer's events ended (nothing more will be published).
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    pub fn clients(&self) -> usize {
        self.lock().clients.len()
    }

    /// Disconnects every subscriber: the run is over.
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.clients.clear();
        inner.local = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_subscribers_get_the_snapshot_then_live_events_and_close_with_the_trainer() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (hub, local, thread) = Hub::start(rx).expect("hub");
        tx.send(Event::State { state: RunState::Running, iter: 3 }).expect("send");
        // The local consumer sees everything in order.
        assert_eq!(local.recv().expect("local"), Event::State { state: RunState::Running, iter: 3 });
        let (_, client) = hub.subscribe();
        assert!(matches!(client.recv().expect("hello"), Event::Hello { protocol: PROTOCOL_VERSION, .. }));
        assert_eq!(client.recv().expect("state"), Event::State { state: RunState::Running, iter: 3 });
        tx.send(Event::Warning { message: "w".into() }).expect("send");
        assert_eq!(client.recv().expect("live"), Event::Warning { message: "w".into() });
        drop(tx);
        thread.join().expect("hub thread");
        assert!(client.recv().is_err(), "closed with the trainer");
        assert_eq!(local.iter().count(), 1, "the warning, then closed");
    }

    #[test]
    fn a_client_that_never_reads_is_dropped_and_others_carry_on() {
        let hub = Hub::default();
        let (_, stuck) = hub.subscribe();
        for i in 0..CLIENT_QUEUE + 10 {
            hub.publish(Event::State { state: RunState::Running, iter: i });
        }
        assert_eq!(hub.clients(), 0);
        assert_eq!(stuck.len(), CLIENT_QUEUE);
        let (_, fresh) = hub.subscribe();
        assert_eq!(hub.clients(), 1);
        assert!(fresh.len() >= 2);
    }
}
