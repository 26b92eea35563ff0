//! The null (console) SMS transport: logs each message instead of sending
//! it (`sms.backend = "null"`, the default).
//!
//! The line is regstack 0.9.3's `regstack.sms.null` line, byte for byte,
//! for the same reason as the console mailer's: tooling and people reading
//! a development log look for `[regstack/null-sms] To: … | Body: …`. As in
//! regstack, the body (a live one-time code) is in the line only with
//! `sms.log_bodies = true`; otherwise the line ends in `(body suppressed)`
//! and the body is logged at no level at all.

use async_trait::async_trait;
use regstack_ports::{NotifyError, OutgoingSms, SmsSender};

/// The `tracing` target of this transport's events (regstack's logger was
/// `regstack.sms.null`).
pub const LOG_TARGET: &str = "regstack::sms::null";

/// Logs text messages at `info` instead of sending them.
#[derive(Debug, Clone, Default)]
pub struct NullSms {
    from_number: Option<String>,
    log_bodies: bool,
}

impl NullSms {
    /// A null transport reporting `from_number` (`sms.from_number`; shown
    /// as `(unset)` when `None`, as regstack does) as the sender.
    pub fn new(from_number: Option<String>, log_bodies: bool) -> Self {
        Self {
            from_number: from_number.filter(|n| !n.trim().is_empty()),
            log_bodies,
        }
    }

    /// Whether bodies are written to the log.
    pub fn logs_bodies(&self) -> bool {
        self.log_bodies
    }
}

#[async_trait]
impl SmsSender for NullSms {
    async fn send(&self, sms: &OutgoingSms) -> Result<(), NotifyError> {
        let from = self.from_number.as_deref().unwrap_or("(unset)");
        if self.log_bodies {
            tracing::info!(
                target: LOG_TARGET,
                "[regstack/null-sms] To: {} | From: {} | Body: {}",
                sms.to,
                from,
                sms.body
            );
        } else {
            tracing::info!(
                target: LOG_TARGET,
                "[regstack/null-sms] To: {} | From: {} | (body suppressed)",
                sms.to,
                from
            );
        }
        Ok(())
    }
}
