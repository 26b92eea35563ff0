//! The store contract suite: what every implementation of
//! `regstack_ports::stores` must do, written once as ordinary async
//! functions and run against each backend by [`store_contract!`].
//!
//! Each case takes a fresh, empty, migrated [`Stores`](regstack_ports::Stores) and panics on the
//! first broken promise, naming it. The cases read the port docs literally
//! and pin down what they leave implicit, so that the in-memory fakes,
//! SQLite, PostgreSQL and MongoDB agree on every edge a flow relies on:
//!
//! - **Expiry.** A row is live while `expires_at > now`: at `expires_at`
//!   exactly it is dead, one microsecond earlier it is alive. Reads never
//!   return a dead row, whether or not it was purged.
//! - **Single use under contention.** Each race spawns 20 tasks on a
//!   4-worker runtime, lines them up on a barrier and fires them together:
//!   exactly one wins (exactly `threshold` for counters), the others get the
//!   documented "no" — never an `Err`, never a second winner.
//! - **Time.** Every instant is a fixed value passed as `now`, starting at
//!   [`t0`](crate::fixtures::t0) (which has a non-zero microsecond part); nothing reads the wall
//!   clock, and instants must come back equal to the microsecond.
//! - **Lockout windows.** An attempt at `at` is counted at `now` while
//!   `at > now - window`; a lock reports `retry_at` = the moment the attempt
//!   whose leaving brings the count below the threshold leaves the window.
//! - **Liveness of a session** is [`Session::is_live`](regstack_ports::Session::is_live): not revoked,
//!   `expires_at > now` and `idle_expires_at > now`; revocation never
//!   overwrites the reason a dead session died of, and a session that
//!   expired or idled out is never marked revoked after the fact.
//! - **Refresh families** (successors are derived from the presented
//!   token, never stored; a spent token is a replay inside the grace
//!   window, else reuse that ends the family). `rotate` spends the family's
//!   live token and makes the successor live; of any number of concurrent
//!   presentations exactly one rotates. Tokens come with the session they
//!   were minted for (the engine checks that before the store is asked).
//!   Any other presentation — a spent token, a token of a dead session —
//!   writes nothing and reports the family exactly as stored (`NotLive`:
//!   the session, its user, the live hash, the last spent hash and when);
//!   an unknown session is `Unknown`. Judging replay or reuse from that
//!   report is `core`'s rule, and a reused family is ended with
//!   `revoke(RefreshReuse)`, `true` exactly once however many race to do
//!   it. Rotation moves
//!   `idle_expires_at` to `min(now + idle, expires_at)`, never `expires_at`.
//!
//! One file per aggregate (`users.rs`, `admin.rs` (what the admin routes
//! ask of users and pending registrations), `pending.rs`, `tokens.rs`,
//! `attempts.rs`, `sessions.rs`, `refresh.rs`, `deletion.rs`,
//! `rate_limits.rs`, `mfa.rs`, `oauth.rs`, `audit.rs`, `housekeeping.rs`), plus `parallel.rs` for many
//! `rate_limits.rs`, `mfa.rs`, `oauth.rs`, `invites.rs`, `housekeeping.rs`), plus `parallel.rs` for many
//! writers at once across aggregates; the race harness, time helpers and
//! short forms of store calls are in `support.rs`. A new store brings its
//! own file of cases and lists them in `store_contract!` — a test
//! (`tests/case_list.rs`) fails if a case is defined but not listed.
//!
//! [`store_contract!`]: crate::store_contract!

use std::future::Future;

mod admin;
mod attempts;
mod audit;
mod deletion;
mod housekeeping;
mod invites;
mod mfa;
mod oauth;
mod parallel;
mod pending;
mod rate_limits;
mod refresh;
mod sessions;
mod support;
mod tokens;
mod users;

pub use admin::*;
pub use attempts::*;
pub use audit::*;
pub use deletion::*;
pub use housekeeping::*;
pub use invites::*;
pub use mfa::*;
pub use oauth::*;
pub use parallel::*;
pub use pending::*;
pub use rate_limits::*;
pub use refresh::*;
pub use sessions::*;
pub use tokens::*;
pub use users::*;

/// How many tasks each race fires at once.
pub const RACERS: usize = 20;

/// Runs one case on a fresh multi-thread runtime with 4 workers, as
/// `#[tokio::test(flavor = "multi_thread", worker_threads = 4)]` would.
/// Used by [`store_contract!`](crate::store_contract!).
pub fn run_case(case: impl Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("build the contract test runtime")
        .block_on(case);
}

/// Reports a case whose backend was not available. Loud locally; a failure
/// under `CI=true`, where a missing service means a broken pipeline.
pub fn skipped(case: &str, factory: &str) {
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !in_ci,
        "store contract case `{case}`: `{factory}` returned None, and CI=true \
         forbids skipping — start the service (cargo xtask services up)"
    );
    eprintln!(
        "SKIPPED store contract case `{case}`: `{factory}` returned None \
         (service not configured)"
    );
}
