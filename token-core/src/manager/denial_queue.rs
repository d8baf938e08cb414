//! The bounded queue that takes `Denied` events off the response path.
//!
//! A refused validation hands its event to the queue without waiting (`try_send`) and returns;
//! a writer task appends queued events to the store in batches (one `append_audit` call for all
//! the events waiting, up to [`MAX_BATCH`]) and then hands them to the sink. So whether a denial
//! was written, coalesced or dropped never shows in how long the refusal took, and a slow or
//! stalled audit table cannot hold refusals up.
//!
//! - **Full queue**: the event is dropped and counted in
//!   [`ManagerStats::denied_events_queue_full`](crate::ManagerStats::denied_events_queue_full).
//! - **Failed append**: the batch is dropped and counted in
//!   [`ManagerStats::denied_events_dropped`](crate::ManagerStats::denied_events_dropped), as
//!   for every best-effort event.
//! - **The writer task** starts on the first queued denial, on the Tokio runtime that denial runs
//!   on (like the cache's feed follower: a manager may be built outside any runtime). It holds
//!   the store and the sink, never the manager: when the manager is dropped the queue's sender
//!   goes with it, and the task writes what is still queued and ends. If its runtime shuts down
//!   first, the events it had not written are counted as dropped, and the next denial starts a
//!   new task on whatever runtime it runs on.
//! - **Outside a Tokio runtime** there is nowhere to run the task: the event is written inline,
//!   as before the queue existed.
//! - **Waiting for it**: [`TokenManager::flush_denials`](crate::TokenManager::flush_denials)
//!   returns once every denial queued before the call is written or counted; `flush_usage`
//!   (hence every sweep) and the manager's audit reads call it first, so a query through the
//!   manager sees the denials the manager queued before it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, oneshot};

use crate::audit::AuditEvent;
use crate::store::TokenStore;
use crate::trail::AuditSink;

/// Default capacity of the denial queue (see
/// [`ManagerBuilder::denied_event_queue`](crate::ManagerBuilder::denied_event_queue)): more than
/// the [`MAX_DENIED_EVENTS_PER_WINDOW`](crate::trail::MAX_DENIED_EVENTS_PER_WINDOW) a window
/// can write, so it fills only while the store does not take writes.
pub const DEFAULT_DENIED_EVENT_QUEUE: usize = 1024;

/// Largest capacity [`ManagerBuilder::denied_event_queue`](crate::ManagerBuilder::denied_event_queue)
/// accepts.
pub const MAX_DENIED_EVENT_QUEUE: usize = 1 << 20;

/// Most events one `append_audit` call of the writer task carries.
const MAX_BATCH: usize = 128;

// Boxing the event would cost an allocation per denial; the queue's slots are this size anyway.
#[allow(clippy::large_enum_variant)]
enum Job {
    Write(AuditEvent),
    /// Answered once every job before it is done.
    Flush(oneshot::Sender<()>),
}

/// What the writer task needs: the store, the sink and the counters, never the manager (which
/// would then never be dropped).
struct Shared {
    store: Arc<dyn TokenStore>,
    sink: Option<Arc<dyn AuditSink>>,
    /// Events accepted by the queue and not yet written or counted as dropped: a flush with
    /// nothing pending returns at once.
    pending: AtomicU64,
    /// Queued events the store refused or that were lost with their task's runtime.
    dropped: AtomicU64,
    /// Events refused because the queue was full.
    queue_full: AtomicU64,
}

pub(super) struct DenialQueue {
    capacity: usize,
    /// The sender of the current writer task; `None` before the first denial in a runtime.
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    shared: Arc<Shared>,
}

impl DenialQueue {
    pub(super) fn new(
        capacity: usize,
        store: Arc<dyn TokenStore>,
        sink: Option<Arc<dyn AuditSink>>,
    ) -> Self {
        Self {
            capacity,
            sender: Mutex::new(None),
            shared: Arc::new(Shared {
                store,
                sink,
                pending: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                queue_full: AtomicU64::new(0),
            }),
        }
    }

