//! What a flow can refuse, in terms a caller can act on.
//!
//! `http-axum` maps each variant to regstack's status and `detail` text in
//! one table (`http-axum/src/error.rs`); nothing matches on message text.

use regstack_ports::{HashError, StoreError};

/// Why a presented access token does not authenticate. Each cause has its
/// own regstack wording; all are 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No bearer token at all.
    Missing,
    /// Malformed, forged, expired or for another purpose (one static body:
    /// no oracle for which).
    Invalid,
    /// The holder signed out of this session.
    Revoked,
    /// A password change, reset or email change ended every session.
    Invalidated,
    /// The account is disabled or deleted.
    Inactive,
}

/// What an administrator may not do to their own account: each would lock
/// the only person who can undo it out of the admin API (the last
/// administrator could otherwise leave none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfChange {
    /// Withdraw their own administrator rights.
    Demote,
    /// Disable their own account.
    Disable,
    /// Delete their own account (the account routes do that, with the
    /// password).
    Delete,
}

/// Why an administrator's disabling is refused (422, naming the field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisableRefusal {
    /// A reason without `is_active: false`: it would describe nothing.
    ReasonWithoutDisabling,
    /// An end without `is_active: false`.
    UntilWithoutDisabling,
    /// An end at or before now: the disabling would be over already.
    UntilNotInFuture,
    /// A reason longer than [`DisableReason::MAX_CHARS`] or with a control
    /// character.
    ///
    /// [`DisableReason::MAX_CHARS`]: regstack_ports::DisableReason::MAX_CHARS
    ReasonInvalid,
}

