-- regstack-rs SQLite schema, version 2: refresh-token families
-- (DECISIONS.md §7).
--
-- Each session gains an idle end, pushed forward by every rotation and never
-- past `expires_at`; a session that existed before this version idles out
-- when it expires. SQLite adds a NOT NULL column only with a constant
-- default, which would stay on the column for good, so `sessions` is
-- rebuilt instead (SQLite's documented procedure: create, copy, drop,
-- rename, re-index). Nothing references `sessions` yet, so dropping it
-- inside this migration's transaction cascades nowhere.

CREATE TABLE sessions_v2 (
    id              TEXT    NOT NULL PRIMARY KEY,
    user_id         TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at      INTEGER NOT NULL,
    last_used_at    INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    idle_expires_at INTEGER NOT NULL,
    user_agent      TEXT,
    ip              TEXT,
    revoked_at      INTEGER,
    revoked_reason  TEXT
) STRICT;

INSERT INTO sessions_v2
    (id, user_id, created_at, last_used_at, expires_at, idle_expires_at,
     user_agent, ip, revoked_at, revoked_reason)
SELECT id, user_id, created_at, last_used_at, expires_at, expires_at,
       user_agent, ip, revoked_at, revoked_reason
FROM sessions;

DROP TABLE sessions;
ALTER TABLE sessions_v2 RENAME TO sessions;
CREATE INDEX ix_sessions_user_id ON sessions (user_id);
CREATE INDEX ix_sessions_expires_at ON sessions (expires_at);

-- The refresh tokens of each session (its family), by the SHA-256 of the
-- raw token; never the token itself. A token is live until `spent_at`, when
-- it was rotated away; spent rows stay until their session is purged, so
-- that presenting one again is recognised as reuse.
CREATE TABLE refresh_tokens (
    hash       TEXT    NOT NULL PRIMARY KEY,
    session_id TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    issued_at  INTEGER NOT NULL,
    spent_at   INTEGER
) STRICT;
CREATE INDEX ix_refresh_tokens_session_id ON refresh_tokens (session_id);
-- A family has at most one live token (DESIGN.md, refresh rotation).
CREATE UNIQUE INDEX ux_refresh_tokens_one_live_per_session
    ON refresh_tokens (session_id) WHERE spent_at IS NULL;
