//! Outbound notification adapters: the transports that implement the
//! [`Mailer`](regstack_ports::Mailer) and
//! [`SmsSender`](regstack_ports::SmsSender) ports.
//!
//! In the hexagon this crate is an outer ring. `core` composes an
//! [`OutgoingMail`](regstack_ports::OutgoingMail) — recipient, subject, text
//! and HTML already rendered — or an
//! [`OutgoingSms`](regstack_ports::OutgoingSms), and hands it to whichever
//! transport the server wired in. Mail:
//!
//! - [`ConsoleMailer`] logs the mail instead of sending it (development and
//!   regstack's console backend, whose log lines tooling scrapes);
//! - [`SmtpMailer`] sends it through an SMTP relay with lettre (STARTTLS,
//!   implicit TLS, or plain for a relay on the same host);
//! - [`SesMailer`] sends it through AWS SES v2, SigV4-signed.
//!
//! Text messages ([`sms`]): [`NullSms`] logs them, [`TwilioSms`] posts them
//! to Twilio, [`SnsSms`] publishes them through AWS SNS. These are
//! regstack's backends, each with regstack's key names; SMS is not wired
//! into the server yet (the second factor that uses it is a later issue).
//!
//! Depends on `regstack-ports` only, never on `core` or `http-axum`: which
//! transport to use, the endpoint and its credentials are this crate's own
//! configuration ([`MailTransport`] with [`SmtpSettings`] or
//! [`SesSettings`]; [`SmsTransport`]), handed in by the server together
//! with the mail sender (which is the engine's policy). The HTTP transports
//! use reqwest on the same rustls as lettre, and AWS's `aws-sigv4` for
//! signing rather than the AWS SDK ([`aws`] says which credential sources
//! that leaves).
//!
//! Invariants:
//! - no mail or SMS body, password, token or other credential reaches a
//!   log, an error message or a `Debug` string — bodies carry live
//!   one-time links and codes. The one exception is the console and null
//!   transports with `log_bodies` explicitly on;
//! - every network send is bounded by a timeout, so a black-holed relay or
//!   API cannot hang a request (every outbound call has one);
//! - a transport failure is a [`NotifyError`](regstack_ports::NotifyError)
//!   naming the step and the provider's short reason, never a panic:
//!   `Rejected` when the provider refused this message for good (an invalid
//!   number), `Delivery` when the same message may pass later; what to do
//!   about it is the caller's decision (the engine keeps the pending
//!   registration or reset request, logs the failure without secrets and
//!   lets a resend or a new request mail again once delivery works, so a
//!   mail outage never loses the user's work or becomes a 500);
//! - nothing is retried here: one message, at most one request.
//!
//! It also holds the breached-password screens ([`breach`]): the same
//! kind of outbound call (a bounded, redirect-free reqwest client), or a
//! local range directory.
//!
//! Start reading at [`smtp`], then [`sms`].

pub mod aws;
pub mod breach;
pub mod console;
mod http;
pub mod ses;
pub mod sms;
pub mod smtp;
pub mod transport;

pub use aws::AwsCredentials;
pub use breach::{RangeApiScreen, RangeFileScreen};
pub use console::ConsoleMailer;
pub use http::TransportConfigError;
pub use ses::{SesMailer, SesSettings};
pub use sms::{NullSms, SmsTransport, SnsSettings, SnsSms, TwilioSettings, TwilioSms};
pub use smtp::{SmtpConfigError, SmtpMailer, SmtpSecurity, SmtpSettings};
pub use transport::{MailConfigError, MailTransport};
