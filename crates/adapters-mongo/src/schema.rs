//! Collections and indexes. For MongoDB, "migrating" means creating every
//! index idempotently ([`migrate`]); collections appear with their first
//! index. A `regstack_meta` document records the schema version so that
//! `/readyz` and `regstack migrate` can tell a prepared database from an
//! empty one.
//!
//! | collection | index | purpose |
//! |---|---|---|
//! | `users` | `_id` | the user id: `get`, `authenticate`'s join |
//! | `users` | `email_unique` (unique) | sign-in lookup; one account per canonical address |
//! | `users` | `created_at_id` | the admin account list and search, newest first, by offset or cursor |
//! | `pending_registrations` | `email_unique` (unique) | one pending row per address; `put` replaces by it |
//! | `pending_registrations` | `token_hash_unique` (unique) | the verification link |
//! | `pending_registrations` | `expires_at` | `purge_expired` |
//! | `one_time_tokens` | `token_hash_unique` (unique) | reset / email-change links |
//! | `one_time_tokens` | `user_id_kind` | supersede and burn a user's tokens |
//! | `one_time_tokens` | `expires_at` | `purge_expired` |
//! | `sessions` | `_id` | the session id: the per-request `authenticate` |
//! | `sessions` | `user_id_created_at` | `list` (newest first), `revoke_all`, credential changes |
//! | `sessions` | `ends_at` | `purge_expired` (the earliest of expiry, idle end, revocation) |
//! | `login_attempts` | `_id` (the bucket: address, or address and device) | the lockout window of one bucket |
//! | `login_attempts` | `email` | forgetting every bucket of an address (credential changes, deletion) |
//! | `login_attempts` | `at` (multikey) | `purge_expired` |
//! | `rate_limit_hits` | `_id` (the key) | the window of one counter |
//! | `rate_limit_hits` | `at` (multikey) | `purge_expired` |
//! | `mfa_codes` | `_id` (the pending token's hash) | count an attempt, finish once |
//! | `mfa_codes` | `user_id_kind` | a new challenge supersedes the user's older one of its kind |
//! | `mfa_codes` | `expires_at` | `purge_expired` |
//! | `mfa_totp` | `_id` (the user id) | the factor and its last accepted step |
//! | `mfa_backup_codes` | `_id` (the user id) | the user's unspent codes, one array |
//! | `oauth_states` | `_id` (the hash of the flow's `state`) | claim, complete and redeem a flow once |
//! | `oauth_states` | `expires_at` | `purge_expired` |
//! | `oauth_states` | `link_user_id` | account deletion: the account's link flows |
//! | `oauth_states` | `exchange` (the hash of the exchange id) | redeem a completed flow once |
//! | `oauth_identities` | `_id` (an ObjectId, named in the user's `oauth_links`) | unlink, confirm, repair one identity |
//! | `oauth_identities` | `issuer_subject_unique` (unique) | sign-in lookup; one account per external identity |
//! | `oauth_identities` | `user_id_provider_unique` (unique) | one identity per provider and account; an account's identities |
//! | `audit_log` | `at_id` | the audit list and its keyset cursor, the retention purge |
//! | `audit_log` | `user_id_at`, `actor_id_at`, `kind_at`, `email_at` | the audit list filtered by account or kind |
//! | `invites` | `_id` (the invite id) | revoke, release |
//! | `invites` | `code_hash_unique` (unique) | redeem a code once |
//! | `invites` | `created_at_id` | the list, newest first |
//! | `invites` | `expires_at` | `purge_expired` |
//!
//! Every collection whose documents expire also has `expire_at_ttl`, a TTL
//! index on the BSON date `expire_at` (the exact end, rounded up to the
//! millisecond) that reaps documents [`TTL_GRACE`] after they ended. It is
//! a backstop for the server's periodic purge, not the rule:
//! reads compare the exact microsecond fields with the caller's `now`.

use std::time::Duration;

