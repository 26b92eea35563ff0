//! [`MailTransport`]: which transport delivers mail and its settings — the
//! delivery half of the server's `[email]` keys (`backend`, `smtp_*`,
//! `ses_*`, `log_bodies`).
//!
//! The other half, who mail comes from and how much of it one address may
//! receive, is the engine's policy (`regstack_core::config::EmailPolicy`):
//! the sender is handed to [`MailTransport::mailer`] when the mailer is
//! built, so it is configured once.

use std::sync::Arc;

use regstack_ports::Mailer;

use crate::{
    ConsoleMailer, SesMailer, SesSettings, SmtpConfigError, SmtpMailer, SmtpSettings,
    TransportConfigError,
};

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
    /// Send through AWS SES v2 (`email.backend = "ses"`).
    Ses(SesSettings),
}

/// Why the configured mail transport cannot be built; each transport's own
/// error, so the server can name the key to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailConfigError {
    /// The SMTP settings or the sender.
    #[error(transparent)]
    Smtp(#[from] SmtpConfigError),
    /// The SES settings, credentials or the sender; names its key.
    #[error(transparent)]
    Ses(#[from] TransportConfigError),
}

impl Default for MailTransport {
    /// The console, bodies not logged.
    fn default() -> Self {
        Self::Console { log_bodies: false }
    }
}

impl MailTransport {
    /// Builds the mailer, sending as `from` (`"Name <user@example.com>"` or
    /// a bare address). Settings and the sender are checked (and SES
    /// credentials resolved) here, so a bad value stops start-up rather
    /// than the first registration.
    pub fn mailer(&self, from: &str) -> Result<Arc<dyn Mailer>, MailConfigError> {
        Ok(match self {
            Self::Console { log_bodies } => Arc::new(ConsoleMailer::new(from, *log_bodies)),
            Self::Smtp(settings) => Arc::new(SmtpMailer::new(settings.clone(), from)?),
            Self::Ses(settings) => Arc::new(SesMailer::new(settings.clone(), from)?),
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
            Some(MailConfigError::Smtp(SmtpConfigError::InvalidFrom { .. }))
        ));
        let no_host = MailTransport::Smtp(SmtpSettings::new(""));
        assert_eq!(
            no_host.mailer("noreply@acme.example").err(),
            Some(MailConfigError::Smtp(SmtpConfigError::MissingHost))
        );
    }

    #[test]
    fn an_ses_transport_checks_its_settings_and_the_sender_when_built() {
        let ses = MailTransport::Ses(SesSettings {
            credentials: crate::AwsCredentials::Static {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: "secret".into(),
                session_token: None,
            },
            ..SesSettings::new()
        });
        assert!(ses.mailer("Acme <noreply@acme.example>").is_ok());
        let Some(MailConfigError::Ses(err)) = ses.mailer("not a mailbox").err() else {
            panic!("an SES configuration error expected")
        };
        assert_eq!(err.key, "email.from_address");
    }
}
