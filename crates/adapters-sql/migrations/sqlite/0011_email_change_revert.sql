-- regstack-rs schema, version 11: the "this wasn't me" link of an email
-- change (`notices.email_changed`), mailed to the old address.
--
-- A token of kind `email_change_revert` names, in `new_email`, the address
-- to restore. SQLite cannot alter a CHECK constraint, so the table is
-- rebuilt with the wider one (nothing references it; its rows are copied).
CREATE TABLE one_time_tokens_v11 (
    token_hash TEXT    NOT NULL PRIMARY KEY,
    kind       TEXT    NOT NULL CHECK (kind IN
                   ('password_reset', 'email_change', 'email_change_revert')),
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    new_email  TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
INSERT INTO one_time_tokens_v11 (token_hash, kind, user_id, new_email, created_at, expires_at)
    SELECT token_hash, kind, user_id, new_email, created_at, expires_at FROM one_time_tokens;
DROP TABLE one_time_tokens;
ALTER TABLE one_time_tokens_v11 RENAME TO one_time_tokens;
CREATE INDEX ix_one_time_tokens_user_id_kind ON one_time_tokens (user_id, kind);
CREATE INDEX ix_one_time_tokens_expires_at ON one_time_tokens (expires_at);
