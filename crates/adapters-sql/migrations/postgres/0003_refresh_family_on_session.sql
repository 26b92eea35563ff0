-- regstack-rs PostgreSQL schema, version 3 (mirrors
-- migrations/sqlite/0003): a refresh family lives on its session row
-- (DECISIONS.md §7).
--
-- Refresh tokens now carry their session id under a server MAC, so a
-- rotation finds its session by primary key and needs only the live
-- token's hash and the one the last rotation spent (for replays inside the
-- grace window): any other token of a live family is an older one, which
-- is reuse. A rotation is then one conditional UPDATE of one row.
--
-- Tokens issued before this version carry no session id and are refused;
-- their sessions keep working until their access tokens expire
-- (`refresh_hash` stays NULL: no family to rotate). None of the new columns
-- is indexed, so a rotation can be a heap-only tuple update.

ALTER TABLE sessions ADD COLUMN refresh_hash TEXT;
ALTER TABLE sessions ADD COLUMN prev_refresh_hash TEXT;
ALTER TABLE sessions ADD COLUMN rotated_at BIGINT;

DROP TABLE refresh_tokens;
