-- regstack-rs PostgreSQL schema, version 5 (mirrors
-- migrations/sqlite/0005): second factors (issue 12).
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
-- sign-in set a new password; every password change clears it. A column
-- with a constant default rewrites no rows.

ALTER TABLE users ADD COLUMN must_change_password BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE mfa_codes (
    id               TEXT    NOT NULL,
    user_id          TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    code_hash        TEXT,
    payload          TEXT,
    attempts_left    BIGINT  NOT NULL,
    credential_epoch BIGINT,
    created_at       BIGINT  NOT NULL,
    expires_at       BIGINT  NOT NULL,
    CONSTRAINT mfa_codes_pkey PRIMARY KEY (id),
    CONSTRAINT mfa_codes_kind_check CHECK (kind IN
        ('sign_in', 'phone_enrolment', 'totp_enrolment', 'password_change')),
    CONSTRAINT mfa_codes_attempts_left_check CHECK (attempts_left >= 0),
    CONSTRAINT mfa_codes_user_id_fkey FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE CASCADE
);
CREATE INDEX ix_mfa_codes_user_id_kind ON mfa_codes (user_id, kind);
CREATE INDEX ix_mfa_codes_expires_at ON mfa_codes (expires_at);

CREATE TABLE mfa_totp (
    user_id       TEXT   NOT NULL,
    sealed_secret TEXT   NOT NULL,
    last_step     BIGINT,
    created_at    BIGINT NOT NULL,
    CONSTRAINT mfa_totp_pkey PRIMARY KEY (user_id),
    CONSTRAINT mfa_totp_user_id_fkey FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE CASCADE
);

CREATE TABLE mfa_backup_codes (
    user_id   TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    CONSTRAINT mfa_backup_codes_pkey PRIMARY KEY (user_id, code_hash),
    CONSTRAINT mfa_backup_codes_user_id_fkey FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE CASCADE
);
