-- regstack-rs SQLite schema, version 1.
--
-- Table and column names follow regstack 0.9.3 where regstack has the data
-- (DECISIONS.md §9). Every timestamp is an INTEGER count of microseconds
-- since the Unix epoch, UTC: it round-trips exactly (security.md RL-9) and
-- compares as a plain integer. Booleans are INTEGER 0/1. STRICT tables make
-- SQLite refuse a value of the wrong type instead of storing it silently.

CREATE TABLE users (
    id                       TEXT    NOT NULL PRIMARY KEY,
    email                    TEXT    NOT NULL UNIQUE,
    hashed_password          TEXT,
    is_active                INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    is_verified              INTEGER NOT NULL DEFAULT 0 CHECK (is_verified IN (0, 1)),
    is_superuser             INTEGER NOT NULL DEFAULT 0 CHECK (is_superuser IN (0, 1)),
    full_name                TEXT,
    phone_number             TEXT,
    is_mfa_enabled           INTEGER NOT NULL DEFAULT 0 CHECK (is_mfa_enabled IN (0, 1)),
    created_at               INTEGER NOT NULL,
    updated_at               INTEGER NOT NULL,
    last_login               INTEGER,
    tokens_invalidated_after INTEGER
) STRICT;

-- At most one pending registration per address; the verification link is
-- looked up by the hash of its token.
CREATE TABLE pending_registrations (
    id              INTEGER NOT NULL PRIMARY KEY,
    email           TEXT    NOT NULL UNIQUE,
    hashed_password TEXT    NOT NULL,
    full_name       TEXT,
    token_hash      TEXT    NOT NULL UNIQUE,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX ix_pending_registrations_expires_at ON pending_registrations (expires_at);

-- The lockout counter: one row per admitted sign-in attempt.
CREATE TABLE login_attempts (
    id           INTEGER NOT NULL PRIMARY KEY,
    email        TEXT    NOT NULL,
    attempted_at INTEGER NOT NULL
) STRICT;
CREATE INDEX ix_login_attempts_email_attempted_at ON login_attempts (email, attempted_at);
CREATE INDEX ix_login_attempts_attempted_at ON login_attempts (attempted_at);

-- Password-reset and email-change tokens, by the SHA-256 of the raw token.
CREATE TABLE one_time_tokens (
    token_hash TEXT    NOT NULL PRIMARY KEY,
    kind       TEXT    NOT NULL CHECK (kind IN ('password_reset', 'email_change')),
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    new_email  TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX ix_one_time_tokens_user_id_kind ON one_time_tokens (user_id, kind);
CREATE INDEX ix_one_time_tokens_expires_at ON one_time_tokens (expires_at);

-- Sign-in sessions: what an access token's `sid` names.
CREATE TABLE sessions (
    id             TEXT    NOT NULL PRIMARY KEY,
    user_id        TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at     INTEGER NOT NULL,
    last_used_at   INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    user_agent     TEXT,
    ip             TEXT,
    revoked_at     INTEGER,
    revoked_reason TEXT
) STRICT;
CREATE INDEX ix_sessions_user_id ON sessions (user_id);
CREATE INDEX ix_sessions_expires_at ON sessions (expires_at);

-- Sliding-window counters other than the lockout (mail per address, …).
CREATE TABLE rate_limit_hits (
    id     INTEGER NOT NULL PRIMARY KEY,
    key    TEXT    NOT NULL,
    hit_at INTEGER NOT NULL
) STRICT;
CREATE INDEX ix_rate_limit_hits_key_hit_at ON rate_limit_hits (key, hit_at);
CREATE INDEX ix_rate_limit_hits_hit_at ON rate_limit_hits (hit_at);
