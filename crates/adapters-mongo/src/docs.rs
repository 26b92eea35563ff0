//! Documents ↔ domain records. Field names follow the SQL columns (and so
//! regstack's, so a regstack database can be adopted by a migration); ids
//! are the `_id` where the record has one
//! of its own (users, sessions), instants are `Int64` microseconds
//! (`time.rs`), absent optional values are stored as explicit `null`.
//!
//! Every value read back is re-validated ([`Email::from_stored`],
//! [`UserId::parse`], …): a corrupt document is reported as
//! [`StoreError::Backend`](regstack_ports::StoreError::Backend), never
//! trusted.

use mongodb::bson::oid::ObjectId;
use mongodb::bson::{doc, Bson, Document};
use regstack_ports::{
    ChallengeKind, Email, FlowMode, FlowResult, MfaChallenge, OAuthFlow, OAuthIdentity,
    OneTimeToken, PasswordHash, PendingRegistration, RevokeReason, Session, SessionId, Timestamp,
    TokenHash, TokenKind, User, UserId,
};

use crate::error::CorruptRow;
use crate::time::{from_db, to_db, ttl_date};

// ---------------------------------------------------------------------------
// Field readers

/// A field's value; `None` when the field is missing or `null`.
fn value<'a>(d: &'a Document, key: &str) -> Option<&'a Bson> {
    d.get(key).filter(|v| !matches!(v, Bson::Null))
}

pub(crate) fn string<'a>(d: &'a Document, key: &'static str) -> Result<&'a str, CorruptRow> {
    match value(d, key) {
        Some(Bson::String(s)) => Ok(s),
        _ => Err(CorruptRow(key)),
    }
}

