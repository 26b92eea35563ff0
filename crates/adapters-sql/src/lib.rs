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
//! Start reading at [`sqlite`]: `connect` → `migrate` → `stores`. Each
//! aggregate has its own file there (`users.rs`, `pending.rs`, …); the
//! schema is `migrations/sqlite/`. [`postgres`] mirrors it file for file
//! with its own `migrations/postgres/` (same tables, same versions); the
//! backend-neutral pieces (error mapping, timestamp encoding) live at the
//! crate root for both, and PostgreSQL's SQLSTATEs and constraint names
//! are classified in `postgres/error.rs` before falling through to them.
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

mod error;
mod family;
mod migrations;
pub mod postgres;
mod rows;
pub mod sqlite;
mod time;

pub use sqlite::SqliteStores;
