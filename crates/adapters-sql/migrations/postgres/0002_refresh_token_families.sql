-- regstack-rs PostgreSQL schema, version 2 (mirrors
-- migrations/sqlite/0002): refresh-token families (DECISIONS.md §7).
--
-- Each session gains an idle end, pushed forward by every rotation and never
-- past `expires_at`; a session that existed before this version idles out
-- when it expires. PostgreSQL can add the column, fill it and then make it
-- NOT NULL in place (SQLite has to rebuild the table for the same result).

ALTER TABLE sessions ADD COLUMN idle_expires_at BIGINT;
UPDATE sessions SET idle_expires_at = expires_at;
ALTER TABLE sessions ALTER COLUMN idle_expires_at SET NOT NULL;

-- The refresh tokens of each session (its family), by the SHA-256 of the
-- raw token; never the token itself. A token is live until `spent_at`, when
-- it was rotated away; spent rows stay until their session is purged, so
-- that presenting one again is recognised as reuse.
CREATE TABLE refresh_tokens (
    hash       TEXT   NOT NULL,
    session_id TEXT   NOT NULL,
    issued_at  BIGINT NOT NULL,
    spent_at   BIGINT,
    CONSTRAINT refresh_tokens_pkey PRIMARY KEY (hash),
    CONSTRAINT refresh_tokens_session_id_fkey FOREIGN KEY (session_id)
        REFERENCES sessions (id) ON DELETE CASCADE
);
CREATE INDEX ix_refresh_tokens_session_id ON refresh_tokens (session_id);
-- A family has at most one live token (DESIGN.md, refresh rotation).
CREATE UNIQUE INDEX ux_refresh_tokens_one_live_per_session
    ON refresh_tokens (session_id) WHERE spent_at IS NULL;
