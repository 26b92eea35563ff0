//! Domain newtypes and records. Parse, don't validate: a value of one of
//! these types has already passed its checks.

use std::fmt;

use crate::clock::Timestamp;

/// Why a string is not an acceptable email address. The text is shown to
/// the user in a 422 body, so it says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidEmail(pub &'static str);

/// An email address in canonical form: trimmed, Unicode NFC, lower-cased as
/// a whole (`Alice@Example.COM` is `alice@example.com`: one account, one
/// lockout counter), and only then checked — syntactically valid,
/// at most 254 bytes. The one key for storage, lookup, uniqueness, lockout
/// and rate limits.
///
/// The order matters: lower-casing can lengthen a string or change its
/// syntax ("İ" becomes "i" + U+0307), so a check made before it could pass
/// an address whose stored form later fails to read back; and without NFC
/// the precomposed and decomposed spellings of one address ("é" and
/// "e" + U+0301) would be two accounts.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Email(String);

impl Email {
    /// Longest address SMTP can carry (RFC 5321 path limit less brackets).
    pub const MAX_LEN: usize = 254;

    /// Canonicalises and validates an address typed by a user.
    pub fn parse(raw: &str) -> Result<Self, InvalidEmail> {
        use unicode_normalization::UnicodeNormalization;
        let nfc: String = raw.trim().nfc().collect();
        let canonical: String = nfc.to_lowercase().nfc().collect();
        let trimmed = canonical.as_str();
        if trimmed.is_empty() {
            return Err(InvalidEmail("An email address cannot be empty."));
        }
        if trimmed.chars().any(|c| c.is_control()) {
            return Err(InvalidEmail(
                "An email address cannot contain control characters.",
            ));
        }
        if trimmed.len() > Self::MAX_LEN {
            return Err(InvalidEmail("The email address is too long."));
        }
        let Some((local, domain)) = trimmed.rsplit_once('@') else {
            return Err(InvalidEmail("An email address must have an @-sign."));
        };
        if local.is_empty() {
            return Err(InvalidEmail("There must be something before the @-sign."));
        }
        if domain.is_empty() {
            return Err(InvalidEmail("There must be something after the @-sign."));
        }
        // A deliverable domain has a dot and no empty labels; bare hosts and
        // IP literals are not accepted for accounts (as regstack).
        if !domain.contains('.') || domain.split('.').any(str::is_empty) || domain.starts_with('[')
        {
            return Err(InvalidEmail(
                "The part after the @-sign is not valid. It should have a period.",
            ));
        }
        if !email_address::EmailAddress::is_valid(trimmed) || trimmed.contains(' ') {
            return Err(InvalidEmail("The email address is not valid."));
        }
        Ok(Self(canonical))
    }

    /// Rebuilds an address read back from a store, where it was written in
    /// canonical form. Skips nothing: a corrupt row is reported, not trusted.
    pub fn from_stored(stored: &str) -> Result<Self, InvalidEmail> {
        Self::parse(stored)
    }

    /// The canonical string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.0)
    }
}

