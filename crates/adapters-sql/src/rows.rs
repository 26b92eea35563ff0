//! Rows → domain records, for both SQL backends. Column lists are macros
//! expanding to string literals so queries are assembled with `concat!` at
//! compile time (static SQL, no `format!`), and decoders read by position in
//! that order. The two backends' schemas name and order these columns
//! alike, so one set of lists and decoders serves both; each backend only
//! says how to read a cell of its row type ([`Cells`]).
//!
//! Every value read back is re-validated ([`Email::from_stored`],
//! [`UserId::parse`], …): a corrupt row is reported as
//! [`StoreError::Backend`], never trusted.

use regstack_ports::{
    ChallengeKind, Email, FlowMode, FlowResult, MfaChallenge, OAuthFlow, OAuthIdentity,
    OneTimeToken, PasswordHash, PendingRegistration, RevokeReason, Session, SessionId, StoreError,
    TokenHash, TokenKind, User, UserId,
};

use crate::error::CorruptRow;
use crate::time::{from_db, from_db_opt};

/// The `users` columns in decoding order; `user_cols!(u)` prefixes them for
/// a join.
macro_rules! user_cols {
    () => {
        "id, email, hashed_password, is_active, is_verified, is_superuser, full_name, \
         phone_number, is_mfa_enabled, created_at, updated_at, last_login, \
         tokens_invalidated_after, must_change_password, disabled_reason, disabled_until"
    };
    (u) => {
        "u.id, u.email, u.hashed_password, u.is_active, u.is_verified, u.is_superuser, \
         u.full_name, u.phone_number, u.is_mfa_enabled, u.created_at, u.updated_at, \
         u.last_login, u.tokens_invalidated_after, u.must_change_password, \
         u.disabled_reason, u.disabled_until"
    };
}
pub(crate) use user_cols;

/// The assignment every credential change makes: `tokens_invalidated_after`
/// (the credential epoch a new session is bound to) moves strictly forward —
/// to `now`, or one microsecond past its old value when that is not before
/// `now` (a fixed clock, or instances whose clocks disagree). Strictly, so a
/// sign-in that read the old value can never match it again. `$now` is the
/// placeholder of `now` in the statement.
macro_rules! bump_epoch {
    ($now:literal) => {
        concat!(
            "tokens_invalidated_after = CASE WHEN tokens_invalidated_after >= ",
            $now,
            " THEN tokens_invalidated_after + 1 ELSE ",
            $now,
            " END"
        )
    };
}
pub(crate) use bump_epoch;

/// How many columns [`user_cols!`] lists.
pub(crate) const USER_COLS: usize = 16;

/// The `sessions` columns in decoding order; `session_cols!(s)` prefixes
/// them for a join.
macro_rules! session_cols {
    () => {
        "id, user_id, created_at, last_used_at, expires_at, idle_expires_at, user_agent, ip, \
         revoked_at, revoked_reason"
    };
    (s) => {
        "s.id, s.user_id, s.created_at, s.last_used_at, s.expires_at, s.idle_expires_at, \
         s.user_agent, s.ip, s.revoked_at, s.revoked_reason"
    };
}
pub(crate) use session_cols;

/// The `pending_registrations` columns in decoding order.
macro_rules! pending_cols {
    () => {
        "email, hashed_password, full_name, token_hash, created_at, expires_at"
    };
}
pub(crate) use pending_cols;

/// The `one_time_tokens` columns in decoding order.
macro_rules! token_cols {
    () => {
        "token_hash, kind, user_id, new_email, created_at, expires_at"
    };
}
pub(crate) use token_cols;

/// The `mfa_codes` columns in decoding order.
macro_rules! challenge_cols {
    () => {
        "id, user_id, kind, code_hash, payload, attempts_left, credential_epoch, created_at, \
         expires_at"
    };
}
pub(crate) use challenge_cols;

/// The `oauth_states` columns of a flow as begun, in decoding order.
macro_rules! flow_cols {
    () => {
        "id, provider, pkce_verifier, nonce, mode, linking_user_id, redirect_to, browser_hash, \
         created_at, expires_at"
    };
}
pub(crate) use flow_cols;

/// How many columns [`flow_cols!`] lists: the callback's decision
/// (`result_user_id, result_was_new, result_credential_epoch`) follows
/// them where a statement returns it.
pub(crate) const FLOW_COLS: usize = 10;