use mongodb::bson::{doc, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use regstack_ports::StoreError;

use crate::docs;
use crate::error::run;

/// Users.
pub(crate) const USERS: &str = "users";
/// Registrations waiting for their address to be proven.
pub(crate) const PENDING: &str = "pending_registrations";
/// Password-reset and email-change tokens.
pub(crate) const TOKENS: &str = "one_time_tokens";
/// Sign-in sessions, each holding its refresh family's live token.
pub(crate) const SESSIONS: &str = "sessions";
/// Where schema version 1 kept every refresh token hash; dropped by
/// [`migrate`] since refresh tokens carry their session id.
const LEGACY_REFRESH_TOKENS: &str = "refresh_tokens";
/// One document per lockout bucket (an address's own, or one of its
/// trusted devices'): its window.
pub(crate) const LOGIN_ATTEMPTS: &str = "login_attempts";
/// One document per key: its rate-limit window.
pub(crate) const RATE_LIMITS: &str = "rate_limit_hits";
/// Second-factor challenges (regstack's `mfa_codes`), by the hash of the
/// pending token.
pub(crate) const MFA_CODES: &str = "mfa_codes";
/// One confirmed TOTP factor per user, `_id` = the user id.
pub(crate) const MFA_TOTP: &str = "mfa_totp";
/// One document per user holding its unspent backup codes (`codes`), `_id`
/// = the user id: replacing them all is one document write.
pub(crate) const MFA_BACKUP_CODES: &str = "mfa_backup_codes";
/// OAuth flows in flight, by the hash of their `state` (regstack's name).
pub(crate) const OAUTH_STATES: &str = "oauth_states";
/// External identities linked to accounts (regstack's name).
pub(crate) const OAUTH_IDENTITIES: &str = "oauth_identities";
/// The audit log, one document per entry.
pub(crate) const AUDIT_LOG: &str = "audit_log";
/// Invitations for invite-only registration, `_id` = the invite id.
pub(crate) const INVITES: &str = "invites";
/// Collections with no index but `_id`, created by [`migrate`] so that a
/// prepared database has every collection before its first write.
const BARE: [&str; 2] = [MFA_TOTP, MFA_BACKUP_CODES];
/// The schema version.
pub(crate) const META: &str = "regstack_meta";

/// Index names the stores hint. SecantusDB's planner picks an index only
/// for a filter on a single field (its explain shows a collection scan for
/// `{token_hash, kind, expires_at}` although `token_hash` is unique), so
/// every lookup and conditional write whose filter has more conditions
/// names its index. On MongoDB the hint is the plan the planner would
/// choose anyway; it also turns a missing index into an error instead of
/// a silent collection scan.
pub(crate) mod hint {
    use mongodb::options::Hint;

    /// The primary key of every collection.
    pub(crate) const ID: &str = "_id_";
    /// `users.email_unique`, `pending_registrations.email_unique`.
    pub(crate) const EMAIL: &str = "email_unique";
    /// `token_hash_unique` of pending registrations and one-time tokens.
    pub(crate) const TOKEN_HASH: &str = "token_hash_unique";
    /// `sessions.ends_at`.
    pub(crate) const ENDS_AT: &str = "ends_at";
    /// `sessions.user_id_created_at`.
    pub(crate) const USER_SESSIONS: &str = "user_id_created_at";
    /// `one_time_tokens.user_id_kind`.
    pub(crate) const USER_TOKENS: &str = "user_id_kind";
    /// `login_attempts.email`.
    pub(crate) const ATTEMPTS_EMAIL: &str = "email";
    /// `mfa_codes.user_id_kind`.
    pub(crate) const USER_CHALLENGES: &str = "user_id_kind";
    /// `oauth_states.link_user_id`.
    pub(crate) const LINK_USER: &str = "link_user_id";
    /// `oauth_states.exchange`.
    pub(crate) const EXCHANGE: &str = "exchange";
    /// `oauth_identities.issuer_subject_unique`.
    pub(crate) const ISSUER_SUBJECT: &str = "issuer_subject_unique";
    /// `oauth_identities.user_id_provider_unique`.
    pub(crate) const USER_PROVIDER: &str = "user_id_provider_unique";

    /// `invites.code_hash_unique`.
    pub(crate) const CODE_HASH: &str = "code_hash_unique";
    /// `users.created_at_id`, `invites.created_at_id`.
    pub(crate) const CREATED_AT_ID: &str = "created_at_id";

    /// The hint naming `index`.
    pub(crate) fn by(index: &str) -> Hint {
        Hint::Name(index.to_owned())
    }
}

/// The version [`migrate`] records. Raise it whenever the index list
/// changes, so `schema_is_current` reports a database that needs
/// `regstack migrate`.
pub const SCHEMA_VERSION: i64 = 8;

/// How long after its exact end a document may linger before the TTL
/// monitor reaps it. A day covers clock skew between the application and
/// the database server many times over, and keeps a revoked or expired
/// session readable (so the refusal can say why) for longer than any
/// access token lives by default.
pub const TTL_GRACE: Duration = Duration::from_secs(24 * 60 * 60);

/// One index as `migrate` creates it.
struct Spec {
    collection: &'static str,
    name: &'static str,
    keys: Document,
    unique: bool,
    ttl: bool,
}

fn index(collection: &'static str, name: &'static str, keys: Document) -> Spec {
    Spec {
        collection,
        name,
        keys,
        unique: false,
        ttl: false,
    }
}

fn unique(collection: &'static str, name: &'static str, keys: Document) -> Spec {
    Spec {
        unique: true,
        ..index(collection, name, keys)
    }
}

fn ttl(collection: &'static str) -> Spec {
    Spec {
        ttl: true,
        ..index(collection, "expire_at_ttl", doc! { "expire_at": 1 })
    }
}

/// Every index this build relies on (the table in the module doc).
fn specs() -> Vec<Spec> {
    vec![
        unique(USERS, "email_unique", doc! { "email": 1 }),
        index(USERS, "created_at_id", doc! { "created_at": -1, "_id": -1 }),
        unique(PENDING, "email_unique", doc! { "email": 1 }),
        unique(PENDING, "token_hash_unique", doc! { "token_hash": 1 }),
        index(PENDING, "expires_at", doc! { "expires_at": 1 }),
        ttl(PENDING),
        unique(TOKENS, "token_hash_unique", doc! { "token_hash": 1 }),
        index(TOKENS, "user_id_kind", doc! { "user_id": 1, "kind": 1 }),
        index(TOKENS, "expires_at", doc! { "expires_at": 1 }),
        ttl(TOKENS),
        index(
            SESSIONS,
            "user_id_created_at",
            doc! { "user_id": 1, "created_at": -1 },
        ),
        index(SESSIONS, "ends_at", doc! { "ends_at": 1 }),
        ttl(SESSIONS),
        index(LOGIN_ATTEMPTS, "email", doc! { "email": 1 }),
        index(LOGIN_ATTEMPTS, "at", doc! { "at": 1 }),
        ttl(LOGIN_ATTEMPTS),
        index(RATE_LIMITS, "at", doc! { "at": 1 }),
        ttl(RATE_LIMITS),
        index(MFA_CODES, "user_id_kind", doc! { "user_id": 1, "kind": 1 }),
        index(MFA_CODES, "expires_at", doc! { "expires_at": 1 }),
        ttl(MFA_CODES),
        index(OAUTH_STATES, "expires_at", doc! { "expires_at": 1 }),
        index(OAUTH_STATES, "link_user_id", doc! { "link_user_id": 1 }),
        // Not unique: documents not yet completed have no `exchange`, and a
        // unique index would count each missing value as one `null`. The
        // value is 256 random bits; two flows never share it.
        index(OAUTH_STATES, "exchange", doc! { "exchange": 1 }),
        ttl(OAUTH_STATES),
        unique(
            OAUTH_IDENTITIES,
            "issuer_subject_unique",
            doc! { "issuer": 1, "subject": 1 },
        ),
        unique(
            OAUTH_IDENTITIES,
            "user_id_provider_unique",
            doc! { "user_id": 1, "provider": 1 },
        ),
        index(AUDIT_LOG, "at_id", doc! { "at": 1, "_id": 1 }),
        index(AUDIT_LOG, "user_id_at", doc! { "user_id": 1, "at": 1 }),
        index(AUDIT_LOG, "actor_id_at", doc! { "actor_id": 1, "at": 1 }),
        index(AUDIT_LOG, "kind_at", doc! { "kind": 1, "at": 1 }),
        index(AUDIT_LOG, "email_at", doc! { "email": 1, "at": 1 }),
        unique(INVITES, "code_hash_unique", doc! { "code_hash": 1 }),
        index(
            INVITES,
            "created_at_id",
            doc! { "created_at": -1, "_id": -1 },
        ),
        index(INVITES, "expires_at", doc! { "expires_at": 1 }),
        ttl(INVITES),
    ]
}

/// The names of every index [`migrate`] creates, by collection (`_id_`
/// left out). For tests and diagnostics.
pub fn index_names() -> Vec<(&'static str, &'static str)> {
    specs()
        .into_iter()
        .map(|s| (s.collection, s.name))
        .collect()
}

/// Creates every index (and so every collection) this build relies on and
/// records [`SCHEMA_VERSION`]. Idempotent: creating an index that exists
/// with the same keys and options is a no-op on the server, so it is safe
/// to run at every start.
pub async fn migrate(db: &Database) -> Result<(), StoreError> {
    let mut by_collection: Vec<(&'static str, Vec<IndexModel>)> = Vec::new();
    for spec in specs() {
        let options = IndexOptions::builder()
            .name(spec.name.to_owned())
            .unique(spec.unique.then_some(true))
            .expire_after(spec.ttl.then_some(TTL_GRACE))
            .build();
        let model = IndexModel::builder()
            .keys(spec.keys)
            .options(options)
            .build();
        match by_collection
            .iter_mut()
            .find(|(c, _)| *c == spec.collection)
        {
            Some((_, models)) => models.push(model),
            None => by_collection.push((spec.collection, vec![model])),
        }
    }
    for (collection, models) in by_collection {
        let coll: Collection<Document> = db.collection(collection);
        run(coll.create_indexes(models)).await?;
    }
    for name in BARE {
        create_collection(db, name).await?;
    }
    // Version 1's table of refresh-token hashes: its tokens carried no
    // session id and cannot be presented any more.
    let legacy = run(db
        .list_collection_names()
        .filter(doc! { "name": LEGACY_REFRESH_TOKENS }))
    .await?;
    if !legacy.is_empty() {
        let coll: Collection<Document> = db.collection(LEGACY_REFRESH_TOKENS);
        run(coll.drop()).await?;
    }
    // `$max`: a newer build's migration is never rolled back by an older
    // one starting up.
    let meta: Collection<Document> = db.collection(META);
    run(meta
        .update_one(
            doc! { "_id": "schema" },
            doc! { "$max": { "version": SCHEMA_VERSION } },
        )
        .upsert(true))
    .await?;
    Ok(())
}

/// Creates a collection unless it exists. Two instances migrating at once
/// may both try: a refusal is fine if the collection is there afterwards.
async fn create_collection(db: &Database, name: &str) -> Result<(), StoreError> {
    let exists = |names: Vec<String>| names.iter().any(|n| n == name);
    if exists(run(db.list_collection_names().filter(doc! { "name": name })).await?) {
        return Ok(());
    }
    match run(db.create_collection(name)).await {
        Ok(()) => Ok(()),
        Err(e) => {
            if exists(run(db.list_collection_names().filter(doc! { "name": name })).await?) {
                Ok(())
            } else {
                Err(e)
            }
        }
    }
}

/// The schema version [`migrate`] last recorded in `db` (`None`: never
/// migrated). Only reads; `regstack migrate --dry-run` compares it with
/// [`SCHEMA_VERSION`].
pub async fn recorded_version(db: &Database) -> Result<Option<i64>, StoreError> {
    let meta: Collection<Document> = db.collection(META);
    match run(meta.find_one(doc! { "_id": "schema" })).await? {
        Some(d) => Ok(Some(docs::int(&d, "version")?)),
        None => Ok(None),
    }
}

/// Whether [`migrate`] of this build (or a later one) has run.
pub(crate) async fn is_current(meta: &Collection<Document>) -> Result<bool, StoreError> {
    let Some(d) = run(meta.find_one(doc! { "_id": "schema" })).await? else {
        return Ok(false);
    };
    Ok(docs::int(&d, "version")? >= SCHEMA_VERSION)
}
