//! The console transport: logs each mail instead of sending it.
//!
//! The log lines are regstack 0.9.3's, byte for byte, because tooling that
//! tails regstack logs (`regstack validate`, the end-to-end scripts) finds
//! `[regstack/console-email] text body:` and reads the link on the lines
//! after it. Each line is therefore the event's *message*, not a structured
//! field, so the fmt layer prints it verbatim.

use async_trait::async_trait;
use regstack_ports::{Mailer, NotifyError, OutgoingMail};

/// The `tracing` target of the console transport's events (regstack's
/// logger was `regstack.email.console`).
pub const LOG_TARGET: &str = "regstack::email::console";

/// Logs mail at `info` instead of sending it.
///
/// The header line (`To | From | Subject`) is always logged. The text body
/// is logged only when `log_bodies` is on; otherwise it is logged at no
/// level at all, because it holds live one-time tokens (regstack logged it
/// at `debug`; we do not: no secret — password, token, code — reaches a
/// log or an error at any level).
#[derive(Debug, Clone)]
pub struct ConsoleMailer {
    from: String,
    log_bodies: bool,
}

impl ConsoleMailer {
    /// A console transport that reports `from` (the composed `From:` header,
    /// e.g. `"RegStack <noreply@example.com>"`) as the sender.
    pub fn new(from: impl Into<String>, log_bodies: bool) -> Self {
        Self {
            from: from.into(),
            log_bodies,
        }
    }

    /// Whether text bodies are written to the log.
    pub fn logs_bodies(&self) -> bool {
        self.log_bodies
    }
}

#[async_trait]
impl Mailer for ConsoleMailer {
    async fn send(&self, mail: &OutgoingMail) -> Result<(), NotifyError> {
        tracing::info!(
            target: LOG_TARGET,
            "[regstack/console-email] To: {} | From: {} | Subject: {}",
            mail.to,
            self.from,
            mail.subject
        );
        if self.log_bodies {
            tracing::info!(
                target: LOG_TARGET,
                "[regstack/console-email] text body:\n{}",
                mail.text
            );
        }
        Ok(())
    }
}