/// The `oauth_identities` columns in decoding order.
macro_rules! identity_cols {
    () => {
        "user_id, provider, issuer, subject, email, linked_at, last_used_at"
    };
}
pub(crate) use identity_cols;

/// The typed reads the decoders need, implemented for `SqliteRow` and
/// `PgRow` by [`impl_cells!`] with the backend's own error mapping.
pub trait Cells {
    /// A non-null text column.
    fn text(&self, i: usize) -> Result<String, StoreError>;
    /// A nullable text column.
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError>;
    /// A non-null integer column.
    fn int(&self, i: usize) -> Result<i64, StoreError>;
    /// A nullable integer column.
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError>;
    /// A boolean column (an INTEGER 0/1 in SQLite).
    fn flag(&self, i: usize) -> Result<bool, StoreError>;
    /// A non-null binary column (the migration record's checksums).
    fn bytes(&self, i: usize) -> Result<Vec<u8>, StoreError>;
}

/// `impl Cells for $row`, every read through `sqlx::Row::try_get` and
/// `$map_err`.
macro_rules! impl_cells {
    ($row:ty, $map_err:path) => {
        impl $crate::rows::Cells for $row {
            fn text(&self, i: usize) -> Result<String, regstack_ports::StoreError> {
                sqlx::Row::try_get(self, i).map_err($map_err)
            }
            fn opt_text(&self, i: usize) -> Result<Option<String>, regstack_ports::StoreError> {
                sqlx::Row::try_get(self, i).map_err($map_err)
            }
            fn int(&self, i: usize) -> Result<i64, regstack_ports::StoreError> {
                sqlx::Row::try_get(self, i).map_err($map_err)
            }
            fn opt_int(&self, i: usize) -> Result<Option<i64>, regstack_ports::StoreError> {
                sqlx::Row::try_get(self, i).map_err($map_err)
            }
            fn flag(&self, i: usize) -> Result<bool, regstack_ports::StoreError> {
                sqlx::Row::try_get(self, i).map_err($map_err)
            }
            fn bytes(&self, i: usize) -> Result<Vec<u8>, regstack_ports::StoreError> {
                sqlx::Row::try_get(self, i).map_err($map_err)
            }
        }
    };
}
pub(crate) use impl_cells;

fn email(s: &str) -> Result<Email, CorruptRow> {
    Email::from_stored(s).map_err(|_| CorruptRow("email"))
}

fn user_id(s: &str) -> Result<UserId, CorruptRow> {
    UserId::parse(s).ok_or(CorruptRow("user id"))
}

fn token_hash(s: String) -> Result<TokenHash, CorruptRow> {
    TokenHash::from_hex(s).ok_or(CorruptRow("token hash"))
}

/// Decodes the [`user_cols!`] starting at column `at`.
pub(crate) fn user(row: &impl Cells, at: usize) -> Result<User, StoreError> {
    Ok(User {
        id: user_id(&row.text(at)?)?,
        email: email(&row.text(at + 1)?)?,
        password_hash: row.opt_text(at + 2)?.map(PasswordHash::new),
        is_active: row.flag(at + 3)?,
        is_verified: row.flag(at + 4)?,
        is_superuser: row.flag(at + 5)?,
        full_name: row.opt_text(at + 6)?,
        phone_number: row.opt_text(at + 7)?,
        is_mfa_enabled: row.flag(at + 8)?,
        created_at: from_db(row.int(at + 9)?)?,
        updated_at: from_db(row.int(at + 10)?)?,
        last_login: from_db_opt(row.opt_int(at + 11)?)?,
        tokens_invalidated_after: from_db_opt(row.opt_int(at + 12)?)?,
        must_change_password: row.flag(at + 13)?,
        disabled_reason: row.opt_text(at + 14)?,
        disabled_until: from_db_opt(row.opt_int(at + 15)?)?,
    })
}

/// Decodes the [`session_cols!`] starting at column `at`.
pub(crate) fn session(row: &impl Cells, at: usize) -> Result<Session, StoreError> {
    Ok(Session {
        id: SessionId::parse(&row.text(at)?).ok_or(CorruptRow("session id"))?,
        user_id: user_id(&row.text(at + 1)?)?,
        created_at: from_db(row.int(at + 2)?)?,
        last_used_at: from_db(row.int(at + 3)?)?,
        expires_at: from_db(row.int(at + 4)?)?,
        idle_expires_at: from_db(row.int(at + 5)?)?,
        user_agent: row.opt_text(at + 6)?,
        ip: row.opt_text(at + 7)?,
        revoked_at: from_db_opt(row.opt_int(at + 8)?)?,
        revoked_reason: row.opt_text(at + 9)?.map(|r| RevokeReason::parse(&r)),
    })
}

