//! The SMTP transport: lettre's `AsyncSmtpTransport` on Tokio with rustls.
//!
//! [`SmtpSettings`] (the relay: where, how secured, which credentials, how
//! long) and the sender are checked once, in [`SmtpMailer::new`]: a sender
//! that does not parse, half a credential pair or a password about to cross
//! the network in clear text is a start-up error ([`SmtpConfigError`]), not
//! a failure on the first registration. The sender is not part of the
//! settings: it is the engine's policy (`email.from_address`,
//! `email.from_name`), handed in beside them.
//!
//! Each [`Mailer::send`] builds a `multipart/alternative` message (text,
//! then HTML), opens a fresh connection, and is bounded twice: lettre's
//! per-command timeout, and a `tokio::time::timeout` around the whole send,
//! so a relay that accepts the connection and then says nothing cannot hold
//! a request longer than [`SmtpSettings::timeout`]. Failures come back as
//! [`NotifyError::Delivery`] with the step and the relay's short reason,
//! never the body.
//!
//! Why no connection pool: a send abandoned by the outer timeout would hand
//! a half-finished SMTP transaction back to lettre's pool, and the next
//! mail would read the previous command's replies. Account mail is rare
//! (at most `email.max_per_address_per_hour` to one address), so one
//! connection per mail —
//! as regstack's `aiosmtplib.send` does — costs little and is always clean.

use std::fmt;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::{AsyncSmtpTransportBuilder, PoolConfig};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use regstack_ports::{Mailer, NotifyError, OutgoingMail};
use secrecy::{ExposeSecret, SecretString};

/// The `tracing` target of this transport's events.
pub const LOG_TARGET: &str = "regstack::email::smtp";

/// How the connection to the relay is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Connect in clear text, then upgrade with STARTTLS; the upgrade is
    /// required (a relay that does not offer it is an error, so nothing is
    /// sent in clear). Usual port 587.
    StartTls,
    /// TLS from the first byte (SMTPS). Usual port 465.
    Tls,
    /// No TLS at all: for a relay on the same host, and tests. Credentials
    /// are refused over it unless the relay is on a loopback address.
    Plain,
}

impl SmtpSecurity {
    /// The port this mode is normally served on.
    pub fn default_port(self) -> u16 {
        match self {
            Self::StartTls => 587,
            Self::Tls => 465,
            Self::Plain => 25,
        }
    }
}

/// Where and how to send mail: the relay half of the server's `[email]`
/// keys (`smtp_host`, `smtp_port`, `smtp_security`, `smtp_username`,
/// `smtp_password`, `smtp_timeout_seconds`). Fields are public so a server
/// can fill them from its configuration; [`SmtpSettings::new`] gives
/// regstack's defaults.
#[derive(Clone)]
pub struct SmtpSettings {
    /// Relay host name (also the name its TLS certificate must carry).
    pub host: String,
    /// Relay port.
    pub port: u16,
    /// Transport security.
    pub security: SmtpSecurity,
    /// AUTH user; set together with `password` or not at all.
    pub username: Option<String>,
    /// AUTH password. Never printed: `Debug` shows `[redacted]`.
    pub password: Option<SecretString>,
    /// The budget for one whole send (connect, TLS, AUTH, the message, each
    /// SMTP reply). Must be above zero.
    pub timeout: Duration,
    /// Accept any server certificate. Only for test relays with self-signed
    /// certificates; never in production.
    pub accept_invalid_certs: bool,
}

impl SmtpSettings {
    /// The default send budget (the server's `smtp_timeout_seconds` default).
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// regstack's defaults: port 587 with STARTTLS, no credentials,
    /// [`Self::DEFAULT_TIMEOUT`], certificates verified.
    pub fn new(host: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            port: SmtpSecurity::StartTls.default_port(),
            security: SmtpSecurity::StartTls,
            username: None,
            password: None,
            timeout: Self::DEFAULT_TIMEOUT,
            accept_invalid_certs: false,
        }
    }
}

impl fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("timeout", &self.timeout)
            .field("accept_invalid_certs", &self.accept_invalid_certs)
            .finish()
    }
}

