//! A [`Mailer`] that keeps what it is given, so tests assert on the mail a
//! flow sent (its recipient, its link) rather than on which calls were made.
//!
//! Mail leaves off the request path, so a test that just got its HTTP answer
//! may not see the mail yet (a flow may even do its store work after the
//! answer, as `forgot_password` does): [`RecordingMailer::wait_for`] waits
//! until it arrives, woken by each delivery rather than polling. Failure and delay can be switched on to prove that an SMTP
//! outage never loses the user's work (the pending registration or reset
//! request is kept, and a resend works once mail is back) and that a slow
//! transport never delays the response.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use regstack_ports::{Mailer, NotifyError, OutgoingMail};

/// Records every delivered [`OutgoingMail`]. Clones share the record.
#[derive(Clone, Default)]
pub struct RecordingMailer {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    sent: Mutex<Vec<OutgoingMail>>,
    control: Mutex<Control>,
    failed: AtomicUsize,
    /// Woken after every recorded delivery.
    delivered: tokio::sync::Notify,
}

#[derive(Default)]
struct Control {
    failure: Failure,
    delay: Option<Duration>,
}

#[derive(Default, Clone, Copy)]
enum Failure {
    #[default]
    None,
    /// The next `n` sends fail, then delivery works again.
    Next(usize),
    /// Every send fails until [`RecordingMailer::heal`].
    Always,
}

/// A poisoned lock only means another test thread panicked while holding
/// it; the data (a list of mails, two switches) is still consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RecordingMailer {
    /// Delivers instantly and never fails.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every mail delivered so far, oldest first.
    pub fn sent(&self) -> Vec<OutgoingMail> {
        lock(&self.inner.sent).clone()
    }

    /// Mail delivered to `to`, oldest first. `to` is canonicalised the way
    /// `Email::parse` does (trimmed, lower-cased), so a test may write the
    /// address as the user typed it.
    pub fn sent_to(&self, to: &str) -> Vec<OutgoingMail> {
        let to = to.trim().to_lowercase();
        lock(&self.inner.sent)
            .iter()
            .filter(|m| m.to.as_str() == to)
            .cloned()
            .collect()
    }

    /// Forgets the mail delivered so far.
    pub fn clear(&self) {
        lock(&self.inner.sent).clear();
    }

    /// Sends refused so far (by [`fail_next`](Self::fail_next) or
    /// [`fail_always`](Self::fail_always)).
    pub fn failed(&self) -> usize {
        self.inner.failed.load(Ordering::SeqCst)
    }

    /// Waits until at least `count` mails to `to` were delivered and returns
    /// them all, oldest first.
    ///
    /// # Panics
    ///
    /// After `timeout` without them, naming how many did arrive: in a test,
    /// a missing mail is a failure.
    pub async fn wait_for(&self, to: &str, count: usize, timeout: Duration) -> Vec<OutgoingMail> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before looking, so a delivery between the look and
            // the wait still wakes this waiter.
            let delivered = self.inner.delivered.notified();
            tokio::pin!(delivered);
            delivered.as_mut().enable();
            let got = self.sent_to(to);
            if got.len() >= count {
                return got;
            }
            if tokio::time::timeout_at(deadline, delivered).await.is_err() {
                let got = self.sent_to(to).len();
                if got >= count {
                    continue;
                }
                panic!("waited {timeout:?} for {count} mail(s) to {to}, got {got}");
            }
        }
    }

    /// The next `n` sends fail with [`NotifyError::Delivery`] and record
    /// nothing; later sends succeed.
    pub fn fail_next(&self, n: usize) {
        lock(&self.inner.control).failure = Failure::Next(n);
    }

    /// Every send fails until [`heal`](Self::heal).
    pub fn fail_always(&self) {
        lock(&self.inner.control).failure = Failure::Always;
    }

    /// Delivery works again.
    pub fn heal(&self) {
        lock(&self.inner.control).failure = Failure::None;
    }

    /// Every send takes `delay` (or no time, with `None`) before it is
    /// recorded or fails.
    pub fn set_delay(&self, delay: Option<Duration>) {
        lock(&self.inner.control).delay = delay;
    }

    /// Builder form of [`set_delay`](Self::set_delay).
    pub fn with_delay(self, delay: Duration) -> Self {
        self.set_delay(Some(delay));
        self
    }

    /// Decides whether this send fails, consuming one `fail_next` credit.
    fn should_fail(&self) -> bool {
        let mut control = lock(&self.inner.control);
        match control.failure {
            Failure::None => false,
            Failure::Always => true,
            Failure::Next(0) => {
                control.failure = Failure::None;
                false
            }
            Failure::Next(n) => {
                control.failure = if n == 1 {
                    Failure::None
                } else {
                    Failure::Next(n - 1)
                };
                true
            }
        }
    }
}

#[async_trait]
impl Mailer for RecordingMailer {
    async fn send(&self, mail: &OutgoingMail) -> Result<(), NotifyError> {
        let delay = lock(&self.inner.control).delay;
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        if self.should_fail() {
            self.inner.failed.fetch_add(1, Ordering::SeqCst);
            return Err(NotifyError::Delivery(
                "RecordingMailer was told to fail".to_owned(),
            ));
        }
        lock(&self.inner.sent).push(mail.clone());
        self.inner.delivered.notify_waiters();
        Ok(())
    }
}