macro_rules! opaque_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
        pub struct $name(String);

        impl $name {
            /// A fresh random id: 32 lower-case hex digits (a UUIDv4 without
            /// dashes, as regstack's SQL backend writes them).
            pub fn generate() -> Self {
                Self(uuid::Uuid::new_v4().simple().to_string())
            }
            /// Accepts an id from a URL or a store. Ids are opaque; only the
            /// shape is checked so a hostile value cannot reach a query as
            /// anything but a short ASCII string.
            pub fn parse(raw: &str) -> Option<Self> {
                let ok = !raw.is_empty()
                    && raw.len() <= 64
                    && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                ok.then(|| Self(raw.to_owned()))
            }
            /// The id as stored and sent.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

opaque_id!(
    /// Identifies a user for its whole life; never reused, never an email.
    UserId
);
opaque_id!(
    /// Names one invitation (what administrators list and revoke by); not
    /// the code, which is a secret of its own.
    InviteId
);
opaque_id!(
    /// Identifies one sign-in session; access tokens carry it as `sid`.
    SessionId
);
opaque_id!(
    /// Names a device that signed in to an account before: the nonce of
    /// its device cookie, which `core` hands out on a successful sign-in
    /// and recognises only under its MAC (so a stranger's failures count
    /// apart from the owner's browser). Not a secret
    /// on its own — without the MAC it proves nothing — but no more
    /// predictable than any other id here.
    DeviceId
);

/// The SHA-256 of a one-time token, as 64 lower-case hex digits. Stores see
/// only this; the raw token exists in the mail and in the user's hands.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct TokenHash(String);

impl TokenHash {
    /// Wraps a digest computed by `core`. Only shape is checked.
    pub fn from_hex(hex: String) -> Option<Self> {
        (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then_some(Self(hex))
    }
    /// The hex digest.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A PHC-format password hash (`$argon2id$v=19$…`). Not a secret in the
/// strict sense, but an offline-attack target: `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps a PHC string produced by a hasher or read from a store.
    pub fn new(phc: String) -> Self {
        Self(phc)
    }
    /// The PHC string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash([redacted])")
    }
}

/// A user account as stored. Field names follow regstack's `users` table so
/// the public projection can be built field for field.
#[derive(Clone, Debug, PartialEq)]
pub struct User {
    /// Stable id.
    pub id: UserId,
    /// Canonical address; unique.
    pub email: Email,
    /// `None` for accounts that sign in only through other means (OAuth).
    pub password_hash: Option<PasswordHash>,
    /// False once disabled by an administrator.
    pub is_active: bool,
    /// True once the address was proven.
    pub is_verified: bool,
    /// Administrator.
    pub is_superuser: bool,
    /// Display name, at most 200 characters.
    pub full_name: Option<String>,
    /// E.164 number of the SMS second factor: set only by
    /// [`MfaStore::set_phone`](crate::MfaStore::set_phone) after the number
    /// proved itself, so its presence *is* the SMS factor.
    pub phone_number: Option<String>,
    /// True exactly when the account has a confirmed TOTP factor or a
    /// phone: a cached answer to "must sign-in ask for a second factor",
    /// kept in step by the [`MfaStore`](crate::MfaStore) operations that
    /// add or remove a factor, in the same atomic step.
    pub is_mfa_enabled: bool,
    /// The next sign-in must set a new password before anything else. Set
    /// by an administrator, the CLI or the host; cleared by every password
    /// change and reset, in the same step that changes the hash.
    pub must_change_password: bool,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change to the row.
    pub updated_at: Timestamp,
    /// Last successful sign-in.
    pub last_login: Option<Timestamp>,
    /// When the credentials last changed (password change or reset, email
    /// change): every session started before is dead. It is also the
    /// account's *credential epoch*: every store moves it strictly forward
    /// on each change (to `now`, or one microsecond past its old value when
    /// clocks disagree), so a sign-in that read it together with the
    /// password can start its session only if it is still the same value
    /// ([`NewSession::credential_epoch`]).
    pub tokens_invalidated_after: Option<Timestamp>,
    /// Why an administrator disabled the account: for administrators only
    /// (the owner is told just that the account is disabled). Set only
    /// while disabled; re-enabling clears it.
    pub disabled_reason: Option<String>,
    /// The instant a disabling ends by itself: disabled while `now` is
    /// before it, active from it on ([`Self::is_active_at`]). `None` with
    /// `is_active == false` is "until an administrator enables it". Set
    /// only while disabled; re-enabling (by hand or by
    /// [`UserStore::reenable_expired`](crate::UserStore::reenable_expired))
    /// clears it.
    pub disabled_until: Option<Timestamp>,
}

impl User {
    /// Whether the account may be used at `now`: not disabled, or disabled
    /// only until an instant at or before `now`. Every decision about an
    /// account's activity asks this rather than reading [`Self::is_active`]
    /// — a timed disabling ends on time whether or not housekeeping has
    /// written the re-enabling yet.
    pub fn is_active_at(&self, now: Timestamp) -> bool {
        self.is_active || self.disabled_until.is_some_and(|until| until <= now)
    }

    /// The account as it stands at `now`: a timed disabling that has ended
    /// reads as enabled, without reason or end — what
    /// [`UserStore::reenable_expired`](crate::UserStore::reenable_expired)
    /// will write. For answers that show the flags (a stored row may lag
    /// behind until housekeeping runs).
    #[must_use]
    pub fn as_of(mut self, now: Timestamp) -> Self {
        if !self.is_active && self.is_active_at(now) {
            self.is_active = true;
            self.disabled_reason = None;
            self.disabled_until = None;
        }
        self
    }

    /// The value a credential change gives [`Self::tokens_invalidated_after`]:
    /// `now`, or one microsecond past the old value when that is not
    /// before `now`. The epoch only ever moves strictly forward, so a
    /// sign-in that read the old one can never match it again — even under
    /// a fixed test clock or instances whose clocks disagree. (The SQL and
    /// MongoDB stores compute the same in their update statements.)
    pub fn next_credential_epoch(&self, now: Timestamp) -> Timestamp {
        match self.tokens_invalidated_after {
            Some(old) if old >= now => old + chrono::TimeDelta::microseconds(1),
            _ => now,
        }
    }
}

/// What a flow hands to [`UserStore::insert`](crate::UserStore::insert).
#[derive(Clone, Debug)]
pub struct NewUser {
    /// Id chosen by the flow.
    pub id: UserId,
    /// Canonical address.
    pub email: Email,
    /// PHC hash, if the account has a password.
    pub password_hash: Option<PasswordHash>,
    /// Display name.
    pub full_name: Option<String>,
    /// Whether the address is already proven.
    pub is_verified: bool,
    /// Administrator.
    pub is_superuser: bool,
    /// Creation time (also `updated_at`).
    pub created_at: Timestamp,
}

impl NewUser {
    /// The account as a store records it on creation: active, no second
    /// factor, no flag, never signed in, `updated_at` = `created_at`.
    /// Every store builds its row from this, so they agree on what a new
    /// account is.
    pub fn into_user(self) -> User {
        User {
            id: self.id,
            email: self.email,
            password_hash: self.password_hash,
            is_active: true,
            is_verified: self.is_verified,
            is_superuser: self.is_superuser,
            full_name: self.full_name,
            phone_number: None,
            is_mfa_enabled: false,
            must_change_password: false,
            created_at: self.created_at,
            updated_at: self.created_at,
            last_login: None,
            tokens_invalidated_after: None,
            disabled_reason: None,
            disabled_until: None,
        }
    }
}

/// A registration waiting for its address to be proven. At most one per
/// email: a new one replaces the old, and the old link stops working.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingRegistration {
    /// Canonical address; unique among pending rows.
    pub email: Email,
    /// Hash of the chosen password, computed at registration.
    pub password_hash: PasswordHash,
    /// Display name.
    pub full_name: Option<String>,
    /// Hash of the verification token mailed out.
    pub token_hash: TokenHash,
    /// When the registration was (last) made.
    pub created_at: Timestamp,
    /// After this instant the link is dead and the row may be purged.
    pub expires_at: Timestamp,
}

