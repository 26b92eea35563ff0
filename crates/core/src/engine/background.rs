//! Work a request hands off and answers without waiting for.
//!
//! `forgot_password` must answer an unknown address exactly as fast as a
//! known one (issue 19), so everything that depends on the address — the
//! lookup, the mail quota, the link token, the mail — runs here, after the
//! answer. The request path does the same few steps for every address:
//! take a slot, queue the job under its key, spawn it.
//!
//! - **Bounded.** At most [`MAX_JOBS`] jobs are in flight; the next
//!   request waits for a slot. That keeps a flood of requests (each now
//!   answered at once) from queueing unbounded work on the database, and
//!   the wait depends on other requests' jobs, never on this address.
//! - **In order per key.** Jobs with the same key (the address) run one
//!   after another in the order their requests were answered, so two
//!   requests in a row still mail their links in that order and the link
//!   mailed last is the one that works (a newer link supersedes the older).
//!   Jobs with different keys run concurrently.
//! - **After the answer.** A job starts [`START_DELAY`] after it was
//!   queued, when the answer has left.
//! - **Bounded in time, failures logged.** A job runs in its own task under
//!   [`JOB_TIMEOUT`]; an error, a panic or the timeout is logged with the
//!   job's name and the error's own message — never the address, a token
//!   or a body.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{oneshot, Semaphore};

use crate::error::AuthError;

/// How long one job may take: its store steps and its mail delivery
/// (itself bounded by `MAIL_TIMEOUT`) together.
pub(super) const JOB_TIMEOUT: Duration = Duration::from_secs(60);
/// Most jobs in flight (queued behind an earlier job of their key
/// included).
pub(super) const MAX_JOBS: usize = 64;
/// How long a job waits before it starts: long enough for the answer to be
/// on its way, so that the job's own work (and the database's, on another
/// process) does not compete with sending it on a busy machine — which
/// would show up as a slower answer for an address that has an account.
const START_DELAY: Duration = Duration::from_millis(10);

/// The engine's background jobs: a slot per job in flight, and per key the
/// newest job queued under it.
pub(super) struct Background {
    slots: Arc<Semaphore>,
    timeout: Duration,
    tails: Mutex<HashMap<String, Tail>>,
    next: AtomicU64,
}

/// The newest job queued under a key: its number, and what says it ended.
struct Tail {
    seq: u64,
    ended: oneshot::Receiver<()>,
}

/// A job's place in its key's queue. Dropped when the job ends, however it
/// ends (done, failed, panicked, timed out): that lets the next job of the
/// key start, and forgets the key if none was queued behind it, so the map
/// holds only keys with jobs in flight.
struct Turn {
    background: Arc<Background>,
    key: String,
    seq: u64,
    _ended: oneshot::Sender<()>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut tails = self.background.tails();
        if tails.get(&self.key).is_some_and(|t| t.seq == self.seq) {
            tails.remove(&self.key);
        }
    }
}

impl Default for Background {
    fn default() -> Self {
        Self::new(MAX_JOBS, JOB_TIMEOUT)
    }
}