pub(crate) fn opt_string(d: &Document, key: &'static str) -> Result<Option<String>, CorruptRow> {
    match value(d, key) {
        None => Ok(None),
        Some(Bson::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(CorruptRow(key)),
    }
}

fn as_int(v: &Bson) -> Option<i64> {
    match v {
        Bson::Int64(n) => Some(*n),
        Bson::Int32(n) => Some(i64::from(*n)),
        _ => None,
    }
}

pub(crate) fn int(d: &Document, key: &'static str) -> Result<i64, CorruptRow> {
    value(d, key).and_then(as_int).ok_or(CorruptRow(key))
}

pub(crate) fn opt_int(d: &Document, key: &'static str) -> Result<Option<i64>, CorruptRow> {
    value(d, key)
        .map(|v| as_int(v).ok_or(CorruptRow(key)))
        .transpose()
}

fn boolean(d: &Document, key: &'static str) -> Result<bool, CorruptRow> {
    match value(d, key) {
        Some(Bson::Boolean(b)) => Ok(*b),
        _ => Err(CorruptRow(key)),
    }
}

pub(crate) fn instant(d: &Document, key: &'static str) -> Result<Timestamp, CorruptRow> {
    from_db(int(d, key)?)
}

pub(crate) fn opt_instant(
    d: &Document,
    key: &'static str,
) -> Result<Option<Timestamp>, CorruptRow> {
    opt_int(d, key)?.map(from_db).transpose()
}

/// An array of instants (the lockout and rate-limit windows); a missing
/// field is an empty window.
pub(crate) fn int_array(d: &Document, key: &'static str) -> Result<Vec<i64>, CorruptRow> {
    match value(d, key) {
        None => Ok(Vec::new()),
        Some(Bson::Array(items)) => items
            .iter()
            .map(|v| as_int(v).ok_or(CorruptRow(key)))
            .collect(),
        Some(_) => Err(CorruptRow(key)),
    }
}

fn email(d: &Document, key: &'static str) -> Result<Email, CorruptRow> {
    Email::from_stored(string(d, key)?).map_err(|_| CorruptRow(key))
}

pub(crate) fn user_id(d: &Document, key: &'static str) -> Result<UserId, CorruptRow> {
    UserId::parse(string(d, key)?).ok_or(CorruptRow(key))
}

pub(crate) fn session_id(d: &Document, key: &'static str) -> Result<SessionId, CorruptRow> {
    SessionId::parse(string(d, key)?).ok_or(CorruptRow(key))
}

fn token_hash(d: &Document, key: &'static str) -> Result<TokenHash, CorruptRow> {
    TokenHash::from_hex(string(d, key)?.to_owned()).ok_or(CorruptRow(key))
}

/// An optional instant as stored.
pub(crate) fn opt_micros(t: Option<Timestamp>) -> Bson {
    t.map_or(Bson::Null, |t| Bson::Int64(to_db(t)))
}

// ---------------------------------------------------------------------------
// Users

/// The `users` document of a record.
pub(crate) fn user_doc(u: &User) -> Document {
    doc! {
        "_id": u.id.as_str(),
        "email": u.email.as_str(),
        "hashed_password": u.password_hash.as_ref().map(PasswordHash::as_str),
        "is_active": u.is_active,
        "is_verified": u.is_verified,
        "is_superuser": u.is_superuser,
        "full_name": u.full_name.as_deref(),
        "phone_number": u.phone_number.as_deref(),
        "is_mfa_enabled": u.is_mfa_enabled,
        "created_at": to_db(u.created_at),
        "updated_at": to_db(u.updated_at),
        "last_login": opt_micros(u.last_login),
        "tokens_invalidated_after": opt_micros(u.tokens_invalidated_after),
        "must_change_password": u.must_change_password,
        "disabled_reason": u.disabled_reason.as_deref(),
        "disabled_until": opt_micros(u.disabled_until),
    }
}

/// Reads a `users` document.
pub(crate) fn user(d: &Document) -> Result<User, CorruptRow> {
    Ok(User {
        id: user_id(d, "_id")?,
        email: email(d, "email")?,
        password_hash: opt_string(d, "hashed_password")?.map(PasswordHash::new),
        is_active: boolean(d, "is_active")?,
        is_verified: boolean(d, "is_verified")?,
        is_superuser: boolean(d, "is_superuser")?,
        full_name: opt_string(d, "full_name")?,
        phone_number: opt_string(d, "phone_number")?,
        is_mfa_enabled: boolean(d, "is_mfa_enabled")?,
        created_at: instant(d, "created_at")?,
        updated_at: instant(d, "updated_at")?,
        last_login: opt_instant(d, "last_login")?,
        tokens_invalidated_after: opt_instant(d, "tokens_invalidated_after")?,
        // Written since schema version 4; a user from before has none and
        // was never asked to change its password.
        must_change_password: match value(d, "must_change_password") {
            None => false,
            Some(_) => boolean(d, "must_change_password")?,
        },
        // Written since timed disablings; a document from before was
        // never disabled with a reason or an end.
        disabled_reason: opt_string(d, "disabled_reason")?,
        disabled_until: opt_instant(d, "disabled_until")?,
    })
}

// ---------------------------------------------------------------------------
// Pending registrations

/// The `pending_registrations` document of a record (without `_id`: the
/// server assigns one, and a replacement keeps it).
pub(crate) fn pending_doc(p: &PendingRegistration) -> Document {
    let expires_at = to_db(p.expires_at);
    doc! {
        "email": p.email.as_str(),
        "hashed_password": p.password_hash.as_str(),
        "full_name": p.full_name.as_deref(),
        "token_hash": p.token_hash.as_str(),
        "created_at": to_db(p.created_at),
        "expires_at": expires_at,
        "expire_at": ttl_date(expires_at),
    }
}

/// Reads a `pending_registrations` document.
pub(crate) fn pending(d: &Document) -> Result<PendingRegistration, CorruptRow> {
    Ok(PendingRegistration {
        email: email(d, "email")?,
        password_hash: PasswordHash::new(string(d, "hashed_password")?.to_owned()),
        full_name: opt_string(d, "full_name")?,
        token_hash: token_hash(d, "token_hash")?,
        created_at: instant(d, "created_at")?,
        expires_at: instant(d, "expires_at")?,
    })
}

// ---------------------------------------------------------------------------
// One-time tokens

/// The `one_time_tokens` document of a record (the caller adds `_id`).
pub(crate) fn token_doc(t: &OneTimeToken) -> Document {
    let expires_at = to_db(t.expires_at);
    doc! {
        "token_hash": t.hash.as_str(),
        "kind": t.kind.as_str(),
        "user_id": t.user_id.as_str(),
        "new_email": t.new_email.as_ref().map(Email::as_str),
        "created_at": to_db(t.created_at),
        "expires_at": expires_at,
        "expire_at": ttl_date(expires_at),
    }
}

/// Reads a `one_time_tokens` document.
pub(crate) fn token(d: &Document) -> Result<OneTimeToken, CorruptRow> {
    Ok(OneTimeToken {
        hash: token_hash(d, "token_hash")?,
        kind: TokenKind::parse(string(d, "kind")?).ok_or(CorruptRow("kind"))?,
        user_id: user_id(d, "user_id")?,
        new_email: match value(d, "new_email") {
            None => None,
            Some(_) => Some(email(d, "new_email")?),
        },
        created_at: instant(d, "created_at")?,
        expires_at: instant(d, "expires_at")?,
    })
}

// ---------------------------------------------------------------------------
// Sessions

/// Reads a `sessions` document. The refresh-family fields
/// (`refresh_current`, …) stay inside this crate.
pub(crate) fn session(d: &Document) -> Result<Session, CorruptRow> {
    Ok(Session {
        id: session_id(d, "_id")?,
        user_id: user_id(d, "user_id")?,
        created_at: instant(d, "created_at")?,
        last_used_at: instant(d, "last_used_at")?,
        expires_at: instant(d, "expires_at")?,
        idle_expires_at: instant(d, "idle_expires_at")?,
        user_agent: opt_string(d, "user_agent")?,
        ip: opt_string(d, "ip")?,
        revoked_at: opt_instant(d, "revoked_at")?,
        revoked_reason: opt_string(d, "revoked_reason")?.map(|r| RevokeReason::parse(&r)),
    })
}

// ---------------------------------------------------------------------------
// Second-factor challenges

/// The `mfa_codes` document of a challenge (the caller adds the field that
/// orders superseding, `opened`).
pub(crate) fn challenge_doc(c: &MfaChallenge) -> Document {
    let expires_at = to_db(c.expires_at);
    doc! {
        "_id": c.id.as_str(),
        "user_id": c.user_id.as_str(),
        "kind": c.kind.as_str(),
        "code_hash": c.code_hash.as_ref().map(TokenHash::as_str),
        "payload": c.payload.as_deref(),
        "attempts_left": i64::from(c.attempts_left),
        "credential_epoch": opt_micros(c.credential_epoch),
        "created_at": to_db(c.created_at),
        "expires_at": expires_at,
        "expire_at": ttl_date(expires_at),
    }
}

/// Reads an `mfa_codes` document.
pub(crate) fn challenge(d: &Document) -> Result<MfaChallenge, CorruptRow> {
    Ok(MfaChallenge {
        id: token_hash(d, "_id")?,
        user_id: user_id(d, "user_id")?,
        kind: ChallengeKind::parse(string(d, "kind")?).ok_or(CorruptRow("kind"))?,
        code_hash: match value(d, "code_hash") {
            None => None,
            Some(_) => Some(token_hash(d, "code_hash")?),
        },
        payload: opt_string(d, "payload")?,
        attempts_left: u32::try_from(int(d, "attempts_left")?)
            .map_err(|_| CorruptRow("attempts_left"))?,
        credential_epoch: opt_instant(d, "credential_epoch")?,
        created_at: instant(d, "created_at")?,
        expires_at: instant(d, "expires_at")?,
    })
}

// ---------------------------------------------------------------------------
// OAuth flows

/// `mode` of a sign-in flow.
const MODE_SIGN_IN: &str = "sign_in";
/// `mode` of a link flow; its account is in `link_user_id`.
const MODE_LINK: &str = "link";

/// The `oauth_states` document of a flow that `begin` records: not yet
/// claimed, no result.
pub(crate) fn flow_doc(f: &OAuthFlow) -> Document {
    let expires_at = to_db(f.expires_at);
    let (mode, link_user) = match &f.mode {
        FlowMode::SignIn => (MODE_SIGN_IN, None),
        FlowMode::Link(user) => (MODE_LINK, Some(user.as_str())),
    };
    doc! {
        "_id": f.id.as_str(),
        "provider": &f.provider,
        "pkce_verifier": &f.pkce_verifier,
        "nonce": &f.nonce,
        "mode": mode,
        "link_user_id": link_user,
        "redirect_to": &f.redirect_to,
        "browser": f.browser.as_str(),
        "created_at": to_db(f.created_at),
        "expires_at": expires_at,
        "expire_at": ttl_date(expires_at),
        "claimed": false,
        "result": Bson::Null,
    }
}

/// Reads an `oauth_states` document's flow (its result, if any, is
/// [`flow_result`]'s).
pub(crate) fn flow(d: &Document) -> Result<OAuthFlow, CorruptRow> {
    Ok(OAuthFlow {
        id: token_hash(d, "_id")?,
        provider: string(d, "provider")?.to_owned(),
        pkce_verifier: string(d, "pkce_verifier")?.to_owned(),
        nonce: string(d, "nonce")?.to_owned(),
        mode: match string(d, "mode")? {
            MODE_SIGN_IN => FlowMode::SignIn,
            MODE_LINK => FlowMode::Link(user_id(d, "link_user_id")?),
            _ => return Err(CorruptRow("mode")),
        },
        redirect_to: string(d, "redirect_to")?.to_owned(),
        browser: token_hash(d, "browser")?,
        created_at: instant(d, "created_at")?,
        expires_at: instant(d, "expires_at")?,
    })
}

/// The `result` sub-document `complete` writes.
pub(crate) fn flow_result_doc(r: &FlowResult) -> Document {
    doc! {
        "user_id": r.user_id.as_str(),
        "was_new": r.was_new,
        "credential_epoch": opt_micros(r.credential_epoch),
    }
}

/// Reads the `result` of a completed `oauth_states` document.
pub(crate) fn flow_result(d: &Document) -> Result<FlowResult, CorruptRow> {
    let r = match value(d, "result") {
        Some(Bson::Document(r)) => r,
        _ => return Err(CorruptRow("result")),
    };
    Ok(FlowResult {
        user_id: user_id(r, "user_id")?,
        was_new: boolean(r, "was_new")?,
        credential_epoch: opt_instant(r, "credential_epoch")?,
    })
}

// ---------------------------------------------------------------------------
// OAuth identities

/// The `oauth_identities` document of an identity, under the id `link`
/// (the value the user document's `oauth_links` names it by) and in
/// `state` (`oauth.rs` says what the states mean).
pub(crate) fn identity_doc(i: &OAuthIdentity, link: ObjectId, state: &str) -> Document {
    doc! {
        "_id": link,
        "user_id": i.user_id.as_str(),
        "provider": &i.provider,
        "issuer": &i.issuer,
        "subject": &i.subject,
        "email": i.email.as_deref(),
        "linked_at": to_db(i.linked_at),
        "last_used_at": opt_micros(i.last_used_at),
        "state": state,
    }
}

/// The id of an `oauth_identities` document.
pub(crate) fn link_id(d: &Document) -> Result<ObjectId, CorruptRow> {
    match value(d, "_id") {
        Some(Bson::ObjectId(id)) => Ok(*id),
        _ => Err(CorruptRow("_id")),
    }
}

/// Reads an `oauth_identities` document.
pub(crate) fn identity(d: &Document) -> Result<OAuthIdentity, CorruptRow> {
    Ok(OAuthIdentity {
        user_id: user_id(d, "user_id")?,
        provider: string(d, "provider")?.to_owned(),
        issuer: string(d, "issuer")?.to_owned(),
        subject: string(d, "subject")?.to_owned(),
        email: opt_string(d, "email")?,
        linked_at: instant(d, "linked_at")?,
        last_used_at: opt_instant(d, "last_used_at")?,
    })
}
