//! A text-message transport that records what it would have sent, so tests
//! can read the code a user would receive.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use regstack_ports::{NotifyError, OutgoingSms, SmsSender};

/// Records every [`OutgoingSms`]. Clones share the record.
#[derive(Clone, Default)]
pub struct RecordingSms {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    sent: Mutex<Vec<OutgoingSms>>,
    delivered: tokio::sync::Notify,
}

impl RecordingSms {
    /// Delivers instantly and never fails.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every message sent so far, oldest first.
    pub fn sent(&self) -> Vec<OutgoingSms> {
        self.inner
            .sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Messages sent to `to`.
    pub fn sent_to(&self, to: &str) -> Vec<OutgoingSms> {
        self.sent().into_iter().filter(|m| m.to == to).collect()
    }

    /// Waits until `count` messages went to `to` (or `timeout` passed) and
    /// returns those sent by then.
    pub async fn wait_for(&self, to: &str, count: usize, timeout: Duration) -> Vec<OutgoingSms> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.delivered.notified();
            let sent = self.sent_to(to);
            if sent.len() >= count || tokio::time::Instant::now() >= deadline {
                return sent;
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }
}

#[async_trait]
impl SmsSender for RecordingSms {
    async fn send(&self, sms: &OutgoingSms) -> Result<(), NotifyError> {
        self.inner
            .sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(sms.clone());
        self.inner.delivered.notify_waiters();
        Ok(())
    }
}