impl Background {
    /// At most `max_jobs` in flight, each given `timeout`.
    fn new(max_jobs: usize, timeout: Duration) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_jobs)),
            timeout,
            tails: Mutex::default(),
            next: AtomicU64::new(0),
        }
    }

    /// The map is only ever held for one lookup and insert; a panic cannot
    /// leave it half-changed.
    fn tails(&self) -> MutexGuard<'_, HashMap<String, Tail>> {
        self.tails.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `job` behind the jobs already queued under `key` and returns
    /// once it is queued (after waiting for a slot if [`MAX_JOBS`] are in
    /// flight). `what` names the job in logs.
    pub(super) async fn spawn<F>(self: &Arc<Self>, key: String, what: &'static str, job: F)
    where
        F: Future<Output = Result<(), AuthError>> + Send + 'static,
    {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(job = what, "no async runtime: background job not run");
            return;
        };
        // The semaphore is never closed, so this only waits.
        let Ok(slot) = self.slots.clone().acquire_owned().await else {
            return;
        };
        let (ended, tail) = oneshot::channel();
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let before = self
            .tails()
            .insert(key.clone(), Tail { seq, ended: tail })
            .map(|t| t.ended);
        let timeout = self.timeout;
        let turn = Turn {
            background: self.clone(),
            key,
            seq,
            _ended: ended,
        };
        runtime.spawn(async move {
            let _slot = slot;
            let _turn = turn;
            tokio::time::sleep(START_DELAY).await;
            if let Some(before) = before {
                // Err only says the earlier job's turn was dropped: it ended.
                let _ = before.await;
            }
            // Its own task: a panic surfaces here as a JoinError and is
            // logged like any failure.
            let task = tokio::spawn(job);
            let abort = task.abort_handle();
            match tokio::time::timeout(timeout, task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::error!(job = what, error = %e, "background job failed"),
                Ok(Err(e)) => tracing::error!(job = what, error = %e, "background job panicked"),
                Err(_) => {
                    abort.abort();
                    tracing::error!(job = what, ?timeout, "background job timed out");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits (up to 5 s) until no key is remembered: every turn ended.
    async fn settled(bg: &Background) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !bg.tails().is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "a turn never ended");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Jobs of one key run one at a time, in the order they were queued,
    /// even when the first is the slowest; another key does not wait.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_of_one_key_run_in_order_and_other_keys_do_not_wait() {
        let bg = Arc::new(Background::default());
        let log = Arc::new(Mutex::new(Vec::new()));
        for (i, delay) in [(0, 60), (1, 0), (2, 20)] {
            let log = log.clone();
            bg.spawn("a".into(), "test", async move {
                log.lock().unwrap().push(format!("a{i} start"));
                tokio::time::sleep(Duration::from_millis(delay)).await;
                log.lock().unwrap().push(format!("a{i} end"));
                Ok(())
            })
            .await;
        }
        let other = log.clone();
        bg.spawn("b".into(), "test", async move {
            other.lock().unwrap().push("b".into());
            Ok(())
        })
        .await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while log.lock().unwrap().len() < 7 {
            assert!(tokio::time::Instant::now() < deadline, "{log:?}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let log = log.lock().unwrap().clone();
        let a: Vec<_> = log.iter().filter(|e| e.starts_with('a')).collect();
        assert_eq!(
            a,
            ["a0 start", "a0 end", "a1 start", "a1 end", "a2 start", "a2 end"]
        );
        let b = log.iter().position(|e| e == "b").unwrap();
        let a0_end = log.iter().position(|e| e == "a0 end").unwrap();
        assert!(b < a0_end, "another key waited: {log:?}");
        // Every job ended, so no key is remembered.
        settled(&bg).await;
    }

    /// A failing, a panicking and a timed-out job are logged and end their
    /// turn: the next job of the key still runs.
    #[tokio::test]
    async fn a_failed_or_panicking_or_stuck_job_lets_the_next_one_run() {
        let timeout = Duration::from_millis(50);
        let bg = Arc::new(Background::new(MAX_JOBS, timeout));
        bg.spawn("k".into(), "test", async {
            Err(AuthError::InvalidResetToken)
        })
        .await;
        #[allow(clippy::panic)]
        bg.spawn("k".into(), "test", async { panic!("job bug") })
            .await;
        bg.spawn("k".into(), "test", async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        })
        .await;
        let (done, ran) = oneshot::channel();
        bg.spawn("k".into(), "test", async move {
            let _ = done.send(());
            Ok(())
        })
        .await;
        tokio::time::timeout(Duration::from_secs(5), ran)
            .await
            .expect("the last job ran after the stuck one timed out")
            .unwrap();
        settled(&bg).await;
    }

    /// With every slot taken, queueing waits until a job ends.
    #[tokio::test]
    async fn queueing_waits_while_every_slot_is_taken() {
        let bg = Arc::new(Background::new(2, JOB_TIMEOUT));
        let (release, hold) = tokio::sync::watch::channel(false);
        for i in 0..2 {
            let mut hold = hold.clone();
            bg.spawn(format!("k{i}"), "test", async move {
                let _ = hold.wait_for(|go| *go).await;
                Ok(())
            })
            .await;
        }
        let late = bg.spawn("late".into(), "test", async { Ok(()) });
        tokio::pin!(late);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut late)
                .await
                .is_err(),
            "queued with every slot taken"
        );
        release.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), late)
            .await
            .expect("queued once a slot was free");
    }
}
