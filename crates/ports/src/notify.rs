//! Outbound notifications: what `core` hands to a transport.

use async_trait::async_trait;

use crate::error::NotifyError;
use crate::types::Email;

/// A fully composed mail. The body carries live one-time links, so `Debug`
/// shows only the recipient and subject.
#[derive(Clone)]
pub struct OutgoingMail {
    /// Recipient.
    pub to: Email,
    /// Subject line (already rendered).
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: String,
}

impl std::fmt::Debug for OutgoingMail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingMail")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// Delivers composed mail. The sender address belongs to the transport's
/// own configuration, not to each message.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Mailer: Send + Sync {
    /// Sends one message. Must not log the body unless the transport was
    /// explicitly configured to (the console transport's `log_bodies`).
    async fn send(&self, mail: &OutgoingMail) -> Result<(), NotifyError>;
}
