//! Fixed instants and ready-made rows for tests.
//!
//! Everything here is deterministic except ids and token hashes, which are
//! random so that rows made by two calls never collide by accident. Time is
//! always an explicit parameter: nothing here reads the wall clock.

use chrono::{DateTime, TimeDelta, Utc};
use regstack_ports::{
    AuditEntry, Email, FlowMode, Invite, InviteId, NewSession, NewUser, OAuthFlow, OAuthIdentity,
    OneTimeToken, PasswordHash, PendingRegistration, SessionId, Timestamp, TokenHash, TokenKind,
    UserId,
};

use crate::hasher::FakeHasher;

/// The password [`password_hash`] is a hash of.
pub const PASSWORD: &str = "correct horse battery staple";

/// The suite's reference instant: 2026-01-01T00:00:00.123456Z. It has a
/// non-zero microsecond part on purpose, so a backend that drops
/// sub-second digits fails the round-trip checks instead of passing by luck.
pub fn t0() -> Timestamp {
    // 1767225600 s is 2026-01-01T00:00:00Z.
    DateTime::<Utc>::from_timestamp_micros(1_767_225_600_123_456)
        .expect("2026-01-01 is representable")
}

/// `t0() + by`.
pub fn at(by: TimeDelta) -> Timestamp {
    t0() + by
}

/// One microsecond: the resolution of every stored instant.
pub fn micro() -> TimeDelta {
    TimeDelta::microseconds(1)
}

/// Parses an address a test wrote, canonicalising it as a flow would.
pub fn email(raw: &str) -> Email {
    Email::parse(raw).unwrap_or_else(|e| panic!("test address {raw:?} is invalid: {e}"))
}

/// A fresh, random token hash (64 lower-case hex digits, the shape `core`
/// produces from SHA-256).
pub fn token_hash() -> TokenHash {
    let hex = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    TokenHash::from_hex(hex).expect("two simple UUIDs are 64 lower-case hex digits")
}

/// What [`FakeHasher`] (at its default cost) stores for `password`. Distinct
/// passwords give distinct hashes, so stores can tell them apart, and a
/// test can sign in with the `FakeHasher` against a row seeded here.
pub fn hash_of(password: &str) -> PasswordHash {
    FakeHasher::default().hash_str(password)
}

/// The hash of [`PASSWORD`].
pub fn password_hash() -> PasswordHash {
    hash_of(PASSWORD)
}

/// A verified, non-admin user with [`password_hash`], created at [`t0`].
pub fn new_user(email_raw: &str) -> NewUser {
    NewUser {
        id: UserId::generate(),
        email: email(email_raw),
        password_hash: Some(password_hash()),
        full_name: None,
        is_verified: true,
        is_superuser: false,
        created_at: t0(),
    }
}

/// A pending registration made at [`t0`] with [`password_hash`].
pub fn pending(email_raw: &str, token: &TokenHash, expires_at: Timestamp) -> PendingRegistration {
    PendingRegistration {
        email: email(email_raw),
        password_hash: password_hash(),
        full_name: None,
        token_hash: token.clone(),
        created_at: t0(),
        expires_at,
    }
}

/// An open invite made at [`t0`] with the code hash `code`, bound to
/// `bound` when given.
pub fn invite(code: &TokenHash, bound: Option<&str>, expires_at: Timestamp) -> Invite {
    Invite {
        id: InviteId::generate(),
        code_hash: code.clone(),
        email: bound.map(email),
        note: None,
        created_by: None,
        created_at: t0(),
        expires_at,
        used_at: None,
        used_by: None,
        revoked_at: None,
    }
}

/// A password-reset token for `user`, issued at [`t0`], with a random hash.
pub fn reset_token(user: &UserId, expires_at: Timestamp) -> OneTimeToken {
    OneTimeToken {
        hash: token_hash(),
        kind: TokenKind::PasswordReset,
        user_id: user.clone(),
        new_email: None,
        created_at: t0(),
        expires_at,
    }
}

/// An email-change token moving `user` to `new_email`, issued at [`t0`],
/// with a random hash.
pub fn email_change_token(user: &UserId, new_email: &str, expires_at: Timestamp) -> OneTimeToken {
    OneTimeToken {
        hash: token_hash(),
        kind: TokenKind::EmailChange,
        user_id: user.clone(),
        new_email: Some(email(new_email)),
        created_at: t0(),
        expires_at,
    }
}

/// A session of `user` with a fresh id, a fresh first refresh token
/// ([`token_hash`]), a user agent and an IP. Its idle end is its absolute
/// end, so only `expires_at` matters unless a test sets
/// `idle_expires_at` itself.
pub fn new_session(user: &UserId, created_at: Timestamp, expires_at: Timestamp) -> NewSession {
    NewSession {
        id: SessionId::generate(),
        user_id: user.clone(),
        created_at,
        expires_at,
        idle_expires_at: expires_at,
        refresh_hash: token_hash(),
        user_agent: Some("regstack-testkit/1.0".to_owned()),
        ip: Some("192.0.2.10".to_owned()),
        credential_epoch: None,
    }
}

/// An OAuth flow of `provider` started at [`t0`], with a fresh id, a fresh
/// browser binding and every other field filled in, so that a round trip
/// shows each of them.
pub fn oauth_flow(provider: &str, mode: FlowMode, expires_at: Timestamp) -> OAuthFlow {
    OAuthFlow {
        id: token_hash(),
        provider: provider.to_owned(),
        pkce_verifier: format!("verifier-{}", uuid::Uuid::new_v4().simple()),
        nonce: format!("nonce-{}", uuid::Uuid::new_v4().simple()),
        mode,
        redirect_to: "/after/sign-in?tab=1".to_owned(),
        browser: token_hash(),
        created_at: t0(),
        expires_at,
    }
}

/// An identity of `provider` for `user`, with the issuer and subject given,
/// an address, linked at [`t0`] and never used since.
pub fn oauth_identity(user: &UserId, provider: &str, issuer: &str, subject: &str) -> OAuthIdentity {
    OAuthIdentity {
        user_id: user.clone(),
        provider: provider.to_owned(),
        issuer: issuer.to_owned(),
        subject: subject.to_owned(),
        email: Some(format!("{subject}@{provider}.example")),
        linked_at: t0(),
        last_used_at: None,
    }
}

/// An audit entry of `kind` at `at`, with a fresh random id and a reason in
/// its detail.
pub fn audit_entry(kind: &str, at: Timestamp) -> AuditEntry {
    AuditEntry {
        id: uuid::Uuid::new_v4().simple().to_string(),
        at,
        kind: kind.to_owned(),
        user_id: Some(UserId::generate()),
        actor_id: None,
        email: Some(email("audited@example.com")),
        ip: Some("192.0.2.1".to_owned()),
        detail: r#"{"reason":"wrong_password"}"#.to_owned(),
    }
}
