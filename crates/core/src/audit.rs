//! The audit log's writer: every security event the engine fires becomes
//! one [`AuditEntry`], written by a task of its own.
//!
//! The request that caused an event never waits for its row and never
//! fails because of it: [`AuditLog::record`] puts the entry on a bounded
//! queue and returns. When the queue is full (the store is down or slower
//! than the traffic) the entry is dropped, counted
//! ([`AuditLog::dropped`]) and logged — a flood of sign-in attempts must
//! not turn the audit log into the thing that takes the service down. The
//! writer takes what is queued in batches, retries a failed batch a few
//! times (appends are idempotent by id), then gives it up, counted as
//! [`AuditLog::failed`] and logged.
//!
//! What an entry says is chosen here, from the event: its kind, the
//! account and the administrator concerned, the address, the client IP
//! and a small JSON object of facts that are not secrets (a failure's
//! reason class, an OAuth provider and mode, the flags an administrator
//! changed, the previous address of an address change). Events never
//! carry a password, token or code, and nothing else is read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use regstack_ports::{AuditEntry, AuditStore};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use crate::events::{Event, EventKind};

/// Entries written per store call, at most.
const BATCH: usize = 256;
/// Attempts at writing one batch before it is given up.
const ATTEMPTS: u32 = 3;
/// The pause before the first retry; doubled for each next one.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

enum Msg {
    Entry(AuditEntry),
    /// Answered once everything queued before it is written (or given up).
    Flush(oneshot::Sender<()>),
}

/// What the writer task takes when it starts: the queue's receiving end
/// and the store.
type Writer = (mpsc::Receiver<Msg>, Arc<dyn AuditStore>);

/// Counters shared by the queue's two ends.
#[derive(Default)]
struct Counters {
    dropped: AtomicU64,
    failed: AtomicU64,
    written: AtomicU64,
}

/// The queue in front of an [`AuditStore`]. Cheap to share; the writer task
/// starts with the first entry (so building an engine needs no runtime)
/// and ends when the log is dropped, after writing what is queued.
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
    /// The writer's end until the writer starts.
    pending: Mutex<Option<Writer>>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dropped", &self.dropped())
            .field("failed", &self.failed())
            .field("written", &self.written())
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// A log writing to `store` through a queue of `capacity` entries.
    pub fn new(store: Arc<dyn AuditStore>, capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        Self {
            tx,
            pending: Mutex::new(Some((rx, store))),
            counters: Arc::default(),
        }
    }

    /// Queues the entry for `event`, if its kind is audited. Never waits.
    pub fn record(&self, event: &Event) {
        if let Some(entry) = entry_for(event) {
            self.enqueue(Msg::Entry(entry));
        }
    }

    fn enqueue(&self, msg: Msg) {
        self.start_writer();
        match self.tx.try_send(msg) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(Msg::Flush(done))) => {
                // A flush behind a full queue: answered now, as nothing
                // more can be promised.
                let _ = done.send(());
            }
            Err(mpsc::error::TrySendError::Full(Msg::Entry(e))) => {
                let n = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // The first, then one line per thousand: the log of a flood
                // stays readable.
                if n == 1 || n.is_multiple_of(1000) {
                    tracing::warn!(
                        dropped = n,
                        kind = e.kind,
                        "audit queue full: entry dropped (the audit store is down or too slow)"
                    );
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Starts the writer on the current runtime, once. Outside a runtime
    /// the entries wait in the queue for the first call made inside one.
    fn start_writer(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.is_none() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if let Some((rx, store)) = pending.take() {
            runtime.spawn(write_loop(rx, store, self.counters.clone()));
        }
    }

    /// Waits until every entry queued before this call is written or given
    /// up, for at most `timeout`. For shutdown, and for tests that read the
    /// log back.
    pub async fn flush(&self, timeout: Duration) {
        let (done, wait) = oneshot::channel();
        self.start_writer();
        let sent = tokio::time::timeout(timeout, self.tx.send(Msg::Flush(done))).await;
        if matches!(sent, Ok(Ok(()))) {
            let _ = tokio::time::timeout(timeout, wait).await;
        }
    }

    /// Entries dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Entries given up after the store refused every attempt.
    pub fn failed(&self) -> u64 {
        self.counters.failed.load(Ordering::Relaxed)
    }

    /// Entries written.
    pub fn written(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }
}

async fn write_loop(mut rx: mpsc::Receiver<Msg>, store: Arc<dyn AuditStore>, c: Arc<Counters>) {
    let mut batch: Vec<AuditEntry> = Vec::with_capacity(BATCH);
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Entry(e) => batch.push(e),
                Msg::Flush(done) => waiters.push(done),
            }
            if batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            write_batch(&*store, &batch, &c).await;
            batch.clear();
        }
        for done in waiters.drain(..) {
            let _ = done.send(());
        }
    }
}

async fn write_batch(store: &dyn AuditStore, batch: &[AuditEntry], c: &Counters) {
    let mut pause = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        match store.append(batch).await {
            Ok(()) => {
                c.written.fetch_add(batch.len() as u64, Ordering::Relaxed);
                return;
            }
            Err(e) if attempt < ATTEMPTS => {
                tracing::debug!(error = %e, attempt, "audit batch not written; retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(e) => {
                c.failed.fetch_add(batch.len() as u64, Ordering::Relaxed);
                tracing::error!(
                    error = %e,
                    entries = batch.len(),
                    "audit entries given up after {ATTEMPTS} attempts"
                );
            }
        }
    }
}

/// Whether events of `kind` are audited. `session_started` always comes
/// with `user_logged_in`, which says the same.
pub fn is_audited(kind: EventKind) -> bool {
    !matches!(kind, EventKind::SessionStarted)
}

/// A fresh entry id: 128 random bits as 32 hex digits.
pub fn new_entry_id() -> String {
    hex::encode(crate::tokens::random_bytes::<16>())
}

/// The entry an event becomes, or `None` for kinds not audited.
pub fn entry_for(e: &Event) -> Option<AuditEntry> {
    if !is_audited(e.kind) {
        return None;
    }
    let mut detail = Map::new();
    let mut put = |k: &str, v: Value| {
        detail.insert(k.to_owned(), v);
    };
    if let Some(r) = e.reason {
        put("reason", r.into());
    }
    if let Some(p) = &e.provider {
        put("provider", p.clone().into());
    }
    if let Some(m) = e.mode {
        put("mode", m.into());
    }
    if let Some(n) = e.was_new {
        put("was_new_account", n.into());
    }
    if let Some(old) = &e.old_email {
        put("old_email", old.as_str().into());
    }
    if let Some(s) = &e.session_id {
        put("session_id", s.as_str().into());
    }
    if !e.changes.is_empty() {
        let changes: Map<String, Value> = e
            .changes
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        put("changes", Value::Object(changes));
    }
    Some(AuditEntry {
        id: new_entry_id(),
        at: e.at,
        kind: e.kind.name().to_owned(),
        user_id: e.user_id.clone(),
        actor_id: e.actor_id.clone(),
        email: e.email.clone(),
        ip: e.ip.clone(),
        detail: Value::Object(detail).to_string(),
    })
}

#[cfg(test)]
mod tests;