/// Why [`SmtpSettings`] cannot be used. Shown at start-up, so each message
/// says what to change; none contains the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmtpConfigError {
    /// `host` is empty.
    #[error("SMTP host is not set")]
    MissingHost,
    /// `port` is 0.
    #[error("SMTP port must not be 0")]
    ZeroPort,
    /// `timeout` is zero: every send would fail at once.
    #[error("SMTP timeout must be greater than zero")]
    ZeroTimeout,
    /// The sender is not a mailbox.
    #[error(
        "invalid sender address {from:?}: {reason} \
         (expected \"Name <user@example.com>\" or \"user@example.com\")"
    )]
    InvalidFrom {
        /// The value as configured.
        from: String,
        /// What the parser objected to.
        reason: String,
    },
    /// Only one of `username` and `password` is set.
    #[error("SMTP username and password must be set together")]
    IncompleteCredentials,
    /// Credentials with [`SmtpSecurity::Plain`] to a host that is not on
    /// this machine: the password would cross the network in clear text.
    #[error(
        "refusing to send SMTP credentials without TLS to {host:?}: \
         plain SMTP is only for a relay on this host; use STARTTLS or TLS"
    )]
    CredentialsWithoutTls {
        /// The relay host.
        host: String,
    },
    /// The TLS client could not be set up.
    #[error("SMTP TLS setup failed: {0}")]
    Tls(String),
}

/// Sends mail through an SMTP relay. Cheap to share behind an `Arc`.
pub struct SmtpMailer {
    host: String,
    port: u16,
    security: SmtpSecurity,
    from: Mailbox,
    timeout: Duration,
    builder: AsyncSmtpTransportBuilder,
    /// Built on the first send: lettre's transport spawns a Tokio task when
    /// it is built, and construction must work outside a runtime.
    transport: OnceLock<AsyncSmtpTransport<Tokio1Executor>>,
}

impl SmtpMailer {
    /// Checks `settings` and the sender `from` (the `From:` mailbox,
    /// `"Name <user@example.com>"` or a bare address) and prepares the
    /// transport. Opens no connection: an unreachable relay shows on the
    /// first send, not here.
    pub fn new(settings: SmtpSettings, from: &str) -> Result<Self, SmtpConfigError> {
        let SmtpSettings {
            host,
            port,
            security,
            username,
            password,
            timeout,
            accept_invalid_certs,
        } = settings;

        let host = host.trim().to_owned();
        if host.is_empty() {
            return Err(SmtpConfigError::MissingHost);
        }
        if port == 0 {
            return Err(SmtpConfigError::ZeroPort);
        }
        if timeout.is_zero() {
            return Err(SmtpConfigError::ZeroTimeout);
        }
        let from = parse_from(from)?;

        let credentials = match (username, password) {
            (None, None) => None,
            (Some(user), Some(password)) => {
                Some(Credentials::new(user, password.expose_secret().to_owned()))
            }
            _ => return Err(SmtpConfigError::IncompleteCredentials),
        };
        if credentials.is_some() && security == SmtpSecurity::Plain && !is_loopback(&host) {
            return Err(SmtpConfigError::CredentialsWithoutTls { host });
        }

        let tls = match security {
            SmtpSecurity::Plain => Tls::None,
            SmtpSecurity::StartTls => Tls::Required(tls_parameters(&host, accept_invalid_certs)?),
            SmtpSecurity::Tls => Tls::Wrapper(tls_parameters(&host, accept_invalid_certs)?),
        };

        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
            .port(port)
            .tls(tls)
            .timeout(Some(timeout))
            // Never park a connection: see the module doc.
            .pool_config(PoolConfig::new().max_size(0));
        if let Some(credentials) = credentials {
            builder = builder.credentials(credentials);
        }

        Ok(Self {
            host,
            port,
            security,
            from,
            timeout,
            builder,
            transport: OnceLock::new(),
        })
    }

    /// The `From:` mailbox every mail carries.
    pub fn from(&self) -> &Mailbox {
        &self.from
    }

