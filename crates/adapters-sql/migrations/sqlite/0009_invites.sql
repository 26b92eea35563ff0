-- regstack-rs schema, version 9: invitations (registration_mode = "invite").
--
-- An invite admits one registration. `code_hash` is the SHA-256 of the
-- code the operator handed out (the code itself is never stored); `email`,
-- when set, is the only canonical address it admits. A redemption is one
-- conditional UPDATE setting `used_at`/`used_by`, so of concurrent
-- redeemers exactly one wins. `created_by` names the administrator (no
-- foreign key: the record outlives the account). The list pages newest
-- first and the purge goes by `expires_at`.
CREATE TABLE invites (
    id          TEXT    NOT NULL PRIMARY KEY,
    code_hash   TEXT    NOT NULL UNIQUE,
    email       TEXT,
    note        TEXT,
    created_by  TEXT,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER,
    used_by     TEXT,
    revoked_at  INTEGER,
    CHECK ((used_at IS NULL) = (used_by IS NULL))
) STRICT;
CREATE INDEX ix_invites_created_at_id ON invites (created_at, id);
CREATE INDEX ix_invites_expires_at ON invites (expires_at);
