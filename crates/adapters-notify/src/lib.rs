//! Outbound notification adapters: the transports that implement the
//! [`Mailer`](regstack_ports::Mailer) port (and, later, the SMS port).
//!
//! In the hexagon this crate is an outer ring. `core` composes an
//! [`OutgoingMail`](regstack_ports::OutgoingMail) — recipient, subject, text
//! and HTML already rendered — and hands it to whichever transport the
//! server wired in:
//!
//! - [`ConsoleMailer`] logs the mail instead of sending it (development and
//!   regstack's console backend, whose log lines tooling scrapes);
//! - [`SmtpMailer`] sends it through an SMTP relay with lettre (STARTTLS,
//!   implicit TLS, or plain for a relay on the same host).
//!
//! Depends on `regstack-ports` only, never on `core` or `http-axum`: which
//! transport to use, the relay and its credentials are this crate's own
//! configuration ([`MailTransport`], [`SmtpSettings`]), handed in by the
//! server together with the sender (which is the engine's policy).
//!
//! Invariants:
//! - no mail body, password or other credential reaches a log, an error
//!   message or a `Debug` string — bodies carry live one-time links. The
//!   one exception is [`ConsoleMailer`] with `log_bodies` explicitly on;
//! - every network send is bounded by a timeout, so a black-holed relay
//!   cannot hang a request (security.md RL-6);
//! - a transport failure is a [`NotifyError`](regstack_ports::NotifyError)
//!   naming the step and the relay's short reason, never a panic; what to do
//!   about it (keep the pending registration, DECISIONS.md §21) is the
//!   caller's decision.
//!
//! Start reading at [`smtp`].

pub mod console;
pub mod smtp;
pub mod transport;

pub use console::ConsoleMailer;
pub use smtp::{SmtpConfigError, SmtpMailer, SmtpSecurity, SmtpSettings};
pub use transport::MailTransport;