/// Which purpose a one-time token serves. A token is looked up together
/// with its kind, so one kind can never be spent as another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// `POST /reset-password`.
    PasswordReset,
    /// `POST /confirm-email-change`.
    EmailChange,
    /// `POST /revert-email-change`: the link mailed to the *old* address
    /// of an email change; `new_email` holds the address to restore. Never
    /// superseded by a newer one and kept through credential changes (an
    /// intruder's password or address change must not kill the owner's
    /// way back); see [`UserStore::revert_email_change`](crate::UserStore::revert_email_change).
    EmailChangeRevert,
}

impl TokenKind {
    /// The name stored in the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PasswordReset => "password_reset",
            Self::EmailChange => "email_change",
            Self::EmailChangeRevert => "email_change_revert",
        }
    }
    /// Reads a stored kind.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "password_reset" => Some(Self::PasswordReset),
            "email_change" => Some(Self::EmailChange),
            "email_change_revert" => Some(Self::EmailChangeRevert),
            _ => None,
        }
    }
}

/// A stored one-time token (password reset or email change).
#[derive(Clone, Debug, PartialEq)]
pub struct OneTimeToken {
    /// Hash of the raw token.
    pub hash: TokenHash,
    /// Purpose.
    pub kind: TokenKind,
    /// Whose account it acts on.
    pub user_id: UserId,
    /// For email change: the address to switch to.
    pub new_email: Option<Email>,
    /// Issue time.
    pub created_at: Timestamp,
    /// Dead from this instant on.
    pub expires_at: Timestamp,
}