/// Everything a flow can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// 403: `allow_registration = false`.
    #[error("registration is disabled")]
    RegistrationClosed,
    /// 404: `enable_password_reset = false`.
    #[error("password reset is disabled")]
    PasswordResetDisabled,
    /// 404: `enable_account_deletion = false`.
    #[error("account deletion is disabled")]
    AccountDeletionDisabled,
    /// 409: the address belongs to an account.
    #[error("email already registered")]
    EmailTaken,
    /// 401: unknown address, wrong password, or no password — one answer.
    #[error("invalid credentials")]
    InvalidCredentials {
        /// Attempts left before lockout; `None` when lockout is off or at 0.
        remaining: Option<u32>,
    },
    /// 429 with `Retry-After`.
    #[error("account locked")]
    Locked {
        /// Whole seconds until the next attempt is admitted.
        retry_after_secs: u64,
    },
    /// 403, only after a correct password.
    #[error("account disabled")]
    AccountDisabled,
    /// 403, only after a correct password.
    #[error("email not verified")]
    EmailNotVerified,
    /// 400: verification link dead.
    #[error("invalid verification token")]
    InvalidVerificationToken,
    /// 400: reset link dead.
    #[error("invalid reset token")]
    InvalidResetToken,
    /// 400: email-change link dead.
    #[error("invalid email-change token")]
    InvalidEmailChangeToken,
    /// 400: the "this wasn't me" link of an email change is dead (used,
    /// expired, or beaten by an earlier one).
    #[error("invalid email-change revert token")]
    InvalidEmailRevertToken,
    /// 400: re-authentication failed.
    #[error("current password is incorrect")]
    WrongCurrentPassword,
    /// 400: new password equals the current one.
    #[error("new password equals the current one")]
    SamePassword,
    /// 400: new address equals the current one.
    #[error("new email equals the current one")]
    SameEmail,
    /// 401: the refresh token is unknown, spent, expired or its session
    /// ended — one body for all (no oracle).
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    /// 404: no such session among the caller's own.
    #[error("session not found")]
    SessionNotFound,
    /// 403: a cookie-authenticated request from another site.
    #[error("cross-site request refused")]
    CrossSiteRefused,
    /// 400: the pending sign-in challenge is unknown, expired, used up or
    /// no longer leads anywhere (the password changed meanwhile).
    #[error("invalid second-factor challenge")]
    MfaChallengeInvalid,
    /// 400: a wrong second-factor code; the challenge lives on.
    #[error("wrong second-factor code")]
    WrongMfaCode {
        /// Attempts left.
        remaining: u32,
    },
    /// 400: the pending setup of a factor is unknown, expired or used up.
    #[error("invalid second-factor setup")]
    MfaSetupInvalid,
    /// 400: the password-change token `/login` handed out is unknown,
    /// expired, used, or the credentials changed since.
    #[error("invalid password-change token")]
    PasswordChangeTokenInvalid,
    /// 404: SMS second factors are off (`enable_sms_2fa = false`): the
    /// phone routes do not exist.
    #[error("SMS second factors are disabled")]
    SmsDisabled,
    /// 429: a daily SMS cap is reached; nothing was sent.
    #[error("SMS cap reached")]
    SmsCapReached,
    /// 400: not an E.164 phone number.
    #[error("invalid phone number")]
    PhoneNumberInvalid,
    /// 400: the account has no phone to remove.
    #[error("SMS 2FA is not enabled")]
    SmsNotEnabled,
    /// 400: the account has no authenticator to remove.
    #[error("TOTP is not enabled")]
    TotpNotEnabled,
    /// 400: backup codes belong to a second factor the account lacks.
    #[error("no second factor")]
    NoSecondFactor,
    /// 404: no OAuth provider of that name is configured.
    #[error("OAuth provider {0:?} is not configured")]
    UnknownOAuthProvider(String),
    /// 400: `redirect_to` is not on the service's origin.
    #[error("redirect_to must be same-origin")]
    RedirectNotSameOrigin,
    /// 404: nothing to exchange (unknown id, exchanged already, another
    /// browser's flow, or the account changed since the callback).
    #[error("OAuth state not found or already consumed")]
    OAuthStateNotFound,
    /// 400: the completed flow's exchange window closed.
    #[error("OAuth state has expired")]
    OAuthStateExpired,
    /// 404: the account has no identity of that provider.
    #[error("that provider is not linked to the account")]
    OAuthNotLinked,
    /// 400: unlinking would leave the account no way to sign in.
    #[error("cannot unlink the only sign-in method")]
    OAuthLastSignInMethod,
    /// 502-ish, answered 500: the provider could not build an
    /// authorization URL (discovery failed).
    #[error("OAuth provider unavailable")]
    OAuthProviderUnavailable,
    /// 403: the caller is signed in but is not an administrator.
    #[error("administrator privileges required")]
    NotAdmin,
    /// 404: no account has that id.
    #[error("user not found")]
    UserNotFound,
    /// 400: the account's address is proven already (administrator's
    /// resend of the verification mail).
    #[error("user is already verified")]
    AlreadyVerified,
    /// 400: the account has no password (it signs in through OAuth only),
    /// so a verification link could not finish anything.
    #[error("user has no password")]
    NoPasswordToVerify,
    /// 404: no live pending registration for the address, as it was given.
    #[error("no pending registration for {0}")]
    NoPendingRegistration(String),
    /// 409: the pending registration's address belongs to an account, as
    /// the address was given.
    #[error("a user with email {0} already exists")]
    PendingAddressTaken(String),
    /// 403: `registration_mode = "invite"` and the registration brought no
    /// invitation that admits it — missing, unknown, spent, expired,
    /// revoked or bound to another address: one answer for all, given
    /// before the address is looked at, so it says nothing about accounts.
    #[error("a valid invitation is required")]
    InviteRequired,
    /// 404: no open invitation has that id (administrator's revoke).
    #[error("invite not found")]
    InviteNotFound,
    /// 422: see [`DisableRefusal`].
    #[error("refused disabling: {0:?}")]
    DisableRefused(DisableRefusal),
    /// 400: an administrator tried to lock themselves out.
    #[error("administrators cannot do this to their own account: {0:?}")]
    AdminSelfChange(SelfChange),
    /// 422: the new password is common, made of context words or known
    /// breached ([`crate::password_policy`]). Nothing was changed.
    #[error("new password refused: {0:?}")]
    PasswordRefused(crate::password_policy::PasswordRefusal),
    /// 503: the breach screen gave no answer and `password.breach_fail_closed`
    /// is on. Nothing was changed; the same request may pass later.
    #[error("breached-password screen unavailable")]
    PasswordScreenUnavailable,
    /// 401: see [`AuthFailure`].
    #[error("not authenticated: {0:?}")]
    Unauthenticated(AuthFailure),
    /// 503 or 500, from the store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// 500: hashing failed.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// 500: an invariant broke (a template, a signing key). The cause is
    /// kept as a source, so the one log line of a failed request
    /// (`http-axum`) shows the whole chain.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl AuthError {
    /// A 500 caused by `cause` — an error, or a message naming the broken
    /// invariant.
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(cause.into())
    }
}
