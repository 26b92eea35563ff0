//! The `/me` ceiling — what this machine allows a `/me` at all, against
//! which ours is judged (≥ 0.8 of it meets the throughput target, since
//! regstack's own `/me` varies too much to be a fair yardstick): the least a `/me` can do on this
//! stack — verify an HS256 JWT, one lookup by primary key in SQLite (WAL,
//! `synchronous=NORMAL`, eight pooled connections, as the real SQLite store
//! opens it), answer JSON — with no middleware and no logging. The benchmark
//! runs it as a separate process (`regstack-bench ceiling`) so it is
//! measured exactly like the server.
//!
//! It also serves a refresh ceiling: `POST /api/auth/refresh` runs the very
//! statements the SQLite session store runs to rotate a refresh token (the
//! token names its session; one autocommit `UPDATE … RETURNING` of the
//! session row, conditional on the presented hash being the live one, on
//! the one writer connection; then the user read by primary key) on the
//! same schema, and mints an HS256 token. It shows what a rotation costs on
//! this machine with nothing else around it; `/refresh-minimal` writes one
//! column of one row and reads nothing — the floor of any durable refresh.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

/// The address of seeded user `i` (1-based).
pub fn email(i: u32) -> String {
    format!("ceiling-{i}@example.com")
}

/// The first refresh token of seeded user `i`'s session: like ours, it
/// names its session before the dot.
pub fn seed_refresh(i: u32) -> String {
    format!("session-{i}.seed-refresh-token")
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

/// An access token for user `id`, valid for an hour.
pub fn token(secret: &str, id: u32) -> Result<String> {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 3600;
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &Claims {
            sub: id.to_string(),
            exp,
        },
        &EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

struct AppState {
    pool: SqlitePool,
    key: DecodingKey,
    enc: EncodingKey,
    validation: Validation,
    gate: tokio::sync::Semaphore,
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn server_error(e: impl std::fmt::Display) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"detail": e.to_string()})),
    )
        .into_response()
}

async fn refresh(State(st): State<Arc<AppState>>, Json(body): Json<serde_json::Value>) -> Response {
    let invalid = || {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"detail": "Invalid or expired refresh token."})),
        )
            .into_response()
    };
    let Some(raw) = body.get("refresh_token").and_then(|v| v.as_str()) else {
        return invalid();
    };
    let Some((sid, _)) = raw.split_once('.') else {
        return invalid();
    };
    let presented = sha256_hex(raw);
    let successor = format!("{sid}.{}", sha256_hex(&format!("successor:{raw}")));
    let now = now_micros();
    let Ok(turn) = st.gate.acquire().await else {
        return server_error("closed");
    };
    let rotated: Result<Option<(i64, i64)>, _> = sqlx::query_as(
        "UPDATE sessions SET prev_refresh_hash = refresh_hash, refresh_hash = ?1, \
         rotated_at = ?2, last_used_at = ?2, idle_expires_at = MIN(?3, expires_at) \
         WHERE id = ?4 AND refresh_hash = ?5 AND revoked_at IS NULL \
         AND expires_at > ?2 AND idle_expires_at > ?2 RETURNING user_id, idle_expires_at",
    )
    .bind(sha256_hex(&successor))
    .bind(now)
    .bind(now + 14 * 86_400 * 1_000_000)
    .bind(sid)
    .bind(&presented)
    .fetch_optional(&st.pool)
    .await;
    drop(turn);
    let (user_id, idle) = match rotated {
        Ok(Some(r)) => r,
        Ok(None) => return invalid(),
        Err(e) => return server_error(e),
    };
    let user: Result<Option<(i64, String)>, _> =
        sqlx::query_as("SELECT id, email FROM users WHERE id = ?1")
            .bind(user_id)
            .fetch_optional(&st.pool)
            .await;
    match user {
        Ok(Some((id, _))) => token_response(&st, id, successor, idle, now),
        Ok(None) => invalid(),
        Err(e) => server_error(e),
    }
}

type Row = (i64, String, Option<String>, bool, bool, i64);

async fn me(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let unauthorized = || {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"detail": "Could not validate credentials."})),
        )
            .into_response()
    };
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return unauthorized();
    };
    let Ok(data) = jsonwebtoken::decode::<Claims>(token, &st.key, &st.validation) else {
        return unauthorized();
    };
    let Ok(id) = data.claims.sub.parse::<i64>() else {
        return unauthorized();
    };
    let row: Result<Option<Row>, _> = sqlx::query_as(
        "SELECT id, email, full_name, is_active, is_verified, created_at FROM users WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(&st.pool)
    .await;
    match row {
        Ok(Some((id, email, full_name, is_active, is_verified, created_at))) => Json(json!({
            "id": id.to_string(),
            "email": email,
            "full_name": full_name,
            "is_active": is_active,
            "is_verified": is_verified,
            "created_at": created_at,
        }))
        .into_response(),
        Ok(None) => unauthorized(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"detail": e.to_string()})),
        )
            .into_response(),
    }
}

/// The least any durable refresh could write: one autocommit `UPDATE` of
/// one row by primary key (the token is handed back unchanged). Not a
/// rotation — a floor for what a write per refresh costs here.
async fn refresh_minimal(
    State(st): State<Arc<AppState>>,
    Json(body): Json<serde_json::Value>,
) -> Response {
    let Some(raw) = body.get("refresh_token").and_then(|v| v.as_str()) else {
        return server_error("no token");
    };
    let now = now_micros();
    let Ok(turn) = st.gate.acquire().await else {
        return server_error("closed");
    };
    let sid = raw.split_once('.').map_or(raw, |(sid, _)| sid);
    let done = sqlx::query("UPDATE sessions SET last_used_at = ?1 WHERE id = ?2")
        .bind(now)
        .bind(sid)
        .execute(&st.pool)
        .await;
    drop(turn);
    match done {
        Ok(r) if r.rows_affected() == 1 => {
            token_response(&st, 1, raw.to_owned(), now + 14 * 86_400 * 1_000_000, now)
        }
        Ok(_) => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"detail": "Invalid or expired refresh token."})),
        )
            .into_response(),
        Err(e) => server_error(e),
    }
}

