//! Storage ports: one narrow trait per aggregate.
//!
//! Every method whose name is an intent (`promote`, `admit`,
//! `complete_password_reset`, `revoke_all`, …) is **one atomic step** in the
//! store: a conditional update, a `DELETE … RETURNING`, a transaction, or a
//! single-document find-and-modify — never a read in Rust followed by a
//! write. Two concurrent callers presenting the same single-use token get one
//! success and one `None`/`InvalidToken`, on every backend. The contract
//! suite in `regstack-testkit` checks exactly that for each implementation.
//!
//! Every method takes `now` from the caller; stores never read a clock to
//! decide expiry, and never return a row past its `expires_at`.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::TimeDelta;

use crate::audit::AuditStore;
use crate::clock::Timestamp;
use crate::error::StoreError;
use crate::invites::InviteStore;
use crate::oauth::OAuthStore;
use crate::types::*;

/// Outcome of [`PendingStore::promote`].
#[derive(Debug, Clone, PartialEq)]
// One store step's answer, moved once to its caller and never kept in bulk:
// boxing the account would cost an allocation per call for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Promotion {
    /// The pending row is gone and this verified user exists.
    Promoted(User),
    /// No live pending registration has that token (unknown, expired,
    /// superseded or already used).
    InvalidToken,
    /// The token was valid but the address now belongs to a user; the
    /// pending row was removed.
    EmailTaken,
}

/// Outcome of [`UserStore::confirm_email_change`].
#[derive(Debug, Clone, PartialEq)]
// One store step's answer, moved once to its caller and never kept in bulk:
// boxing the account would cost an allocation per call for nothing.
#[allow(clippy::large_enum_variant)]
pub enum EmailChangeOutcome {
    /// The address was switched; sessions were revoked.
    Changed(User),
    /// No live email-change token has that hash.
    InvalidToken,
    /// The new address was taken in the meantime; the token is spent.
    EmailTaken,
}

/// How many accounts there are, for an administrator's overview
/// ([`UserStore::count_users`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UserCounts {
    /// Every account.
    pub total: u64,
    /// Accounts not disabled.
    pub active: u64,
    /// Accounts whose address was proven.
    pub verified: u64,
    /// Administrators.
    pub superusers: u64,
}

/// An administrator's change to an account ([`UserStore::admin_update`]):
/// `None` leaves a field as it is.
///
/// A disabling (`is_active: Some(false)`) states the whole disabling: the
/// account's [`User::disabled_reason`] and [`User::disabled_until`] become
/// the two fields here (`None` = no reason, until enabled by hand).
/// Enabling (`Some(true)`) clears both. Without `is_active` they are left
/// as they are, and the two fields here must be `None` (the engine refuses
/// them otherwise).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminChange {
    /// Enable or disable the account. Disabling ends every session.
    pub is_active: Option<bool>,
    /// Grant or withdraw administrator rights.
    pub is_superuser: Option<bool>,
    /// A new display name (checked by the caller).
    pub full_name: Option<String>,
    /// With a disabling: why, for other administrators (checked by the
    /// caller: [`DisableReason`](crate::DisableReason)).
    pub disabled_reason: Option<String>,
    /// With a disabling: when it ends by itself (checked by the caller: in
    /// the future).
    pub disabled_until: Option<Timestamp>,
}

impl AdminChange {
    /// Whether the change leaves the account as it is.
    pub fn is_empty(&self) -> bool {
        self.is_active.is_none()
            && self.is_superuser.is_none()
            && self.full_name.is_none()
            && self.disabled_reason.is_none()
            && self.disabled_until.is_none()
    }

    /// The reason and end the account has after this change, given what
    /// it has now: a disabling sets both, an enabling clears both, no
    /// `is_active` keeps them. Every store writes these, so they agree.
    pub fn disabled_fields(
        &self,
        old: (Option<String>, Option<Timestamp>),
    ) -> (Option<String>, Option<Timestamp>) {
        match self.is_active {
            Some(false) => (self.disabled_reason.clone(), self.disabled_until),
            Some(true) => (None, None),
            None => old,
        }
    }
}

