//! The centre of the hexagon: domain types and the port traits that the
//! outer rings implement.
//!
//! Everything else in regstack-rs depends on this crate, and this crate
//! depends on nothing of ours and on no I/O crate. A type lives here when
//! both `core` (which decides) and an adapter (which stores or sends) must
//! agree on it. Start reading at [`stores`]: each trait is one aggregate,
//! and each method that must be atomic says so in its name and its doc.
//!
//! Invariants:
//! - values that passed validation have their own types ([`Email`],
//!   [`UserId`], [`TokenHash`]); a raw `String` never crosses a port where
//!   one of those is meant;
//! - a secret never derives `Debug`: password hashes, raw tokens, mail
//!   bodies and SMS bodies print as `[redacted]` or not at all;
//! - time enters only as a parameter (`now: Timestamp`) or through
//!   [`Clock`]; no store reads the system clock to decide expiry.
#![warn(missing_docs)]

pub mod audit;
pub mod breach;
pub mod clock;
pub mod error;
pub mod hashing;
pub mod invites;
pub mod notify;
pub mod oauth;
pub mod rules;
pub mod stores;
pub mod types;

pub use audit::{AuditCursor, AuditEntry, AuditQuery, AuditStore};
pub use breach::{BreachVerdict, BreachedPasswords, PasswordSha1};
pub use clock::{Clock, SystemClock, Timestamp};
pub use error::{HashError, NotifyError, StoreError};
pub use hashing::{PasswordHasher, Verification};
pub use invites::*;
pub use notify::{Mailer, OutgoingMail, OutgoingSms, SmsSender};
pub use oauth::*;
pub use rules::*;
pub use stores::*;
pub use types::*;
