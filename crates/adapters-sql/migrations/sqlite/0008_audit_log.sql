-- regstack-rs schema, version 8: the audit log.
--
-- One row per security event (sign-ins and their failures, lockouts,
-- second-factor challenges and changes, refresh-token reuse, password and
-- address changes, administrators' actions, OAuth links), appended in
-- batches off the request path and never updated. `id` is random and
-- makes a retried batch idempotent; `at` then `id` is the listing
-- order and the keyset cursor. No foreign key: the log outlives the
-- account it names, until `audit.retention_days` purges it. `detail` is
-- a small JSON object of non-secret facts (a reason class, a provider,
-- the flags an administrator changed).

CREATE TABLE audit_log (
    id       TEXT    NOT NULL PRIMARY KEY,
    at       INTEGER NOT NULL,
    kind     TEXT    NOT NULL,
    user_id  TEXT,
    actor_id TEXT,
    email    TEXT,
    ip       TEXT,
    detail   TEXT    NOT NULL
);

CREATE INDEX audit_log_at_id ON audit_log (at, id);
CREATE INDEX audit_log_user_at ON audit_log (user_id, at, id);
CREATE INDEX audit_log_actor_at ON audit_log (actor_id, at, id);
CREATE INDEX audit_log_kind_at ON audit_log (kind, at, id);
CREATE INDEX audit_log_email_at ON audit_log (email, at, id);
