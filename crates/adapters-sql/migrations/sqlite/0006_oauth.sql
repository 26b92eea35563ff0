-- regstack-rs SQLite schema, version 6: sign-in through other parties
-- (OAuth / OpenID Connect). Table names are regstack's.
--
-- `oauth_states` holds a flow from `start` until the browser redeems it at
-- `/oauth/exchange`, keyed by the SHA-256 of the `state` value in the URL
-- (the raw value never reaches the database). A flow is begun, then
-- claimed by exactly one callback (`claimed`), then completed by it with
-- the callback's decision (the `result_*` columns) and filed under the
-- SHA-256 of a fresh exchange id (`exchange_hash`: the browser redeems
-- the flow by that, never by the `state`), then deleted by the one
-- exchange that redeems it. `expires_at` is the end of the round trip
-- through the provider until the flow completes, and the end of the
-- completion window after; the purge and every read go by it. A flow that
-- links an identity to an account names the account and goes with it.
--
-- `oauth_identities` links an external account to one of ours: the
-- primary key is what the provider guarantees stable, `(issuer, subject)`,
-- never an email; an account holds at most one identity per provider
-- name, which also serves "the account's identities".

CREATE TABLE oauth_states (
    id                      TEXT    NOT NULL PRIMARY KEY,
    provider                TEXT    NOT NULL,
    pkce_verifier           TEXT    NOT NULL,
    nonce                   TEXT    NOT NULL,
    mode                    TEXT    NOT NULL CHECK (mode IN ('sign_in', 'link')),
    linking_user_id         TEXT    REFERENCES users (id) ON DELETE CASCADE,
    redirect_to             TEXT    NOT NULL,
    browser_hash            TEXT    NOT NULL,
    created_at              INTEGER NOT NULL,
    expires_at              INTEGER NOT NULL,
    claimed                 INTEGER NOT NULL DEFAULT 0 CHECK (claimed IN (0, 1)),
    completed               INTEGER NOT NULL DEFAULT 0 CHECK (completed IN (0, 1)),
    result_user_id          TEXT,
    result_was_new          INTEGER CHECK (result_was_new IN (0, 1)),
    result_credential_epoch INTEGER,
    exchange_hash           TEXT UNIQUE,
    CHECK ((mode = 'link') = (linking_user_id IS NOT NULL)),
    CHECK (completed = 0 OR (claimed = 1 AND result_user_id IS NOT NULL
        AND result_was_new IS NOT NULL AND exchange_hash IS NOT NULL))
) STRICT;
CREATE INDEX ix_oauth_states_expires_at ON oauth_states (expires_at);
CREATE INDEX ix_oauth_states_linking_user_id ON oauth_states (linking_user_id);

CREATE TABLE oauth_identities (
    user_id      TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider     TEXT    NOT NULL,
    issuer       TEXT    NOT NULL,
    subject      TEXT    NOT NULL,
    email        TEXT,
    linked_at    INTEGER NOT NULL,
    last_used_at INTEGER,
    PRIMARY KEY (issuer, subject),
    UNIQUE (user_id, provider)
) STRICT;