/// Which accounts [`UserStore::search_users`] returns: each `Some` must
/// hold, `None` does not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFilter {
    /// A part of the canonical address, taken literally (`%`, `_` and `.`
    /// are just characters); lower-case it as addresses are.
    pub email_contains: Option<String>,
    /// Active or disabled.
    pub is_active: Option<bool>,
    /// Verified or not.
    pub is_verified: Option<bool>,
    /// Administrator or not.
    pub is_superuser: Option<bool>,
    /// Has a second factor or not ([`User::is_mfa_enabled`]).
    pub has_mfa: Option<bool>,
}

/// A place in the list order (`created_at`, then `id`, both descending):
/// the last account of the page before. Accounts created after it was
/// taken sort before it, so the pages that follow neither repeat nor skip
/// an account while others are added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCursor {
    /// The last listed account's creation time.
    pub created_at: Timestamp,
    /// And its id, for accounts created at the same instant.
    pub id: UserId,
}

/// Outcome of [`LoginAttemptStore::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// An attempt was recorded; `failures` counts it and every earlier
    /// attempt still in the window. The caller clears them on success.
    Admitted {
        /// Attempts in the window, this one included.
        failures: u32,
    },
    /// The window already holds `threshold` attempts; nothing was recorded.
    Locked {
        /// When the oldest counted attempt leaves the window.
        retry_at: Timestamp,
    },
}