/// Why a session ended. Stored, so that a request with a dead token gets the
/// same answer regstack gives for the same cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RevokeReason {
    /// The user signed out of this session.
    Logout,
    /// The user signed out everywhere.
    LogoutAll,
    /// The password was changed.
    PasswordChanged,
    /// The password was reset through a mailed link.
    PasswordReset,
    /// The email address was changed.
    EmailChanged,
    /// An administrator disabled the account.
    Disabled,
    /// A spent refresh token was presented again (theft).
    RefreshReuse,
    /// The user or an administrator revoked this one session.
    Revoked,
    /// A second factor was added or removed: every other session ends, so
    /// a session started without the new factor (or with a removed one)
    /// does not outlive the change.
    FactorChanged,
    /// The account was flagged to set a new password before anything else
    /// (an administrator suspecting it compromised): no session of the old
    /// password lives on.
    PasswordChangeRequired,
}

impl RevokeReason {
    /// The name stored in the `revoked_reason` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::LogoutAll => "logout_all",
            Self::PasswordChanged => "password_changed",
            Self::PasswordReset => "password_reset",
            Self::EmailChanged => "email_changed",
            Self::Disabled => "disabled",
            Self::RefreshReuse => "refresh_reuse",
            Self::Revoked => "revoked",
            Self::FactorChanged => "factor_changed",
            Self::PasswordChangeRequired => "password_change_required",
        }
    }
    /// Reads a stored reason; unknown text reads as [`Self::Revoked`].
    pub fn parse(s: &str) -> Self {
        match s {
            "logout" => Self::Logout,
            "logout_all" => Self::LogoutAll,
            "password_changed" => Self::PasswordChanged,
            "password_reset" => Self::PasswordReset,
            "email_changed" => Self::EmailChanged,
            "disabled" => Self::Disabled,
            "refresh_reuse" => Self::RefreshReuse,
            "factor_changed" => Self::FactorChanged,
            "password_change_required" => Self::PasswordChangeRequired,
            _ => Self::Revoked,
        }
    }
    /// Whether this reason is a bulk invalidation (password, email, …)
    /// rather than the holder signing out.
    pub fn is_bulk(self) -> bool {
        matches!(
            self,
            Self::PasswordChanged
                | Self::PasswordReset
                | Self::EmailChanged
                | Self::LogoutAll
                | Self::FactorChanged
                | Self::PasswordChangeRequired
        )
    }
}

/// A sign-in session: what an access token's `sid` points at, and the
/// family of refresh tokens that keeps it going. One session per sign-in.
#[derive(Clone, Debug, PartialEq)]
pub struct Session {
    /// Id carried in tokens.
    pub id: SessionId,
    /// Owner.
    pub user_id: UserId,
    /// Sign-in time.
    pub created_at: Timestamp,
    /// Last time a token of this session was refreshed.
    pub last_used_at: Timestamp,
    /// Hard end of the session, whatever happens (absolute lifetime; never
    /// extended by rotation).
    pub expires_at: Timestamp,
    /// End of the session unless it is refreshed before (idle lifetime;
    /// pushed forward by each rotation, never past `expires_at`).
    pub idle_expires_at: Timestamp,
    /// Client's user agent at sign-in (truncated).
    pub user_agent: Option<String>,
    /// Client IP at sign-in.
    pub ip: Option<String>,
    /// Set once revoked.
    pub revoked_at: Option<Timestamp>,
    /// Why it was revoked.
    pub revoked_reason: Option<RevokeReason>,
}

/// What a flow hands to [`SessionStore::start`](crate::SessionStore::start).
#[derive(Clone, Debug)]
pub struct NewSession {
    /// Fresh id.
    pub id: SessionId,
    /// Owner.
    pub user_id: UserId,
    /// Sign-in time (also `last_used_at` and the user's `last_login`).
    pub created_at: Timestamp,
    /// Hard end.
    pub expires_at: Timestamp,
    /// End unless refreshed before.
    pub idle_expires_at: Timestamp,
    /// Hash of the family's first refresh token (a token minted for `id`).
    pub refresh_hash: TokenHash,
    /// Client's user agent.
    pub user_agent: Option<String>,
    /// Client IP.
    pub ip: Option<String>,
    /// The user's [`User::tokens_invalidated_after`] as the sign-in read it
    /// with the credential it checked. The store starts the session only if
    /// the user still has exactly this value: a login that verified a
    /// password which a change or reset has since replaced gets no session
    /// ([`SessionStart::Stale`](crate::SessionStart::Stale)).
    pub credential_epoch: Option<Timestamp>,
}

