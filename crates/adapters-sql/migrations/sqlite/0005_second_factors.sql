-- regstack-rs SQLite schema, version 5: second factors (issue 12).
--
-- `mfa_codes` is regstack's table name (DECISIONS.md §9) for the pending
-- second-factor steps: a row per challenge, keyed by the hash of the
-- pending token the client holds, with the attempts still allowed. A
-- user has at most one challenge per kind (a new code supersedes the
-- old), which the (user_id, kind) index serves.
--
-- `mfa_totp` holds one confirmed TOTP factor per user, its secret sealed
-- by the application; `last_step` is the last accepted time step, so a
-- code is never accepted twice. `mfa_backup_codes` holds the unspent
-- backup codes, one row each, so spending one is a single-row DELETE.
--
-- `users.must_change_password`: an administrator's demand that the next
-- sign-in set a new password; every password change clears it.

ALTER TABLE users ADD COLUMN must_change_password INTEGER NOT NULL DEFAULT 0
    CHECK (must_change_password IN (0, 1));

CREATE TABLE mfa_codes (
    id               TEXT    NOT NULL PRIMARY KEY,
    user_id          TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind             TEXT    NOT NULL CHECK (kind IN
                         ('sign_in', 'phone_enrolment', 'totp_enrolment', 'password_change')),
    code_hash        TEXT,
    payload          TEXT,
    attempts_left    INTEGER NOT NULL CHECK (attempts_left >= 0),
    credential_epoch INTEGER,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL
) STRICT;
CREATE INDEX ix_mfa_codes_user_id_kind ON mfa_codes (user_id, kind);
CREATE INDEX ix_mfa_codes_expires_at ON mfa_codes (expires_at);

CREATE TABLE mfa_totp (
    user_id       TEXT    NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    sealed_secret TEXT    NOT NULL,
    last_step     INTEGER,
    created_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE mfa_backup_codes (
    user_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    PRIMARY KEY (user_id, code_hash)
) STRICT;