fn token_response(st: &AppState, user_id: i64, successor: String, idle: i64, now: i64) -> Response {
    let exp = (now / 1_000_000) as u64 + 300;
    let access = match jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &Claims {
            sub: user_id.to_string(),
            exp,
        },
        &st.enc,
    ) {
        Ok(t) => t,
        Err(e) => return server_error(e),
    };
    Json(json!({
        "access_token": access,
        "token_type": "bearer",
        "expires_in": 300,
        "refresh_token": successor,
        "refresh_expires_in": (idle - now) / 1_000_000,
    }))
    .into_response()
}

/// Gives seeded user `i`'s session a new live refresh token (untimed set-up
/// between scenarios) and returns it.
async fn reseed(State(st): State<Arc<AppState>>, Json(body): Json<serde_json::Value>) -> Response {
    let Some(i) = body.get("user").and_then(|v| v.as_i64()) else {
        return server_error("no user");
    };
    let now = now_micros();
    let Ok(_turn) = st.gate.acquire().await else {
        return server_error("closed");
    };
    let sid = format!("session-{i}");
    let raw = format!("{sid}.reseed-{now}");
    let result = sqlx::query(
        "UPDATE sessions SET prev_refresh_hash = refresh_hash, refresh_hash = ?1, \
         rotated_at = ?2 WHERE id = ?3",
    )
    .bind(sha256_hex(&raw))
    .bind(now)
    .bind(&sid)
    .execute(&st.pool)
    .await
    .map(drop);
    match result {
        Ok(()) => Json(json!({"refresh_token": raw})).into_response(),
        Err(e) => server_error(e),
    }
}

/// Asks the ceiling at `target` for a new live refresh token of user `i`.
pub async fn reseed_token(target: &crate::load::Target, i: u32) -> Result<String> {
    let mut conn = crate::load::Conn::new(target);
    let reply = conn
        .send(
            http::Method::POST,
            &target.path("/reseed"),
            None,
            Some(&json!({ "user": i })),
        )
        .await?;
    reply.str_field("refresh_token")
}

/// Seeds `users` users into `db` and serves until killed. Prints
/// `ceiling listening on http://HOST:PORT` once it accepts connections.
pub async fn serve(db: &Path, secret: &str, users: u32) -> Result<()> {
    let options = SqliteConnectOptions::new()
        .filename(db)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    // As the real SQLite store opens it: no ping before each use.
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .with_context(|| format!("open {}", db.display()))?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS users (
            id INTEGER PRIMARY KEY,
            email TEXT NOT NULL UNIQUE,
            hashed_password TEXT,
            full_name TEXT,
            is_active INTEGER NOT NULL,
            is_verified INTEGER NOT NULL,
            created_at INTEGER NOT NULL
        )",
    )
    .execute(&pool)
    .await?;
    // The session store's schema (migrations/sqlite/0001–0003), users aside.
    for ddl in [
        "CREATE TABLE IF NOT EXISTS sessions (
            id              TEXT    NOT NULL PRIMARY KEY,
            user_id         INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            created_at      INTEGER NOT NULL,
            last_used_at    INTEGER NOT NULL,
            expires_at      INTEGER NOT NULL,
            idle_expires_at INTEGER NOT NULL,
            user_agent      TEXT,
            ip              TEXT,
            revoked_at      INTEGER,
            revoked_reason  TEXT,
            refresh_hash    TEXT,
            prev_refresh_hash TEXT,
            rotated_at      INTEGER
        ) STRICT",
        "CREATE INDEX IF NOT EXISTS ix_sessions_user_id ON sessions (user_id)",
        "CREATE INDEX IF NOT EXISTS ix_sessions_expires_at ON sessions (expires_at)",
    ] {
        sqlx::query(ddl).execute(&pool).await?;
    }
    let now = now_micros();
    let mut tx = pool.begin().await?;
    for i in 1..=users {
        sqlx::query(
            "INSERT OR IGNORE INTO users (id, email, hashed_password, full_name, is_active, is_verified, created_at)
             VALUES (?, ?, '$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaA', NULL, 1, 1, 0)",
        )
        .bind(i64::from(i))
        .bind(email(i))
        .execute(&mut *tx)
        .await?;
        let sid = format!("session-{i}");
        sqlx::query(
            "INSERT OR IGNORE INTO sessions (id, user_id, created_at, last_used_at, expires_at, \
             idle_expires_at, refresh_hash) VALUES (?1, ?2, ?3, ?3, ?4, ?4, ?5)",
        )
        .bind(&sid)
        .bind(i64::from(i))
        .bind(now)
        .bind(now + 30 * 86_400 * 1_000_000)
        .bind(sha256_hex(&seed_refresh(i)))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;

    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    let state = Arc::new(AppState {
        pool,
        key: DecodingKey::from_secret(secret.as_bytes()),
        enc: EncodingKey::from_secret(secret.as_bytes()),
        validation,
        gate: tokio::sync::Semaphore::new(1),
    });
    let app = Router::new()
        .route("/api/auth/me", get(me))
        .route("/api/auth/refresh", axum::routing::post(refresh))
        .route(
            "/api/auth/refresh-minimal",
            axum::routing::post(refresh_minimal),
        )
        .route("/api/auth/reseed", axum::routing::post(reseed))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("ceiling listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
