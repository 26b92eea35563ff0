//! SQL stores for regstack-rs: the `regstack_ports` store traits
//! ([`UserStore`](regstack_ports::UserStore),
//! [`PendingStore`](regstack_ports::PendingStore), …) implemented over sqlx.
//!
//! This is an outer ring of the hexagon. It depends on `regstack-ports`
//! only — never on `regstack-core` or the HTTP crate — and no sqlx type
//! crosses its public boundary except the pool a host opens with
//! [`sqlite::connect`] and hands back to [`sqlite::stores`]. Driver errors
//! become [`StoreError`](regstack_ports::StoreError) in one place
//! (`error::map_sqlx`).
//!
//! Start reading at [`sqlite`]: `connect` → `migrate` → `stores`. The stores
//! themselves are written once for both engines, one file per aggregate
//! under `store/` (`users.rs`, `pending.rs`, …), each statement text once
//! beside the code that runs it; an engine ([`sqlite`], [`postgres`])
//! supplies only what really differs — transaction and locking mechanics,
//! a few dialect statements, URL parsing, error mapping and its migrations
//! (`migrations/sqlite/`, `migrations/postgres/`: same tables, same
//! versions). `backend.rs` says where that line runs and why.
//!
//! Invariants:
//! - every intent-named operation (`promote`, `admit`,
//!   `complete_password_reset`, `revoke_all`, …) is **one transaction or one
//!   conditional statement**; the affected-row count or a `RETURNING` row
//!   decides who won a race, so two callers spending one token get one
//!   success and one miss;
//! - never read-then-write across statements unless the write is itself
//!   conditional or the read runs inside a transaction that already holds
//!   the write lock (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: a row lock or
//!   a transaction-scoped advisory lock taken in a statement of its own);
//! - values reach SQL as bind parameters only; SQL text is static (no
//!   `format!` into a query);
//! - timestamps are stored exactly: INTEGER microseconds since the Unix
//!   epoch, UTC, converted in one module (`time`), so a value read back
//!   compares equal to the value written;
//! - no read returns a row past its `expires_at`; `now` always comes from
//!   the caller, never from a clock here.

mod backend;
mod error;
mod migrations;
pub mod postgres;
mod rows;
pub mod sqlite;
mod store;
mod time;

pub use migrations::PendingMigration;
pub use sqlite::SqliteStores;
pub use store::SqlStores;