    fn transport(&self) -> &AsyncSmtpTransport<Tokio1Executor> {
        self.transport.get_or_init(|| self.builder.clone().build())
    }

    /// The message as it goes on the wire. Errors name the part that was
    /// refused, never its content beyond the recipient.
    fn compose(&self, mail: &OutgoingMail) -> Result<Message, NotifyError> {
        // lettre encodes header values, so a line break could not inject a
        // header; refusing it outright makes a template bug visible.
        if mail.subject.chars().any(char::is_control) {
            return Err(NotifyError::Delivery(
                "composing the message: the subject contains a line break or \
                 another control character"
                    .into(),
            ));
        }
        let to: Address = mail.to.as_str().parse().map_err(|e| {
            NotifyError::Delivery(format!(
                "composing the message: recipient {} is not an SMTP address: {e}",
                mail.to
            ))
        })?;
        let message_id = format!(
            "<{}@{}>",
            uuid::Uuid::new_v4().simple(),
            self.from.email.domain()
        );
        Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(mail.subject.as_str())
            .message_id(Some(message_id))
            .multipart(MultiPart::alternative_plain_html(
                mail.text.clone(),
                mail.html.clone(),
            ))
            .map_err(|e| NotifyError::Delivery(format!("composing the message: {e}")))
    }

    fn relay_error(&self, e: &lettre::transport::smtp::Error) -> NotifyError {
        let step = if e.is_timeout() {
            "timed out"
        } else if e.is_tls() {
            "TLS failed"
        } else if let Some(code) = e.status() {
            match code.to_string().as_str() {
                "530" | "534" | "535" | "538" | "454" => "authentication refused",
                _ if e.is_transient() => "relay refused (temporary)",
                _ => "relay refused",
            }
        } else if e.is_response() {
            "unreadable reply"
        } else if e.is_client() {
            "client error"
        } else {
            // lettre reports certificate and handshake failures while
            // connecting as connection errors; the reason says which.
            "connection or TLS handshake failed"
        };
        // lettre's Display carries the kind, the reply code and the relay's
        // reply text or the I/O error: never the message, never the AUTH
        // exchange.
        NotifyError::Delivery(format!(
            "SMTP relay {}:{} ({:?}): {step}: {e}",
            self.host, self.port, self.security
        ))
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: &OutgoingMail) -> Result<(), NotifyError> {
        let message = self.compose(mail)?;
        let transport = self.transport();
        match tokio::time::timeout(self.timeout, transport.send(message)).await {
            Ok(Ok(_)) => {
                tracing::debug!(
                    target: LOG_TARGET,
                    relay = %self.host,
                    to = %mail.to,
                    "mail accepted by the SMTP relay"
                );
                Ok(())
            }
            Ok(Err(e)) => Err(self.relay_error(&e)),
            Err(_elapsed) => Err(NotifyError::Delivery(format!(
                "SMTP relay {}:{} ({:?}): timed out: no complete exchange within {:?}",
                self.host, self.port, self.security, self.timeout
            ))),
        }
    }
}

impl fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The lettre builder holds the credentials: it is left out.
        f.debug_struct("SmtpMailer")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("from", &self.from.to_string())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Drop for SmtpMailer {
    fn drop(&mut self) {
        // Dropping lettre's transport spawns a clean-up task, which panics
        // outside a Tokio runtime. Outside one (a mailer kept past its
        // runtime), leak it instead: there is no connection to close, since
        // none is ever parked.
        if let Some(transport) = self.transport.take() {
            if tokio::runtime::Handle::try_current().is_err() {
                std::mem::forget(transport);
            }
        }
    }
}

fn parse_from(raw: &str) -> Result<Mailbox, SmtpConfigError> {
    let invalid = |reason: String| SmtpConfigError::InvalidFrom {
        from: raw.to_owned(),
        reason,
    };
    if raw.chars().any(char::is_control) {
        return Err(invalid(
            "it contains a line break or control character".into(),
        ));
    }
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(invalid("it is empty".into()));
    }
    trimmed
        .parse::<Mailbox>()
        .map_err(|e| invalid(e.to_string()))
}

