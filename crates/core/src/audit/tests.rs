//! The audit queue against stores that hang, fail or recover, and what an
//! entry keeps of an event.

use std::sync::atomic::AtomicU32;

use async_trait::async_trait;
use regstack_ports::{AuditQuery, Email, SessionId, StoreError, Timestamp, UserId};
use regstack_testkit::fixtures::t0;
use regstack_testkit::memory::memory_stores;

use super::*;

fn failed_login(at: Timestamp) -> Event {
    let mut e = Event::new(EventKind::LoginFailed, at);
    e.email = Some(Email::parse("who@example.com").unwrap());
    e.reason = Some("wrong_password");
    e.ip = Some("198.51.100.4".to_owned());
    e.url_without_token = Some("https://app.example/reset?token=[REDACTED]".to_owned());
    e
}

/// A store whose appends never finish: a database that stopped answering.
struct Stuck;

#[async_trait]
impl AuditStore for Stuck {
    async fn append(&self, _: &[AuditEntry]) -> Result<(), StoreError> {
        std::future::pending().await
    }
    async fn query(&self, _: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(Vec::new())
    }
    async fn purge_before(&self, _: Timestamp) -> Result<u64, StoreError> {
        Ok(0)
    }
}

/// Fails the first `failures` appends, then forwards to a real store.
struct Flaky {
    failures: AtomicU32,
    inner: Arc<dyn AuditStore>,
}

#[async_trait]
impl AuditStore for Flaky {
    async fn append(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StoreError::unavailable(std::io::Error::other("down")));
        }
        self.inner.append(entries).await
    }
    async fn query(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.query(q).await
    }
    async fn purge_before(&self, t: Timestamp) -> Result<u64, StoreError> {
        self.inner.purge_before(t).await
    }
}

#[tokio::test]
async fn a_stuck_store_never_blocks_the_caller_and_overflow_is_counted() {
    let log = AuditLog::new(Arc::new(Stuck), 10);
    let started = std::time::Instant::now();
    for _ in 0..5_000 {
        log.record(&failed_login(t0()));
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "recording must not wait for the store"
    );
    // The writer holds at most one batch; the queue at most 10 more.
    assert!(log.dropped() >= 5_000 - 10 - BATCH as u64, "{log:?}");
    assert_eq!(log.written(), 0);
}

#[tokio::test]
async fn a_failing_batch_is_retried_and_written_once() {
    let stores = memory_stores();
    let log = AuditLog::new(
        Arc::new(Flaky {
            failures: AtomicU32::new(ATTEMPTS - 1),
            inner: stores.audit.clone(),
        }),
        100,
    );
    log.record(&failed_login(t0()));
    log.flush(Duration::from_secs(10)).await;
    let rows = stores.audit.query(&AuditQuery::default()).await.unwrap();
    assert_eq!(rows.len(), 1, "{log:?}");
    assert_eq!((log.written(), log.failed()), (1, 0));
}

#[tokio::test]
async fn a_batch_the_store_keeps_refusing_is_given_up_and_counted() {
    let stores = memory_stores();
    let log = AuditLog::new(
        Arc::new(Flaky {
            failures: AtomicU32::new(ATTEMPTS),
            inner: stores.audit.clone(),
        }),
        100,
    );
    log.record(&failed_login(t0()));
    log.flush(Duration::from_secs(10)).await;
    assert_eq!((log.written(), log.failed()), (0, 1));
    // The next entry is written: one bad batch does not stop the writer.
    log.record(&failed_login(t0()));
    log.flush(Duration::from_secs(10)).await;
    assert_eq!(log.written(), 1);
}

#[tokio::test]
async fn entries_recorded_before_a_runtime_existed_are_written_later() {
    let stores = memory_stores();
    let log = std::thread::scope(|s| {
        s.spawn(|| {
            let log = AuditLog::new(stores.audit.clone(), 100);
            log.record(&failed_login(t0()));
            log
        })
        .join()
        .unwrap()
    });
    log.flush(Duration::from_secs(10)).await;
    assert_eq!(log.written(), 1);
}

#[test]
fn an_entry_keeps_the_facts_and_nothing_else() {
    let mut e = failed_login(t0());
    e.session_id = Some(SessionId::generate());
    let entry = entry_for(&e).expect("login_failed is audited");
    assert_eq!(entry.kind, "login_failed");
    assert_eq!(entry.at, t0());
    assert_eq!(
        entry.email.as_ref().map(Email::as_str),
        Some("who@example.com")
    );
    assert_eq!(entry.ip.as_deref(), Some("198.51.100.4"));
    let detail: Value = serde_json::from_str(&entry.detail).unwrap();
    assert_eq!(detail["reason"], "wrong_password");
    assert!(detail.get("session_id").is_some());
    assert!(
        !entry.detail.contains("REDACTED") && !entry.detail.contains("token"),
        "the mailed link is not audited: {}",
        entry.detail
    );
    assert_eq!(entry.id.len(), 32);
    assert_ne!(entry.id, entry_for(&e).unwrap().id, "ids are fresh");
}

#[test]
fn administrators_changes_are_named_with_their_new_values() {
    let mut e = Event::new(EventKind::AdminUserUpdated, t0());
    e.user_id = Some(UserId::generate());
    e.actor_id = Some(UserId::generate());
    e.changes = vec![("is_active", false.into()), ("is_superuser", true.into())];
    let entry = entry_for(&e).unwrap();
    assert_eq!(entry.actor_id, e.actor_id);
    let detail: Value = serde_json::from_str(&entry.detail).unwrap();
    assert_eq!(
        detail["changes"],
        serde_json::json!({ "is_active": false, "is_superuser": true })
    );
}

#[test]
fn every_kind_but_the_duplicate_session_start_is_audited() {
    for kind in EventKind::ALL {
        assert_eq!(
            entry_for(&Event::new(kind, t0())).is_some(),
            kind != EventKind::SessionStarted,
            "{kind:?}"
        );
    }
}
