//! Multi-step sequences that finish once started, whoever stops waiting.
//!
//! Without multi-document transactions (a standalone `mongod` refuses
//! them) an account-level change is a
//! few document operations, ordered so that stopping between two of them
//! leaves nothing a user could exploit, and with a compensation step (a
//! spent link put back) where an error strikes half-way. "Stopping" is not
//! only a crash, though: the HTTP layer drops a request's future at its
//! deadline (`http.request_timeout_seconds`), and a dropped future stops at
//! its next `.await` — in the middle of a sequence, and before any
//! compensation, leaving a spent link and no user, or sessions revoked with
//! the password unchanged.
//!
//! So every multi-step sequence runs through [`to_completion`]: in a task
//! of its own, which the store method merely awaits. Dropping the caller's
//! future detaches the task, and the task runs to its end (each step still
//! bounded by [`OPERATION_TIMEOUT`](crate::OPERATION_TIMEOUT)). What the
//! caller is told is then unknown to it — as after any timeout — but the
//! database holds the sequence's end state, not half of it.

use std::future::Future;

use regstack_ports::StoreError;

/// Runs `sequence` in its own task and waits for its result. The task
/// finishes even if this future is dropped. A panic in it (or a runtime
/// shutting down under it) is reported as [`StoreError::Backend`].
pub(crate) async fn to_completion<T, F>(sequence: F) -> Result<T, StoreError>
where
    F: Future<Output = Result<T, StoreError>> + Send + 'static,
    T: Send + 'static,
{
    tokio::spawn(sequence)
        .await
        .unwrap_or_else(|e| Err(StoreError::backend(e)))
}
