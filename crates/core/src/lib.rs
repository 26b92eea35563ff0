//! The decisions of regstack-rs: account flows as state machines, lockout
//! and token policy, JWT, password hashing, mail composition, events, and
//! the building blocks of second factors (TOTP, backup and SMS codes).
//!
//! This ring sits between `ports` (which it depends on) and the adapters
//! and HTTP layer (which depend on it). It performs no I/O of its own: it
//! reaches storage, mail and time only through the port traits, and
//! compiles without sqlx, mongodb, axum, hyper, reqwest, lettre or
//! openidconnect (a test in the `tests` package fails if that changes).
//! Hashing and event handlers use tokio's runtime, not its I/O.
//!
//! Where to start reading: [`flows`] for the rules (each flow's states,
//! events and effects, with the invariants its property tests check), then
//! [`engine::Engine`] for the runners that apply them over the ports.
//!
//! Invariants:
//! - time is a parameter: `now` comes from the `Clock` port
//!   (`clippy.toml` forbids reading the system clock here);
//! - secrets are `SecretString` and never formatted into logs or errors;
//! - a refusal never says more than regstack's answer for the same case
//!   (one body for unknown email, wrong and missing password).

pub mod audit;
pub mod config;
pub mod device_cookie;
pub mod engine;
pub mod error;
pub mod events;
pub mod factors;
pub mod flows;
pub mod jwt;
pub mod mail;
pub mod notices;
pub mod password;
pub mod password_policy;
pub mod redirect;
pub mod refresh_token;
pub mod tokens;

pub use config::{Config, ConfigError, RegistrationMode};
pub use engine::{
    ClientContext, Deps, Engine, EngineError, Principal, Registered, Registration, SignedIn,
};
pub use error::{AuthError, AuthFailure, DisableRefusal, SelfChange};
pub use events::{Event, EventBus, EventKind};