/// What an [`MfaChallenge`] stands between. The kind is part of the
/// challenge's identity for superseding ([`MfaStore::open_challenge`]
/// replaces the user's challenge of the same kind only), so an enrolment
/// code can never finish a sign-in, nor the other way round.
///
/// [`MfaStore::open_challenge`]: crate::MfaStore::open_challenge
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChallengeKind {
    /// A sign-in whose password was right and whose second factor is due.
    SignIn,
    /// Proving a new phone number with a code sent to it.
    PhoneEnrolment,
    /// Proving a new TOTP secret with a first code from the authenticator.
    TotpEnrolment,
    /// A password change that must show the second factor too.
    PasswordChange,
}

impl ChallengeKind {
    /// The name stored in the `kind` column / field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignIn => "sign_in",
            Self::PhoneEnrolment => "phone_enrolment",
            Self::TotpEnrolment => "totp_enrolment",
            Self::PasswordChange => "password_change",
        }
    }
    /// Reads a stored kind.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sign_in" => Some(Self::SignIn),
            "phone_enrolment" => Some(Self::PhoneEnrolment),
            "totp_enrolment" => Some(Self::TotpEnrolment),
            "password_change" => Some(Self::PasswordChange),
            _ => None,
        }
    }
}

/// A pending second-factor step (regstack's `mfa_codes`): the client holds
/// a pending token whose hash is [`id`](Self::id); the store counts the
/// attempts made against it and hands it out once when it finishes.
#[derive(Clone, PartialEq)]
pub struct MfaChallenge {
    /// Hash of the pending token handed to the client.
    pub id: TokenHash,
    /// Whose second factor is asked for.
    pub user_id: UserId,
    /// What the challenge stands between.
    pub kind: ChallengeKind,
    /// Digest of the SMS code sent, if the factor is a texted code.
    pub code_hash: Option<TokenHash>,
    /// What the challenge will commit when it finishes: for
    /// [`ChallengeKind::PhoneEnrolment`] the E.164 number, for
    /// [`ChallengeKind::TotpEnrolment`] the sealed secret.
    pub payload: Option<String>,
    /// Wrong answers still allowed.
    pub attempts_left: u32,
    /// The user's [`User::tokens_invalidated_after`] as read with the
    /// password, for the session the challenge may start.
    pub credential_epoch: Option<Timestamp>,
    /// When it was opened.
    pub created_at: Timestamp,
    /// Dead from this instant on.
    pub expires_at: Timestamp,
}

impl fmt::Debug for MfaChallenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The code digest is an offline-guessing target (six digits) and
        // the payload a phone number or a sealed secret.
        f.debug_struct("MfaChallenge")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("kind", &self.kind)
            .field("code_hash", &self.code_hash.as_ref().map(|_| "[redacted]"))
            .field("payload", &self.payload.as_ref().map(|_| "[redacted]"))
            .field("attempts_left", &self.attempts_left)
            .field("credential_epoch", &self.credential_epoch)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Outcome of [`MfaStore::attempt_challenge`](crate::MfaStore::attempt_challenge).
#[derive(Clone, Debug, PartialEq)]
pub enum ChallengeAttempt {
    /// This attempt was counted; `attempts_left` is what remains AFTER it.
    /// The caller checks the answer only now, so a burst can never check
    /// more answers than the challenge allowed.
    Counted(MfaChallenge),
    /// No attempts were left: the challenge is deleted.
    Exhausted,
    /// No live challenge has that id: unknown, expired or finished.
    Unknown,
}

/// A confirmed TOTP factor.
#[derive(Clone, PartialEq)]
pub struct TotpFactor {
    /// The shared secret, sealed by `core` (the store never sees it plain).
    pub sealed_secret: String,
    /// The last accepted time step: a code for it or an earlier one is a
    /// replay ([`MfaStore::accept_totp_step`](crate::MfaStore::accept_totp_step)).
    pub last_step: Option<u64>,
    /// When it was enabled.
    pub created_at: Timestamp,
}