fn tls_parameters(
    host: &str,
    accept_invalid_certs: bool,
) -> Result<TlsParameters, SmtpConfigError> {
    TlsParameters::builder(host.to_owned())
        .dangerous_accept_invalid_certs(accept_invalid_certs)
        .build_rustls()
        .map_err(|e| SmtpConfigError::Tls(e.to_string()))
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROM: &str = "RegStack <noreply@example.com>";

    fn settings() -> SmtpSettings {
        SmtpSettings::new("smtp.example.com")
    }

    #[test]
    fn a_display_name_and_address_parse_as_the_sender() {
        let mailer = SmtpMailer::new(settings(), FROM).unwrap();
        assert_eq!(mailer.from().email.to_string(), "noreply@example.com");
        assert_eq!(mailer.from().name.as_deref(), Some("RegStack"));
    }

    #[test]
    fn a_malformed_sender_is_a_clear_configuration_error() {
        for bad in ["", "RegStack", "RegStack <noreply>", "a@b\r\nBcc: x@y.z"] {
            let err = SmtpMailer::new(settings(), bad).unwrap_err();
            assert!(
                matches!(err, SmtpConfigError::InvalidFrom { .. }),
                "{bad:?} gave {err:?}"
            );
            assert!(err.to_string().contains("invalid sender address"), "{err}");
        }
    }

    #[test]
    fn half_a_credential_pair_is_refused() {
        let err = SmtpMailer::new(
            SmtpSettings {
                username: Some("u".into()),
                ..settings()
            },
            FROM,
        )
        .unwrap_err();
        assert_eq!(err, SmtpConfigError::IncompleteCredentials);
        let err = SmtpMailer::new(
            SmtpSettings {
                password: Some("p".into()),
                ..settings()
            },
            FROM,
        )
        .unwrap_err();
        assert_eq!(err, SmtpConfigError::IncompleteCredentials);
    }

    #[test]
    fn credentials_over_plain_smtp_are_only_allowed_to_this_host() {
        let with_creds = |host: &str| SmtpSettings {
            host: host.into(),
            security: SmtpSecurity::Plain,
            username: Some("u".into()),
            password: Some("hunter2".into()),
            ..settings()
        };
        let err = SmtpMailer::new(with_creds("smtp.example.com"), FROM).unwrap_err();
        assert!(matches!(err, SmtpConfigError::CredentialsWithoutTls { .. }));
        assert!(!err.to_string().contains("hunter2"));
        for host in ["localhost", "127.0.0.1", "::1", "[::1]"] {
            assert!(SmtpMailer::new(with_creds(host), FROM).is_ok(), "{host}");
        }
    }

    #[test]
    fn zero_timeout_port_and_empty_host_are_refused() {
        let zero_timeout = SmtpSettings {
            timeout: Duration::ZERO,
            ..settings()
        };
        assert_eq!(
            SmtpMailer::new(zero_timeout, FROM).unwrap_err(),
            SmtpConfigError::ZeroTimeout
        );
        let zero_port = SmtpSettings {
            port: 0,
            ..settings()
        };
        assert_eq!(
            SmtpMailer::new(zero_port, FROM).unwrap_err(),
            SmtpConfigError::ZeroPort
        );
        let no_host = SmtpSettings {
            host: " ".into(),
            ..settings()
        };
        assert_eq!(
            SmtpMailer::new(no_host, FROM).unwrap_err(),
            SmtpConfigError::MissingHost
        );
    }

    #[test]
    fn a_mailer_built_and_dropped_outside_a_runtime_does_not_panic() {
        drop(SmtpMailer::new(settings(), FROM).unwrap());
    }

    #[test]
    fn debug_of_the_mailer_shows_no_credentials() {
        let mailer = SmtpMailer::new(
            SmtpSettings {
                username: Some("mailuser".into()),
                password: Some("hunter2-secret".into()),
                ..settings()
            },
            FROM,
        )
        .unwrap();
        let debug = format!("{mailer:?}");
        assert!(!debug.contains("hunter2-secret"), "{debug}");
        assert!(debug.contains("smtp.example.com"), "{debug}");
    }
}
