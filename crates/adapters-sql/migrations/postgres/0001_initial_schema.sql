-- regstack-rs PostgreSQL schema, version 1 (mirrors migrations/sqlite/0001).
--
-- Table and column names follow regstack 0.9.3 where regstack has the data
-- (DECISIONS.md §9). Every timestamp is a BIGINT count of microseconds
-- since the Unix epoch, UTC: it round-trips exactly (security.md RL-9),
-- compares as a plain integer and means the same on every backend.
--
-- Uniqueness rules carry explicit names: the adapter turns a violation into
-- `StoreError::Conflict` by constraint name (src/postgres/error.rs), so a
-- renamed constraint must be renamed there too.

CREATE TABLE users (
    id                       TEXT    NOT NULL,
    email                    TEXT    NOT NULL,
    hashed_password          TEXT,
    is_active                BOOLEAN NOT NULL DEFAULT TRUE,
    is_verified              BOOLEAN NOT NULL DEFAULT FALSE,
    is_superuser             BOOLEAN NOT NULL DEFAULT FALSE,
    full_name                TEXT,
    phone_number             TEXT,
    is_mfa_enabled           BOOLEAN NOT NULL DEFAULT FALSE,
    created_at               BIGINT  NOT NULL,
    updated_at               BIGINT  NOT NULL,
    last_login               BIGINT,
    tokens_invalidated_after BIGINT,
    CONSTRAINT users_pkey PRIMARY KEY (id),
    CONSTRAINT users_email_key UNIQUE (email)
);

-- At most one pending registration per address; the verification link is
-- looked up by the hash of its token.
CREATE TABLE pending_registrations (
    id              BIGINT  GENERATED ALWAYS AS IDENTITY,
    email           TEXT    NOT NULL,
    hashed_password TEXT    NOT NULL,
    full_name       TEXT,
    token_hash      TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    expires_at      BIGINT  NOT NULL,
    CONSTRAINT pending_registrations_pkey PRIMARY KEY (id),
    CONSTRAINT pending_registrations_email_key UNIQUE (email),
    CONSTRAINT pending_registrations_token_hash_key UNIQUE (token_hash)
);
CREATE INDEX ix_pending_registrations_expires_at ON pending_registrations (expires_at);

-- The lockout counter: one row per admitted sign-in attempt.
CREATE TABLE login_attempts (
    id           BIGINT GENERATED ALWAYS AS IDENTITY,
    email        TEXT   NOT NULL,
    attempted_at BIGINT NOT NULL,
    CONSTRAINT login_attempts_pkey PRIMARY KEY (id)
);
CREATE INDEX ix_login_attempts_email_attempted_at ON login_attempts (email, attempted_at);
CREATE INDEX ix_login_attempts_attempted_at ON login_attempts (attempted_at);

-- Password-reset and email-change tokens, by the SHA-256 of the raw token.
CREATE TABLE one_time_tokens (
    token_hash TEXT   NOT NULL,
    kind       TEXT   NOT NULL,
    user_id    TEXT   NOT NULL,
    new_email  TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    CONSTRAINT one_time_tokens_pkey PRIMARY KEY (token_hash),
    CONSTRAINT one_time_tokens_kind_check CHECK (kind IN ('password_reset', 'email_change')),
    CONSTRAINT one_time_tokens_user_id_fkey FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE CASCADE
);
CREATE INDEX ix_one_time_tokens_user_id_kind ON one_time_tokens (user_id, kind);
CREATE INDEX ix_one_time_tokens_expires_at ON one_time_tokens (expires_at);

-- Sign-in sessions: what an access token's `sid` names.
CREATE TABLE sessions (
    id             TEXT   NOT NULL,
    user_id        TEXT   NOT NULL,
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    user_agent     TEXT,
    ip             TEXT,
    revoked_at     BIGINT,
    revoked_reason TEXT,
    CONSTRAINT sessions_pkey PRIMARY KEY (id),
    CONSTRAINT sessions_user_id_fkey FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE CASCADE
);
CREATE INDEX ix_sessions_user_id ON sessions (user_id);
CREATE INDEX ix_sessions_expires_at ON sessions (expires_at);

-- Sliding-window counters other than the lockout (mail per address, …).
CREATE TABLE rate_limit_hits (
    id     BIGINT GENERATED ALWAYS AS IDENTITY,
    key    TEXT   NOT NULL,
    hit_at BIGINT NOT NULL,
    CONSTRAINT rate_limit_hits_pkey PRIMARY KEY (id)
);
CREATE INDEX ix_rate_limit_hits_key_hit_at ON rate_limit_hits (key, hit_at);
CREATE INDEX ix_rate_limit_hits_hit_at ON rate_limit_hits (hit_at);