    /// Queued events dropped after they were accepted (store refused them, runtime gone).
    pub(super) fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Events refused because the queue was full.
    pub(super) fn queue_full(&self) -> u64 {
        self.shared.queue_full.load(Ordering::Relaxed)
    }

    /// Queues `event` for the writer task without waiting; a full queue drops and counts it.
    /// Outside a Tokio runtime the event comes back (`Some`): the caller writes it itself.
    pub(super) fn push(&self, event: AuditEvent) -> Option<AuditEvent> {
        let Some(sender) = self.sender() else {
            return Some(event);
        };
        // Counted before it is sent, so a flush never overlooks an event the task already has.
        self.shared.pending.fetch_add(1, Ordering::AcqRel);
        match sender.try_send(Job::Write(event)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.shared.pending.fetch_sub(1, Ordering::AcqRel);
                self.shared.queue_full.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("token_denied_events_total", "fate" => "queue_full").increment(1);
            }
            // The task's runtime shut down just now: the event is lost with it.
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.shared.pending.fetch_sub(1, Ordering::AcqRel);
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        None
    }

    /// Waits until every event queued before the call is written or counted as dropped.
    pub(super) async fn flush(&self) {
        if self.shared.pending.load(Ordering::Acquire) == 0 {
            return;
        }
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(sender) = sender else {
            return;
        };
        let (done, written) = oneshot::channel();
        // A closed channel or a dropped answer means the task ended: it counted what it had.
        if sender.send(Job::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }

    /// The current task's sender, starting a task on this runtime if there is none (or its
    /// runtime is gone). `None` outside a Tokio runtime.
    fn sender(&self) -> Option<mpsc::Sender<Job>> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let mut slot = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = slot.as_ref().filter(|s| !s.is_closed()) {
            return Some(sender.clone());
        }
        let (sender, receiver) = mpsc::channel(self.capacity);
        let writer = Writer {
            shared: Arc::clone(&self.shared),
            receiver,
            batch: Vec::new(),
        };
        runtime.spawn(writer.run());
        *slot = Some(sender.clone());
        Some(sender)
    }
}

/// The writer task's state. Dropped with its runtime mid-way, it counts what it had not written.
struct Writer {
    shared: Arc<Shared>,
    receiver: mpsc::Receiver<Job>,
    batch: Vec<AuditEvent>,
}

impl Writer {
    /// Writes queued events until the manager (holding the sender) is dropped and the queue is
    /// empty.
    async fn run(mut self) {
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        let mut flushes = Vec::new();
        while self.receiver.recv_many(&mut jobs, MAX_BATCH).await > 0 {
            // Every received event moves into the batch before anything is awaited, so a task
            // dropped mid-write counts all of them (see `Drop`). A flush is answered once
            // everything received with it is written, which includes what was queued before it.
            for job in jobs.drain(..) {
                match job {
                    Job::Write(event) => self.batch.push(event),
                    Job::Flush(done) => flushes.push(done),
                }
            }
            self.write_batch().await;
            for done in flushes.drain(..) {
                let _ = done.send(());
            }
        }
    }

    /// One `append_audit` for the batch; the sink sees it only once the store has it.
    async fn write_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let shared = &self.shared;
        let count = self.batch.len() as u64;
        match shared.store.append_audit(&self.batch).await {
            Ok(()) => {
                if let Some(sink) = &shared.sink {
                    for event in &self.batch {
                        sink.record(event);
                    }
                }
            }
            Err(_) => {
                shared.dropped.fetch_add(count, Ordering::Relaxed);
            }
        }
        self.batch.clear();
        shared.pending.fetch_sub(count, Ordering::AcqRel);
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Only when the task is dropped unfinished (its runtime shut down): a finished run
        // leaves nothing behind.
        self.receiver.close();
        let mut lost = self.batch.len() as u64;
        while let Ok(job) = self.receiver.try_recv() {
            if matches!(job, Job::Write(_)) {
                lost += 1;
            }
        }
        if lost > 0 {
            self.shared.dropped.fetch_add(lost, Ordering::Relaxed);
            self.shared.pending.fetch_sub(lost, Ordering::AcqRel);
        }
    }
}
