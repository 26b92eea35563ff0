//! Outbound notifications: what `core` hands to a transport, mail
//! ([`Mailer`]) or text messages ([`SmsSender`]).

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

/// A composed text message. The body carries a live one-time code, so
/// `Debug` shows only the recipient.
#[derive(Clone)]
pub struct OutgoingSms {
    /// Recipient in E.164 form (`+15551234567`). Transports pass it on as
    /// is: checking the form is the caller's, before a number is stored.
    pub to: String,
    /// The text (already rendered).
    pub body: String,
}

impl std::fmt::Debug for OutgoingSms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingSms")
            .field("to", &self.to)
            .finish_non_exhaustive()
    }
}

/// Delivers text messages (SMS second factors, phone confirmation). The
/// sender number belongs to the transport's configuration, as a mailer's
/// sender does.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait SmsSender: Send + Sync {
    /// Sends one message, once: no retries, so a caller that shows the user
    /// "code sent" knows at most one code went out. A refusal of the number
    /// itself is [`NotifyError::Rejected`]; anything that may pass later is
    /// [`NotifyError::Delivery`]. Must not log the body unless the
    /// transport was explicitly configured to (the null transport's
    /// `log_bodies`).
    async fn send(&self, sms: &OutgoingSms) -> Result<(), NotifyError>;
}
