-- regstack-rs SQLite schema, version 4: the sign-in lockout counts per
-- bucket (security.md LK-4).
--
-- An attempt from a device that signed in to the address before (its
-- device cookie verified) counts in that device's own bucket, so that
-- strangers failing against an address cannot lock its owner's browser
-- out. `device` is that device's id, or '' for the address's own bucket:
-- every row written before this version stays the address's. The empty
-- string rather than NULL keeps the bucket a plain equality, which the
-- index serves.
--
-- The new index leads with `email`, so it also serves "every bucket of this
-- address" (credential changes, deletion), and replaces the old one.

ALTER TABLE login_attempts ADD COLUMN device TEXT NOT NULL DEFAULT '';
CREATE INDEX ix_login_attempts_email_device_attempted_at
    ON login_attempts (email, device, attempted_at);
DROP INDEX ix_login_attempts_email_attempted_at;
