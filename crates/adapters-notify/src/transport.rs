//! [`MailTransport`]: which transport delivers mail and its settings — the
//! delivery half of the server's `[email]` keys (`backend`, `smtp_*`,
//! `log_bodies`).
//!
//! The other half, who mail comes from and how much of it one address may
//! receive, is the engine's policy (`regstack_core::config::EmailPolicy`):
//! the sender is handed to [`MailTransport::mailer`] when the mailer is
//! built, so it is configured once.

use std::sync::Arc;

use regstack_ports::Mailer;

use crate::{ConsoleMailer, SmtpConfigError, SmtpMailer, SmtpSettings};

/// How mail leaves the service.
#[derive(Debug, Clone)]
pub enum MailTransport {
    /// Log each mail instead of sending it (`email.backend = "console"`,
    /// the default).
    Console {
        /// Log the text body too. It holds live links: on only in
        /// development (`email.log_bodies`).
        log_bodies: bool,
    },
    /// Send through an SMTP relay (`email.backend = "smtp"`).
    Smtp(SmtpSettings),
}

impl Default for MailTransport {
    /// The console, bodies not logged.
    fn default() -> Self {
        Self::Console { log_bodies: false }
    }
}

impl MailTransport {
    /// Builds the mailer, sending as `from` (`"Name <user@example.com>"` or
    /// a bare address). SMTP settings and the sender are checked here, so a
    /// bad value stops start-up rather than the first registration.
    pub fn mailer(&self, from: &str) -> Result<Arc<dyn Mailer>, SmtpConfigError> {
        Ok(match self {
            Self::Console { log_bodies } => Arc::new(ConsoleMailer::new(from, *log_bodies)),
            Self::Smtp(settings) => Arc::new(SmtpMailer::new(settings.clone(), from)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_the_console_without_bodies() {
        assert!(matches!(
            MailTransport::default(),
            MailTransport::Console { log_bodies: false }
        ));
    }

    #[test]
    fn an_smtp_transport_checks_its_settings_and_the_sender_when_built() {
        let smtp = MailTransport::Smtp(SmtpSettings::new("smtp.example.com"));
        assert!(smtp.mailer("Acme <noreply@acme.example>").is_ok());
        assert!(matches!(
            smtp.mailer("not a mailbox").err(),
            Some(SmtpConfigError::InvalidFrom { .. })
        ));
        let no_host = MailTransport::Smtp(SmtpSettings::new(""));
        assert_eq!(
            no_host.mailer("noreply@acme.example").err(),
            Some(SmtpConfigError::MissingHost)
        );
    }
}
