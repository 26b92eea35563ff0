-- regstack-rs PostgreSQL schema, version 6 (mirrors
-- migrations/sqlite/0006): sign-in through other parties (OAuth / OpenID
-- Connect). Table names are regstack's.
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
-- name, which also serves "the account's identities". The constraint
-- names are what src/postgres/error.rs reads a refusal by.

CREATE TABLE oauth_states (
    id                      TEXT    NOT NULL,
    provider                TEXT    NOT NULL,
    pkce_verifier           TEXT    NOT NULL,
    nonce                   TEXT    NOT NULL,
    mode                    TEXT    NOT NULL,
    linking_user_id         TEXT,
    redirect_to             TEXT    NOT NULL,
    browser_hash            TEXT    NOT NULL,
    created_at              BIGINT  NOT NULL,
    expires_at              BIGINT  NOT NULL,
    claimed                 BOOLEAN NOT NULL DEFAULT FALSE,
    completed               BOOLEAN NOT NULL DEFAULT FALSE,
    result_user_id          TEXT,
    result_was_new          BOOLEAN,
    result_credential_epoch BIGINT,
    exchange_hash           TEXT,
    CONSTRAINT oauth_states_pkey PRIMARY KEY (id),
    CONSTRAINT oauth_states_mode_check CHECK (mode IN ('sign_in', 'link')),
    CONSTRAINT oauth_states_linking_check
        CHECK ((mode = 'link') = (linking_user_id IS NOT NULL)),
    CONSTRAINT oauth_states_result_check CHECK (NOT completed OR (claimed
        AND result_user_id IS NOT NULL AND result_was_new IS NOT NULL
        AND exchange_hash IS NOT NULL)),
    CONSTRAINT oauth_states_exchange_hash_key UNIQUE (exchange_hash),
    CONSTRAINT oauth_states_linking_user_id_fkey FOREIGN KEY (linking_user_id)
        REFERENCES users (id) ON DELETE CASCADE
);
CREATE INDEX ix_oauth_states_expires_at ON oauth_states (expires_at);
CREATE INDEX ix_oauth_states_linking_user_id ON oauth_states (linking_user_id);

CREATE TABLE oauth_identities (
    user_id      TEXT   NOT NULL,
    provider     TEXT   NOT NULL,
    issuer       TEXT   NOT NULL,
    subject      TEXT   NOT NULL,
    email        TEXT,
    linked_at    BIGINT NOT NULL,
    last_used_at BIGINT,
    CONSTRAINT oauth_identities_pkey PRIMARY KEY (issuer, subject),
    CONSTRAINT oauth_identities_user_id_provider_key UNIQUE (user_id, provider),
    CONSTRAINT oauth_identities_user_id_fkey FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE CASCADE
);