/// Decodes the [`pending_cols!`].
pub(crate) fn pending(row: &impl Cells) -> Result<PendingRegistration, StoreError> {
    Ok(PendingRegistration {
        email: email(&row.text(0)?)?,
        password_hash: PasswordHash::new(row.text(1)?),
        full_name: row.opt_text(2)?,
        token_hash: token_hash(row.text(3)?)?,
        created_at: from_db(row.int(4)?)?,
        expires_at: from_db(row.int(5)?)?,
    })
}

/// Decodes the [`token_cols!`].
pub(crate) fn token(row: &impl Cells) -> Result<OneTimeToken, StoreError> {
    Ok(OneTimeToken {
        hash: token_hash(row.text(0)?)?,
        kind: TokenKind::parse(&row.text(1)?).ok_or(CorruptRow("token kind"))?,
        user_id: user_id(&row.text(2)?)?,
        new_email: row.opt_text(3)?.map(|e| email(&e)).transpose()?,
        created_at: from_db(row.int(4)?)?,
        expires_at: from_db(row.int(5)?)?,
    })
}

/// Decodes the [`challenge_cols!`].
pub(crate) fn challenge(row: &impl Cells) -> Result<MfaChallenge, StoreError> {
    Ok(MfaChallenge {
        id: token_hash(row.text(0)?)?,
        user_id: user_id(&row.text(1)?)?,
        kind: ChallengeKind::parse(&row.text(2)?).ok_or(CorruptRow("challenge kind"))?,
        code_hash: row.opt_text(3)?.map(token_hash).transpose()?,
        payload: row.opt_text(4)?,
        attempts_left: u32::try_from(row.int(5)?).map_err(|_| CorruptRow("attempts left"))?,
        credential_epoch: from_db_opt(row.opt_int(6)?)?,
        created_at: from_db(row.int(7)?)?,
        expires_at: from_db(row.int(8)?)?,
    })
}

/// A flow's mode as stored: the `mode` column and, for a link, the
/// `linking_user_id` column.
pub(crate) fn flow_mode(mode: &FlowMode) -> (&'static str, Option<&str>) {
    match mode {
        FlowMode::SignIn => ("sign_in", None),
        FlowMode::Link(user) => ("link", Some(user.as_str())),
    }
}

/// Decodes the [`flow_cols!`].
pub(crate) fn flow(row: &impl Cells) -> Result<OAuthFlow, StoreError> {
    let mode = match (row.text(4)?.as_str(), row.opt_text(5)?) {
        ("sign_in", None) => FlowMode::SignIn,
        ("link", Some(user)) => FlowMode::Link(user_id(&user)?),
        _ => return Err(CorruptRow("flow mode").into()),
    };
    Ok(OAuthFlow {
        id: token_hash(row.text(0)?)?,
        provider: row.text(1)?,
        pkce_verifier: row.text(2)?,
        nonce: row.text(3)?,
        mode,
        redirect_to: row.text(6)?,
        browser: token_hash(row.text(7)?)?,
        created_at: from_db(row.int(8)?)?,
        expires_at: from_db(row.int(9)?)?,
    })
}

/// Decodes a completed flow's decision, in the three columns from `at`
/// (`result_user_id, result_was_new, result_credential_epoch`).
pub(crate) fn flow_result(row: &impl Cells, at: usize) -> Result<FlowResult, StoreError> {
    let user = row.opt_text(at)?.ok_or(CorruptRow("flow result user"))?;
    Ok(FlowResult {
        user_id: user_id(&user)?,
        was_new: row.flag(at + 1)?,
        credential_epoch: from_db_opt(row.opt_int(at + 2)?)?,
    })
}

/// Decodes the [`identity_cols!`].
pub(crate) fn identity(row: &impl Cells) -> Result<OAuthIdentity, StoreError> {
    Ok(OAuthIdentity {
        user_id: user_id(&row.text(0)?)?,
        provider: row.text(1)?,
        issuer: row.text(2)?,
        subject: row.text(3)?,
        email: row.opt_text(4)?,
        linked_at: from_db(row.int(5)?)?,
        last_used_at: from_db_opt(row.opt_int(6)?)?,
    })
}