impl fmt::Debug for TotpFactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TotpFactor")
            .field("sealed_secret", &"[redacted]")
            .field("last_step", &self.last_step)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A user's second factors as stored.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Factors {
    /// The TOTP factor, if enabled.
    pub totp: Option<TotpFactor>,
    /// The SMS factor's number ([`User::phone_number`]).
    pub phone_number: Option<String>,
    /// Unspent backup codes.
    pub backup_codes_left: u32,
}

impl Session {
    /// Whether tokens of this session may still be used at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at > now && self.idle_expires_at > now
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_timed_disabling_ends_at_its_instant_exactly() {
        let t = chrono::DateTime::from_timestamp_micros(1_800_000_000_000_000).unwrap();
        let micro = chrono::TimeDelta::microseconds(1);
        let user = NewUser {
            id: UserId::generate(),
            email: Email::parse("timed@example.com").unwrap(),
            password_hash: None,
            full_name: None,
            is_verified: true,
            is_superuser: false,
            created_at: t,
        }
        .into_user();
        assert!(user.is_active_at(t), "never disabled");
        let timed = User {
            is_active: false,
            disabled_reason: Some("cooling off".into()),
            disabled_until: Some(t),
            ..user.clone()
        };
        assert!(!timed.is_active_at(t - micro), "disabled before its end");
        assert!(timed.is_active_at(t), "active from its end on");
        assert_eq!(timed.clone().as_of(t - micro), timed);
        let settled = timed.as_of(t);
        assert!(settled.is_active);
        assert_eq!(
            (settled.disabled_reason, settled.disabled_until),
            (None, None)
        );
        let forever = User {
            is_active: false,
            ..user
        };
        assert!(!forever.is_active_at(chrono::DateTime::<chrono::Utc>::MAX_UTC));
    }

    #[test]
    fn canonical_form_is_checked_after_lower_casing() {
        // "İ" lower-cases to "i" + U+0307: the canonical form is what must
        // pass, so the answer is a clean refusal or an address that reads
        // back — never a row that fails to parse later.
        match Email::parse("İnci@example.com") {
            Ok(e) => assert_eq!(Email::from_stored(e.as_str()).unwrap(), e),
            Err(e) => assert!(!e.0.is_empty()),
        }
        // A long address whose lower-case form is longer than 254 bytes.
        let long = format!("{}@example.com", "İ".repeat(120));
        assert!(long.len() <= Email::MAX_LEN);
        if let Ok(e) = Email::parse(&long) {
            assert!(e.as_str().len() <= Email::MAX_LEN);
        }
    }

    #[test]
    fn precomposed_and_decomposed_spellings_are_one_address() {
        let precomposed = Email::parse("Zo\u{e9}@example.com").unwrap();
        let decomposed = Email::parse("ZOE\u{301}@EXAMPLE.COM").unwrap();
        assert_eq!(precomposed, decomposed);
        assert_eq!(precomposed.as_str(), "zo\u{e9}@example.com");
    }

    proptest! {
        #[test]
        fn parse_is_idempotent_and_bounded(raw in "\\PC{0,40}@?\\PC{0,20}(\\.[a-zA-Z]{2,4})?") {
            if let Ok(e) = Email::parse(&raw) {
                prop_assert!(e.as_str().len() <= Email::MAX_LEN);
                prop_assert_eq!(Email::parse(e.as_str()), Ok(e.clone()));
                prop_assert_eq!(Email::from_stored(e.as_str()), Ok(e.clone()));
            }
        }

        #[test]
        fn any_case_and_normal_form_of_an_address_is_the_same_address(
            local in "[a-zA-Z\u{e0}-\u{ff}\u{130}\u{c0}-\u{de}]{1,12}",
        ) {
            use unicode_normalization::UnicodeNormalization;
            let raw = format!("{local}@Example.com");
            let nfd: String = raw.nfd().collect();
            let upper = raw.to_uppercase();
            let a = Email::parse(&raw);
            prop_assert_eq!(Email::parse(&nfd), a.clone());
            if let Ok(a) = &a {
                // Upper-casing is not always reversible ("ß" → "SS"), but
                // whatever it gives must canonicalise to a stable value.
                if let Ok(u) = Email::parse(&upper) {
                    prop_assert_eq!(Email::parse(u.as_str()), Ok(u));
                }
                prop_assert_eq!(Email::parse(a.as_str()), Ok(a.clone()));
            }
        }
    }
}