/// The `users` table / collection, plus the account-level changes that must
/// touch other aggregates in the same atomic step.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Creates a user. `Err(Conflict("email"))` if the address is taken.
    async fn insert(&self, user: NewUser) -> Result<User, StoreError>;
    /// Loads by id.
    async fn get(&self, id: &UserId) -> Result<Option<User>, StoreError>;
    /// Loads by canonical address.
    async fn find_by_email(&self, email: &Email) -> Result<Option<User>, StoreError>;
    /// Sets (or clears) the display name. `None` if the user is gone.
    async fn update_full_name(
        &self,
        id: &UserId,
        full_name: Option<String>,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError>;
    /// Swaps in a stronger hash of the same password, only if the stored
    /// hash is still `expected` (a concurrent password change wins).
    async fn upgrade_password_hash(
        &self,
        id: &UserId,
        expected: &PasswordHash,
        new: &PasswordHash,
    ) -> Result<bool, StoreError>;
    /// Atomically: sets the new hash, clears `must_change_password`, moves
    /// `tokens_invalidated_after` strictly forward (to `now`, or one
    /// microsecond past its old value if that is not before `now`), revokes
    /// every live session of the user with `reason`, and deletes the user's
    /// outstanding reset and email-change tokens (revert tokens stay).
    async fn change_password(
        &self,
        id: &UserId,
        new: &PasswordHash,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError>;
    /// Atomically: spends the live reset token with this hash, then does
    /// everything [`change_password`](Self::change_password) does with
    /// [`RevokeReason::PasswordReset`] and forgets every lockout bucket of
    /// the user's address — its own and each device's ([`LockoutKey`]).
    /// `None` if no live token matches.
    async fn complete_password_reset(
        &self,
        token: &TokenHash,
        new: &PasswordHash,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError>;
    /// Atomically: spends the live email-change token with this hash,
    /// switches the address, moves `tokens_invalidated_after` strictly
    /// forward as [`change_password`](Self::change_password) does,
    /// revokes every session ([`RevokeReason::EmailChanged`]) and deletes the
    /// user's other outstanding tokens.
    async fn confirm_email_change(
        &self,
        token: &TokenHash,
        now: Timestamp,
    ) -> Result<EmailChangeOutcome, StoreError>;
    /// Atomically: spends the live [`TokenKind::EmailChangeRevert`] token
    /// with this hash; deletes the user's revert tokens issued at or after
    /// it (an intruder's later change mailed its own link to an address
    /// it holds: the earliest link wins, whichever is used first); switches
    /// the address back to the token's `new_email` unless it is already
    /// that or another account holds it now (then it stays); sets the
    /// password hash to `lockout` (a password nobody knows: whoever changed
    /// the address knew the old one) and clears `must_change_password`;
    /// moves `tokens_invalidated_after` strictly forward; revokes every
    /// live session ([`RevokeReason::EmailChanged`]); deletes the user's
    /// reset and email-change tokens (a pending change is cancelled; a
    /// reset link sent to the other address dies) and forgets the lockout
    /// buckets of both addresses. Credential changes and
    /// `confirm_email_change` keep revert tokens. `None` if no live token
    /// matches.
    async fn revert_email_change(
        &self,
        token: &TokenHash,
        lockout: &PasswordHash,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError>;
    /// Removes the user and every row that belongs to it: sessions, tokens,
    /// second-factor challenges, its TOTP factor and backup codes, its
    /// linked OAuth identities and the OAuth flows it started to link one,
    /// login attempts in every bucket of its address (its devices' too),
    /// rate-limit hits keyed by its address and the invitations bound to or
    /// spent by its address (those it made as an administrator stay, no
    /// longer naming it). Returns the removed user. A
    /// [`SessionStore::start`] or [`TokenStore::issue`] for the user racing
    /// the deletion leaves nothing behind: it lands before and is removed
    /// with the rest, or finds the user gone (`SessionStart::Stale`; an issue
    /// that stores nothing).
    async fn delete_account(&self, id: &UserId) -> Result<Option<User>, StoreError>;
    /// Counts every account, and those active, verified and
    /// administrators.
    async fn count_users(&self) -> Result<UserCounts, StoreError>;
    /// One page of accounts, newest first (`created_at` descending, then
    /// `id` descending, so that equal times still have one order): `skip`
    /// accounts left out, at most `limit` returned.
    async fn list_users(&self, skip: u64, limit: u64) -> Result<Vec<User>, StoreError>;
    /// The accounts matching `filter`, in [`list_users`](Self::list_users)'
    /// order, from just after `after` (from the start without one), `skip`
    /// of them left out, at most `limit`.
    async fn search_users<'c>(
        &self,
        filter: &UserFilter,
        after: Option<&'c UserCursor>,
        skip: u64,
        limit: u64,
    ) -> Result<Vec<User>, StoreError>;
    /// How many accounts match `filter`.
    async fn count_matching(&self, filter: &UserFilter) -> Result<u64, StoreError>;
    /// Applies an administrator's change in one step and returns the
    /// account as it now is; `updated_at = now` if anything was given.
    /// Disabling (`is_active: Some(false)`) also moves the credential epoch
    /// strictly forward, as [`change_password`](Self::change_password)
    /// does, and revokes every live session ([`RevokeReason::Disabled`]) in
    /// the same step: no session of a disabled account lives on, and a
    /// sign-in that read the old epoch cannot start one. `None` if the
    /// user is gone.
    async fn admin_update(
        &self,
        id: &UserId,
        change: &AdminChange,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError>;
    /// Writes down the end of every timed disabling that has ended: each
    /// account disabled until an instant at or before `now` becomes active,
    /// its reason and end cleared, `updated_at = now` — in one conditional
    /// step per account, so an administrator's concurrent change (a new
    /// disabling without end, say) is never overwritten. The credential
    /// epoch does not move and no session revives. Returns how many.
    /// Correctness never waits for this ([`User::is_active_at`]); it keeps
    /// lists, filters and counts truthful.
    async fn reenable_expired(&self, now: Timestamp) -> Result<u64, StoreError>;
}

/// The `pending_registrations` table / collection.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait PendingStore: Send + Sync {
    /// Stores a new pending registration — unless the address already has
    /// one that is live at `pending.created_at`: then nothing changes and
    /// the answer is `false`. A second registration must never replace the
    /// password the account will be created with (pre-account hijacking:
    /// the owner would verify an account whose password someone else
    /// chose). An expired row for the address is replaced. Of concurrent
    /// puts for one address, one stores its row.
    async fn put(&self, pending: PendingRegistration) -> Result<bool, StoreError>;
    /// Loads the live row for an address.
    async fn find_by_email(
        &self,
        email: &Email,
        now: Timestamp,
    ) -> Result<Option<PendingRegistration>, StoreError>;
    /// Gives an existing row a new token and expiry (resend). `false` if
    /// there is no row for the address.
    async fn replace_token(
        &self,
        email: &Email,
        token: &TokenHash,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Atomically: removes the live pending row with this token and creates
    /// the verified user with `id`. Either both happen or neither. If the
    /// address belongs to an unverified account whose password hash is the
    /// row's own — a row made for that very account (an administrator's
    /// resend of its verification mail) — that account is marked verified
    /// instead and is the answer; any other account at the address is
    /// [`Promotion::EmailTaken`].
    async fn promote(
        &self,
        token: &TokenHash,
        id: &UserId,
        now: Timestamp,
    ) -> Result<Promotion, StoreError>;
    /// Atomically: removes the live pending row of `email` and creates the
    /// verified user with `id` from it, as [`promote`](Self::promote) does
    /// for a token — an administrator vouching for the address instead of
    /// the mailed link. [`Promotion::InvalidToken`] here means "no live
    /// pending registration for the address".
    async fn promote_email(
        &self,
        email: &Email,
        id: &UserId,
        now: Timestamp,
    ) -> Result<Promotion, StoreError>;
    /// How many pending registrations are live at `now`.
    async fn count_live(&self, now: Timestamp) -> Result<u64, StoreError>;
    /// Deletes rows past their expiry. Returns how many.
    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError>;
}

/// One-time tokens for password reset and email change.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Stores a token and, in the same step, deletes the user's earlier
    /// tokens of the same kind (a newer link supersedes older ones) —
    /// except for [`TokenKind::EmailChangeRevert`], which supersedes
    /// nothing: each mailed "this wasn't me" link stays valid. If the
    /// user is gone (an account deletion won a race), nothing is stored
    /// and the answer is still `Ok`: as if the deletion had come after the
    /// issue and taken the token along. Never an error for that race.
    async fn issue(&self, token: OneTimeToken) -> Result<(), StoreError>;
    /// Reads a live token without spending it. Used to refuse a dead link
    /// before paying for a password hash; spending happens in the atomic
    /// [`UserStore`] operation.
    async fn peek(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<OneTimeToken>, StoreError>;
    /// Deletes tokens past their expiry. Returns how many.
    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError>;
}

/// Which lockout window an attempt counts in, so that strangers failing
/// against an address cannot lock out its owner's browser.
///
/// An address's own bucket is shared by every client that shows no trusted
/// device: anyone who knows the address can fill it, and then such clients
/// are refused. A device that signed in to the address before (its device
/// cookie proves it) counts in a bucket of its own, so strangers' failures
/// never lock the owner's browser out — and its own failures lock only it.
/// Buckets are independent of each other: admitting into one never reads
/// or changes another. [`LoginAttemptStore::clear`] forgets one bucket;
/// the credential changes and deletion of [`UserStore`] forget every bucket
/// of the address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LockoutKey {
    email: Email,
    device: Option<DeviceId>,
}

impl LockoutKey {
    /// The address's own bucket.
    pub fn address(email: Email) -> Self {
        Self {
            email,
            device: None,
        }
    }

    /// The bucket of one trusted device of the address.
    pub fn device(email: Email, device: DeviceId) -> Self {
        Self {
            email,
            device: Some(device),
        }
    }

    /// The address every bucket of this key belongs to.
    pub fn email(&self) -> &Email {
        &self.email
    }

    /// The device, for a device's bucket; `None` for the address's own.
    pub fn device_id(&self) -> Option<&DeviceId> {
        self.device.as_ref()
    }
}

/// The `login_attempts` table / collection: the lockout counter, one
/// sliding window per [`LockoutKey`].
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait LoginAttemptStore: Send + Sync {
    /// Atomically: if fewer than `threshold` attempts in `key`'s bucket lie
    /// within `window` before `now`, records one more there and admits it;
    /// otherwise records nothing and reports when the lock lifts. Every
    /// admitted attempt counts as a failure until [`clear`](Self::clear)
    /// says otherwise, so a parallel burst can never verify more than
    /// `threshold` passwords in one bucket. Other buckets — the address's
    /// own, other devices' — are neither read nor changed.
    async fn admit(
        &self,
        key: &LockoutKey,
        now: Timestamp,
        window: TimeDelta,
        threshold: u32,
    ) -> Result<Admission, StoreError>;
    /// Forgets every attempt in `key`'s bucket (a successful sign-in), and
    /// only there: clearing the address's own bucket leaves its devices'
    /// buckets as they are, and the other way round.
    async fn clear(&self, key: &LockoutKey) -> Result<(), StoreError>;
    /// Forgets every bucket of an address — its own and each device's —
    /// and nothing of any other address (an administrator unlocking it).
    async fn forget_address(&self, email: &Email) -> Result<(), StoreError>;
    /// Deletes attempts older than `before`, in every bucket. Returns how
    /// many.
    async fn purge_expired(&self, before: Timestamp) -> Result<u64, StoreError>;
}

/// Outcome of [`SessionStore::rotate`]: the one atomic step, and on a miss
/// what the session record holds, so that `core` (`flows/refresh.rs`), not
/// the store, decides between a replay and reuse.
#[derive(Debug, Clone, PartialEq)]
pub enum Rotation {
    /// The presented refresh token was the live one of a live session: it
    /// is now spent, the successor is live, and the idle lifetime moved
    /// forward.
    Rotated {
        /// The session after the rotation.
        session: Session,
        /// Its user.
        user: User,
    },
    /// Nothing changed: the presented token is not the live one, or the
    /// session is no longer live. The record as it was read, after the
    /// conditional write missed.
    NotLive(RefreshFamily),
    /// No such session (or its user is gone).
    Unknown,
}

/// A session's refresh family as stored: what a missed rotation reports.
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshFamily {
    /// The session, with its revocation and lifetimes.
    pub session: Session,
    /// Its user.
    pub user: User,
    /// The hash of the family's live token (`None` for a session from
    /// before refresh families).
    pub live: Option<TokenHash>,
    /// The hash the last rotation spent, if any.
    pub previous: Option<TokenHash>,
    /// When the last rotation happened, if any.
    pub rotated_at: Option<Timestamp>,
}

/// Outcome of [`SessionStore::start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a stale start means no session exists: the sign-in must fail"]
pub enum SessionStart {
    /// The session exists and the user's `last_login` is stamped.
    Started,
    /// The user is gone, or its credential epoch is no longer the one the
    /// sign-in checked (a password change, reset or email change landed in
    /// between): nothing was written.
    Stale,
}

/// Sign-in sessions: the thing an access token's `sid` names, each with
/// its family of refresh tokens (stored only as hashes).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Records a new session with its first refresh token and stamps the
    /// user's `last_login` with its creation time, in one step — but only
    /// if the user's `tokens_invalidated_after` still equals
    /// `session.credential_epoch`; otherwise nothing is written and the
    /// answer is [`SessionStart::Stale`]. Against a concurrent credential
    /// change (which moves the epoch and revokes every session) either the
    /// start sees the new epoch and refuses, or the change revokes the new
    /// session: no session started from an old credential outlives the
    /// change. `Err(Conflict)` if the id already exists.
    async fn start(&self, session: NewSession) -> Result<SessionStart, StoreError>;
    /// Atomically spends the refresh token `presented` of `session` and
    /// makes `successor` the family's live token — if `presented` is its
    /// live token and the session is live; otherwise changes nothing and
    /// reports the family as stored ([`Rotation::NotLive`]) for the caller
    /// to judge.
    ///
    /// The caller has proved that `presented` was minted for `session`
    /// (refresh tokens carry their session id under a server MAC), which is
    /// what lets a store keep only the live hash and the previous one on the
    /// session itself, and rotate by changing that one record. Of any
    /// number of concurrent calls with one token, at most one gets
    /// `Rotated`. A rotation sets `last_used_at = now`, `rotated_at = now`
    /// and `idle_expires_at = min(now + idle, expires_at)`. A reuse is ended
    /// by the caller with [`revoke`](Self::revoke), whose `true` comes
    /// exactly once.
    async fn rotate(
        &self,
        session: &SessionId,
        presented: &TokenHash,
        successor: &TokenHash,
        now: Timestamp,
        idle: TimeDelta,
    ) -> Result<Rotation, StoreError>;
    /// The user's live sessions ([`Session::is_live`]), newest first.
    async fn list(&self, user: &UserId, now: Timestamp) -> Result<Vec<Session>, StoreError>;
    /// Revokes one live session, but only if it belongs to `owner` (a
    /// user can never end another user's session). `false` otherwise.
    async fn revoke_owned(
        &self,
        id: &SessionId,
        owner: &UserId,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// The per-request check: one indexed lookup returning the session and
    /// its user together. Returns revoked and expired sessions too (the
    /// caller words the refusal); `None` if the session or user is gone.
    async fn authenticate(&self, id: &SessionId) -> Result<Option<(Session, User)>, StoreError>;
    /// Revokes one live session (and so its refresh tokens). `false` if it
    /// was already dead or unknown.
    async fn revoke(
        &self,
        id: &SessionId,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Revokes every live session of a user, refresh tokens included.
    /// Returns how many.
    async fn revoke_all(
        &self,
        user: &UserId,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<u64, StoreError>;
    /// Deletes sessions (with their refresh tokens) that ended — expired,
    /// idled out or were revoked — before `before`. Returns how many.
    async fn purge_expired(&self, before: Timestamp) -> Result<u64, StoreError>;
}

/// Sliding-window counters for things other than sign-in (mail sent per
/// address, later per-IP route limits). Shared by every server instance.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait RateLimitStore: Send + Sync {
    /// Atomically: records a hit for `key` if fewer than `limit` hits lie
    /// within `window` before `now`. Returns whether it was recorded.
    async fn hit(
        &self,
        key: &str,
        now: Timestamp,
        window: TimeDelta,
        limit: u32,
    ) -> Result<bool, StoreError>;
    /// Deletes hits older than `before`. Returns how many.
    async fn purge_expired(&self, before: Timestamp) -> Result<u64, StoreError>;
}

/// Second factors (regstack's `mfa_codes`, plus the TOTP factor and the
/// backup codes): the pending challenges a second-factor step counts
/// attempts against, and the factors themselves.
///
/// Each method is one atomic step, like every intent-named store method
/// (module doc). The factor changes (`enable_totp`, `disable_totp`,
/// `set_phone`, `clear_phone`) keep [`User::is_mfa_enabled`] equal to "has a
/// TOTP factor or a phone" in the same step, revoke every other live
/// session of the user ([`RevokeReason::FactorChanged`]) and move the
/// credential epoch ([`User::tokens_invalidated_after`]) strictly forward
/// as a password change does — so a sign-in that checked the password
/// before the change, or a challenge opened before it, can no longer start
/// a session ([`SessionStart::Stale`]): no session started under the old
/// factors outlives the change.
///
/// `keep` names its lifetime (`'k`) only because mockall cannot mock an
/// elided one inside an `Option`; callers write `Some(&id)` as usual.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait MfaStore: Send + Sync {
    /// Stores a challenge and, in the same step, deletes every challenge
    /// of the same user and kind, live or dead: a new code supersedes the
    /// old one. If the user is gone, nothing is stored and the answer is
    /// still `Ok` (as [`TokenStore::issue`]). `Err(Conflict)` if another
    /// user's challenge has the same id.
    async fn open_challenge(&self, challenge: MfaChallenge) -> Result<(), StoreError>;
    /// Counts one attempt against a live challenge (`expires_at > now`):
    /// if attempts are left, decrements `attempts_left` and answers
    /// [`ChallengeAttempt::Counted`] with the record after the decrement;
    /// a live challenge with none left is deleted
    /// ([`ChallengeAttempt::Exhausted`]); anything else is
    /// [`ChallengeAttempt::Unknown`]. Concurrent attempts never count more
    /// than `attempts_left`: each `Counted` carries a distinct remainder.
    async fn attempt_challenge(
        &self,
        id: &TokenHash,
        now: Timestamp,
    ) -> Result<ChallengeAttempt, StoreError>;
    /// Deletes a live challenge and returns it: of concurrent callers,
    /// exactly one gets `Some`.
    async fn finish_challenge(
        &self,
        id: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<MfaChallenge>, StoreError>;
    /// The user's factors (none for an unknown user).
    async fn factors(&self, user: &UserId) -> Result<Factors, StoreError>;
    /// Accepts a TOTP time step: `true`, and it becomes the last accepted
    /// one, only if the user has a TOTP factor and `step` is later than
    /// the last accepted step. Of concurrent calls with one step exactly
    /// one gets `true`; a code is never accepted twice, nor an earlier one
    /// after a later.
    async fn accept_totp_step(&self, user: &UserId, step: u64) -> Result<bool, StoreError>;
    /// Spends one backup code of this user: `true` for exactly one of
    /// concurrent spenders; another user's code is `false`.
    async fn spend_backup_code(&self, user: &UserId, hash: &TokenHash) -> Result<bool, StoreError>;
    /// Enables (or replaces) the TOTP factor with no accepted step yet,
    /// replaces all the user's backup codes with `backup_codes`, sets
    /// `is_mfa_enabled` and `updated_at = now`, and revokes every live
    /// session of the user but `keep` (see the trait doc). `false` if the
    /// user is gone.
    async fn enable_totp<'k>(
        &self,
        user: &UserId,
        sealed_secret: &str,
        backup_codes: &[TokenHash],
        keep: Option<&'k SessionId>,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Removes the TOTP factor; the backup codes too unless a phone
    /// remains; `is_mfa_enabled` = has a phone; revokes the other sessions.
    /// `false` if there was no TOTP factor.
    async fn disable_totp<'k>(
        &self,
        user: &UserId,
        keep: Option<&'k SessionId>,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Sets the (proven) phone number, `is_mfa_enabled`, and revokes the
    /// other sessions. `false` if the user is gone.
    async fn set_phone<'k>(
        &self,
        user: &UserId,
        phone: &str,
        keep: Option<&'k SessionId>,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Clears the phone number; the backup codes too unless a TOTP factor
    /// remains (they are a fallback for a factor, and no factor is left);
    /// `is_mfa_enabled` = has a TOTP factor; revokes the other sessions.
    /// `false` if there was no phone.
    async fn clear_phone<'k>(
        &self,
        user: &UserId,
        keep: Option<&'k SessionId>,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Replaces all of the user's backup codes: the old ones stop working
    /// in the same step. `false` if the user is gone.
    async fn replace_backup_codes(
        &self,
        user: &UserId,
        codes: &[TokenHash],
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Sets or clears [`User::must_change_password`]. `false` if the user
    /// is gone.
    async fn set_must_change_password(
        &self,
        user: &UserId,
        value: bool,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Deletes challenges past their expiry. Returns how many.
    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError>;
}

/// Liveness of the backend, for `/readyz` and `regstack migrate`.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait StoreHealth: Send + Sync {
    /// One round trip to the backend.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Whether every migration this build knows has been applied.
    async fn schema_is_current(&self) -> Result<bool, StoreError>;
}

/// Every store a regstack instance needs, as one value an adapter returns
/// and the facade hands to `core`.
#[derive(Clone)]
pub struct Stores {
    /// Users and account-level changes.
    pub users: Arc<dyn UserStore>,
    /// Pending registrations.
    pub pending: Arc<dyn PendingStore>,
    /// Reset and email-change tokens.
    pub tokens: Arc<dyn TokenStore>,
    /// Lockout counter.
    pub login_attempts: Arc<dyn LoginAttemptStore>,
    /// Sessions.
    pub sessions: Arc<dyn SessionStore>,
    /// Other counters.
    pub rate_limits: Arc<dyn RateLimitStore>,
    /// Second factors and their challenges.
    pub mfa: Arc<dyn MfaStore>,
    /// OAuth flows in flight and the identities linked to accounts.
    pub oauth: Arc<dyn OAuthStore>,
    /// The append-only audit log.
    pub audit: Arc<dyn AuditStore>,
    /// Invitations, for invite-only registration.
    pub invites: Arc<dyn InviteStore>,
    /// Backend health.
    pub health: Arc<dyn StoreHealth>,
}
