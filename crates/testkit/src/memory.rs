//! In-memory implementations of every trait in `regstack_ports::stores`.
//!
//! All of them share one `State` behind one `std::sync::Mutex`, and every
//! trait method does all its work in a single critical section that is never
//! held across an `.await`. That makes each intent-named operation
//! (`promote`, `complete_password_reset`, `admit`, `delete_account`, …)
//! atomic in exactly the sense the port docs demand: no other call can
//! observe or interleave with half of it. The fakes are the reference
//! reading of the port contract; they pass the same
//! [contract suite](crate::contract) as every real backend.
//!
//! Rows past their expiry are never returned (`expires_at > now` is live),
//! whether or not `purge_expired` has run yet.
//!
//! For fault tests, [`memory_stores_with_faults`] hands back a
//! [`FaultInjector`] that makes named operations fail with
//! `StoreError::Unavailable`, as a dropped database connection would.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use regstack_ports::{
    AdminChange, Admission, AuditEntry, AuditQuery, AuditStore, ChallengeAttempt, Claim, Creation,
    Email, EmailChangeOutcome, Factors, FlowMode, FlowResult, Invite, InviteId, InviteRedemption,
    InviteStore, Linking, LockoutKey, LoginAttemptStore, MfaChallenge, MfaStore, NewSession,
    NewUser, OAuthFlow, OAuthIdentity, OAuthStore, OneTimeToken, PasswordHash, PendingRegistration,
    PendingStore, Promotion, RateLimitStore, Redemption, RefreshFamily, RevokeReason, Rotation,
    Session, SessionId, SessionStart, SessionStore, StoreError, StoreHealth, Stores, Timestamp,
    TokenHash, TokenKind, TokenStore, TotpFactor, Unlinking, User, UserCounts, UserCursor,
    UserFilter, UserId, UserStore,
};

/// A fresh, empty, independent set of in-memory stores.
pub fn memory_stores() -> Stores {
    memory_stores_with_faults().0
}

/// Like [`memory_stores`], plus the switch that makes its operations fail.
pub fn memory_stores_with_faults() -> (Stores, FaultInjector) {
    let faults = FaultInjector::default();
    let store = Arc::new(MemoryStore {
        state: Mutex::default(),
        faults: faults.clone(),
    });
    let stores = Stores {
        users: store.clone(),
        pending: store.clone(),
        tokens: store.clone(),
        login_attempts: store.clone(),
        sessions: store.clone(),
        rate_limits: store.clone(),
        mfa: store.clone(),
        oauth: store.clone(),
        audit: store.clone(),
        invites: store.clone(),
        health: store,
    };
    (stores, faults)
}

/// Every operation name a [`FaultInjector`] accepts: the `Stores` field,
/// a dot, the trait method.
pub const OPERATIONS: &[&str] = &[
    "users.insert",
    "users.get",
    "users.find_by_email",
    "users.update_full_name",
    "users.upgrade_password_hash",
    "users.change_password",
    "users.complete_password_reset",
    "users.confirm_email_change",
    "users.delete_account",
    "users.count_users",
    "users.list_users",
    "users.search_users",
    "users.count_matching",
    "users.admin_update",
    "users.reenable_expired",
    "pending.put",
    "pending.find_by_email",
    "pending.replace_token",
    "pending.promote",
    "pending.promote_email",
    "pending.count_live",
    "pending.purge_expired",
    "tokens.issue",
    "tokens.peek",
    "tokens.purge_expired",
    "login_attempts.admit",
    "login_attempts.clear",
    "login_attempts.forget_address",
    "login_attempts.purge_expired",
    "sessions.start",
    "sessions.rotate",
    "sessions.list",
    "sessions.revoke_owned",
    "sessions.authenticate",
    "sessions.revoke",
    "sessions.revoke_all",
    "sessions.purge_expired",
    "rate_limits.hit",
    "rate_limits.purge_expired",
    "mfa.open_challenge",
    "mfa.attempt_challenge",
    "mfa.finish_challenge",
    "mfa.factors",
    "mfa.accept_totp_step",
    "mfa.spend_backup_code",
    "mfa.enable_totp",
    "mfa.disable_totp",
    "mfa.set_phone",
    "mfa.clear_phone",
    "mfa.replace_backup_codes",
    "mfa.set_must_change_password",
    "mfa.purge_expired",
    "oauth.begin",
    "oauth.claim",
    "oauth.complete",
    "oauth.redeem",
    "oauth.find_identity",
    "oauth.identities_of",
    "oauth.link_identity",
    "oauth.create_user_with_identity",
    "oauth.unlink_identity",
    "oauth.touch_identity",
    "oauth.purge_expired",
    "audit.append",
    "audit.query",
    "audit.purge_before",
    "invites.create",
    "invites.list",
    "invites.revoke",
    "invites.redeem",
    "invites.release",
    "invites.purge_expired",
    "health.ping",
    "health.schema_is_current",
];

/// Makes chosen operations of one set of in-memory stores fail with
/// [`StoreError::Unavailable`] (source: [`InjectedFault`]). A failing call
/// changes nothing, as a query that never reached the database would.
///
/// Operations are named as in [`OPERATIONS`] (`"users.insert"`,
/// `"pending.promote"`, `"sessions.authenticate"`, …); `"*"` stands for
/// all of them. Clones share one plan.
#[derive(Clone, Default)]
pub struct FaultInjector {
    plan: Arc<Mutex<HashMap<&'static str, Fault>>>,
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// The next `n` calls fail.
    Next(u32),
    /// Every call fails until healed.
    Always,
}

impl FaultInjector {
    /// The next call of `op` fails; calling this twice fails the next two.
    ///
    /// # Panics
    ///
    /// If `op` is not in [`OPERATIONS`] or `"*"`: a misspelt name would
    /// otherwise never fire, and the test would pass for the wrong reason.
    pub fn fail_next(&self, op: &'static str) {
        let op = known(op);
        let mut plan = self.plan();
        let next = match plan.get(op) {
            Some(Fault::Always) => Fault::Always,
            Some(Fault::Next(n)) => Fault::Next(n.saturating_add(1)),
            None => Fault::Next(1),
        };
        plan.insert(op, next);
    }

    /// Every call of `op` fails until [`heal`](Self::heal).
    ///
    /// # Panics
    ///
    /// If `op` is not in [`OPERATIONS`] or `"*"`.
    pub fn fail_always(&self, op: &'static str) {
        let op = known(op);
        self.plan().insert(op, Fault::Always);
    }

    /// Every operation works again.
    pub fn heal(&self) {
        self.plan().clear();
    }

    fn plan(&self) -> MutexGuard<'_, HashMap<&'static str, Fault>> {
        self.plan.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Called first by every store method, before it touches any state.
    fn check(&self, op: &'static str) -> Result<(), StoreError> {
        let mut plan = self.plan();
        for key in [op, "*"] {
            match plan.get(key).copied() {
                Some(Fault::Always) => return Err(StoreError::unavailable(InjectedFault { op })),
                Some(Fault::Next(n)) => {
                    if n <= 1 {
                        plan.remove(key);
                    } else {
                        plan.insert(key, Fault::Next(n - 1));
                    }
                    return Err(StoreError::unavailable(InjectedFault { op }));
                }
                None => {}
            }
        }
        Ok(())
    }
}

fn known(op: &'static str) -> &'static str {
    assert!(
        op == "*" || OPERATIONS.contains(&op),
        "unknown store operation {op:?}; expected \"*\" or one of {OPERATIONS:?}"
    );
    op
}

/// The error behind an injected [`StoreError::Unavailable`].
#[derive(Debug, Clone)]
pub struct InjectedFault {
    /// The operation that was told to fail.
    pub op: &'static str,
}

impl fmt::Display for InjectedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "injected fault in {}", self.op)
    }
}

impl std::error::Error for InjectedFault {}

/// One set of stores: the state and the fault plan.
struct MemoryStore {
    state: Mutex<State>,
    faults: FaultInjector,
}

impl MemoryStore {
    /// Checks the fault plan, then takes the one lock. A poisoned lock is
    /// taken anyway: no method panics half-way through a change, so a panic
    /// elsewhere (a failed assertion on another thread) leaves the state
    /// consistent, and refusing every later call would only hide the real
    /// failure behind a cascade of poison errors.
    fn enter(&self, op: &'static str) -> Result<MutexGuard<'_, State>, StoreError> {
        self.faults.check(op)?;
        Ok(self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Everything the stores hold. The tables mirror the SQL schema; the email
/// index is kept in step with `users` by the methods below, never by hand.
#[derive(Default)]
struct State {
    users: HashMap<UserId, User>,
    user_by_email: HashMap<Email, UserId>,
    pending: HashMap<Email, PendingRegistration>,
    tokens: HashMap<TokenHash, OneTimeToken>,
    /// One window per lockout bucket (an address's own, or one device's).
    attempts: HashMap<LockoutKey, Vec<Timestamp>>,
    sessions: HashMap<SessionId, Session>,
    refresh: HashMap<SessionId, Family>,
    hits: HashMap<String, Vec<Timestamp>>,
    /// Second-factor challenges by id (`mfa_codes`).
    challenges: HashMap<TokenHash, MfaChallenge>,
    /// TOTP factors by user (`mfa_totp`).
    totp: HashMap<UserId, TotpFactor>,
    /// Unspent backup codes by user (`mfa_backup_codes`).
    backup_codes: HashMap<UserId, HashSet<TokenHash>>,
    /// OAuth flows in flight by id (`oauth_states`).
    flows: HashMap<TokenHash, FlowRow>,
    /// Linked identities by `(issuer, subject)` (`oauth_identities`).
    identities: HashMap<(String, String), OAuthIdentity>,
    /// The audit log by id (`audit_log`).
    audit: HashMap<String, AuditEntry>,
    /// Invitations by id (`invites`).
    invites: HashMap<InviteId, Invite>,
}

/// An `oauth_states` row: the flow as started, whether a callback claimed
/// it, and what the callback decided once it completed.
struct FlowRow {
    flow: OAuthFlow,
    claimed: bool,
    /// The exchange id's hash and the callback's decision, once completed.
    result: Option<(TokenHash, FlowResult)>,
}

/// The refresh columns of a `sessions` row: the family's live token and
/// the one the last rotation spent, known only by their hashes.
struct Family {
    live: TokenHash,
    /// The token spent by the last rotation, and when.
    previous: Option<(TokenHash, Timestamp)>,
}

/// `now - window`, saturating: an absurd window counts everything.
fn window_start(now: Timestamp, window: TimeDelta) -> Timestamp {
    now.checked_sub_signed(window)
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Whether an account passes a [`UserFilter`].
fn matches(f: &UserFilter, u: &User) -> bool {
    let flag = |want: Option<bool>, have: bool| want.is_none_or(|w| w == have);
    f.email_contains
        .as_deref()
        .is_none_or(|part| u.email.as_str().contains(part))
        && flag(f.is_active, u.is_active)
        && flag(f.is_verified, u.is_verified)
        && flag(f.is_superuser, u.is_superuser)
        && flag(f.has_mfa, u.is_mfa_enabled)
}

/// A session is live while it is neither revoked nor past either of its
/// ends ([`Session::is_live`]); a dead one keeps what it died of.
fn is_live(session: &Session, now: Timestamp) -> bool {
    session.is_live(now)
}

impl State {
    /// Forgets every lockout bucket of an address: its own and each
    /// device's.
    fn forget_attempts(&mut self, email: &Email) {
        self.attempts.retain(|key, _| key.email() != email);
    }

    fn user_id_by_email(&self, email: &Email) -> Option<&UserId> {
        self.user_by_email.get(email)
    }

    fn insert_user(&mut self, user: User) -> Result<User, StoreError> {
        if self.user_by_email.contains_key(&user.email) {
            return Err(StoreError::Conflict("email"));
        }
        if self.users.contains_key(&user.id) {
            return Err(StoreError::Conflict("user id"));
        }
        self.user_by_email
            .insert(user.email.clone(), user.id.clone());
        self.users.insert(user.id.clone(), user.clone());
        Ok(user)
    }

    /// Revokes the user's live sessions; dead ones keep their own reason.
    fn revoke_live_sessions(&mut self, user: &UserId, reason: RevokeReason, now: Timestamp) -> u64 {
        let mut revoked = 0;
        for session in self.sessions.values_mut() {
            if &session.user_id == user && is_live(session, now) {
                session.revoked_at = Some(now);
                session.revoked_reason = Some(reason);
                revoked += 1;
            }
        }
        revoked
    }

    /// Removes and returns the live token of `kind` with `hash`: the
    /// "spend" step of a reset or an email change.
    fn take_live_token(
        &mut self,
        kind: TokenKind,
        hash: &TokenHash,
        now: Timestamp,
    ) -> Option<OneTimeToken> {
        let live = self
            .tokens
            .get(hash)
            .is_some_and(|t| t.kind == kind && t.expires_at > now);
        if live {
            self.tokens.remove(hash)
        } else {
            None
        }
    }

    /// The body of [`UserStore::change_password`], shared with the reset.
    fn change_password(
        &mut self,
        id: &UserId,
        new: &PasswordHash,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Option<User> {
        let user = self.users.get_mut(id)?;
        user.password_hash = Some(new.clone());
        user.must_change_password = false;
        user.updated_at = now;
        user.tokens_invalidated_after = Some(user.next_credential_epoch(now));
        let user = user.clone();
        self.revoke_live_sessions(id, reason, now);
        self.drop_credential_tokens(id);
        Some(user)
    }

    /// Deletes the user's reset and email-change tokens; revert tokens
    /// stay (the port's rule).
    fn drop_credential_tokens(&mut self, id: &UserId) {
        self.tokens
            .retain(|_, t| &t.user_id != id || t.kind == TokenKind::EmailChangeRevert);
    }

    /// Forgets the refresh state of sessions that are gone (in SQL these
    /// are columns of the session row and go with it).
    fn drop_orphaned_refresh_tokens(&mut self) {
        let sessions = &self.sessions;
        self.refresh.retain(|id, _| sessions.contains_key(id));
    }

    /// A session and its user, cloned for an answer.
    fn session_and_user(&self, id: &SessionId) -> Option<(Session, User)> {
        let session = self.sessions.get(id)?;
        let user = self.users.get(&session.user_id)?;
        Some((session.clone(), user.clone()))
    }

    /// The common tail of every factor change: `is_mfa_enabled` recomputed
    /// from what the user now has, `updated_at`, the credential epoch moved
    /// strictly forward, and every live session but `keep` revoked.
    fn factor_changed(&mut self, id: &UserId, keep: Option<&SessionId>, now: Timestamp) {
        let has_totp = self.totp.contains_key(id);
        let Some(user) = self.users.get_mut(id) else {
            return;
        };
        user.is_mfa_enabled = has_totp || user.phone_number.is_some();
        user.updated_at = now;
        user.tokens_invalidated_after = Some(user.next_credential_epoch(now));
        for session in self.sessions.values_mut() {
            if &session.user_id == id && Some(&session.id) != keep && is_live(session, now) {
                session.revoked_at = Some(now);
                session.revoked_reason = Some(RevokeReason::FactorChanged);
            }
        }
    }

    /// The body of both promotions, once the live pending row of `email`
    /// is chosen: it goes, and the verified user takes its place unless
    /// the address became an account meanwhile.
    fn promote_row(
        &mut self,
        email: &Email,
        id: &UserId,
        now: Timestamp,
    ) -> Result<Promotion, StoreError> {
        // Refuse before removing anything: "either both happen or neither".
        if self.users.contains_key(id) {
            return Err(StoreError::Conflict("user id"));
        }
        let Some(row) = self.pending.remove(email) else {
            return Ok(Promotion::InvalidToken);
        };
        if let Some(owner) = self.user_by_email.get(&row.email).cloned() {
            return Ok(match self.users.get_mut(&owner) {
                Some(user)
                    if !user.is_verified
                        && user.password_hash.as_ref() == Some(&row.password_hash) =>
                {
                    user.is_verified = true;
                    user.updated_at = now;
                    Promotion::Promoted(user.clone())
                }
                _ => Promotion::EmailTaken,
            });
        }
        let user = self.insert_user(
            NewUser {
                id: id.clone(),
                email: row.email,
                password_hash: Some(row.password_hash),
                full_name: row.full_name,
                is_verified: true,
                is_superuser: false,
                created_at: now,
            }
            .into_user(),
        )?;
        Ok(Promotion::Promoted(user))
    }

    /// Forgets every second-factor row of a user.
    fn forget_factors(&mut self, id: &UserId) {
        self.challenges.retain(|_, c| &c.user_id != id);
        self.totp.remove(id);
        self.backup_codes.remove(id);
    }

    /// Forgets the user's linked identities and the flows it started to
    /// link one (in SQL both cascade from the user row).
    fn forget_oauth(&mut self, id: &UserId) {
        self.identities.retain(|_, i| &i.user_id != id);
        self.flows
            .retain(|_, row| row.flow.mode != FlowMode::Link(id.clone()));
    }
}

#[async_trait]
impl UserStore for MemoryStore {
    async fn insert(&self, new: NewUser) -> Result<User, StoreError> {
        let mut st = self.enter("users.insert")?;
        st.insert_user(new.into_user())
    }

    async fn get(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        let st = self.enter("users.get")?;
        Ok(st.users.get(id).cloned())
    }

    async fn find_by_email(&self, email: &Email) -> Result<Option<User>, StoreError> {
        let st = self.enter("users.find_by_email")?;
        Ok(st
            .user_id_by_email(email)
            .and_then(|id| st.users.get(id))
            .cloned())
    }

    async fn update_full_name(
        &self,
        id: &UserId,
        full_name: Option<String>,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        let mut st = self.enter("users.update_full_name")?;
        Ok(st.users.get_mut(id).map(|user| {
            user.full_name = full_name;
            user.updated_at = now;
            user.clone()
        }))
    }

    async fn upgrade_password_hash(
        &self,
        id: &UserId,
        expected: &PasswordHash,
        new: &PasswordHash,
    ) -> Result<bool, StoreError> {
        let mut st = self.enter("users.upgrade_password_hash")?;
        match st.users.get_mut(id) {
            // Compare-and-swap: a password changed since the caller read
            // `expected` must not be overwritten by a rehash of the old one.
            // No `now`, so `updated_at` stays: the password did not change.
            Some(user) if user.password_hash.as_ref() == Some(expected) => {
                user.password_hash = Some(new.clone());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn change_password(
        &self,
        id: &UserId,
        new: &PasswordHash,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        let mut st = self.enter("users.change_password")?;
        Ok(st.change_password(id, new, reason, now))
    }

    async fn complete_password_reset(
        &self,
        token: &TokenHash,
        new: &PasswordHash,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        let mut st = self.enter("users.complete_password_reset")?;
        let Some(token) = st.take_live_token(TokenKind::PasswordReset, token, now) else {
            return Ok(None);
        };
        let user = st.change_password(&token.user_id, new, RevokeReason::PasswordReset, now);
        if let Some(user) = &user {
            // Whoever can read the mailbox has proven themselves; a lockout
            // left over from the attacker who prompted the reset must not
            // lock the owner out of the new password.
            st.forget_attempts(&user.email);
        }
        Ok(user)
    }

    async fn confirm_email_change(
        &self,
        token: &TokenHash,
        now: Timestamp,
    ) -> Result<EmailChangeOutcome, StoreError> {
        let mut st = self.enter("users.confirm_email_change")?;
        let Some(token) = st.take_live_token(TokenKind::EmailChange, token, now) else {
            return Ok(EmailChangeOutcome::InvalidToken);
        };
        // A change token without an address, or for a user since deleted,
        // cannot be acted on; it is spent all the same.
        let Some(new_email) = token.new_email else {
            return Ok(EmailChangeOutcome::InvalidToken);
        };
        // Split the guard so the row and the email index can be borrowed
        // together; both change in this one critical section.
        let st = &mut *st;
        let Some(user) = st.users.get_mut(&token.user_id) else {
            return Ok(EmailChangeOutcome::InvalidToken);
        };
        if st
            .user_by_email
            .get(&new_email)
            .is_some_and(|owner| owner != &user.id)
        {
            return Ok(EmailChangeOutcome::EmailTaken);
        }
        st.user_by_email.remove(&user.email);
        st.user_by_email.insert(new_email.clone(), user.id.clone());
        user.email = new_email;
        user.updated_at = now;
        user.tokens_invalidated_after = Some(user.next_credential_epoch(now));
        let user = user.clone();
        st.revoke_live_sessions(&user.id, RevokeReason::EmailChanged, now);
        st.drop_credential_tokens(&user.id);
        Ok(EmailChangeOutcome::Changed(user))
    }

    async fn revert_email_change(
        &self,
        token: &TokenHash,
        lockout: &PasswordHash,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        let mut st = self.enter("users.revert_email_change")?;
        let Some(token) = st.take_live_token(TokenKind::EmailChangeRevert, token, now) else {
            return Ok(None);
        };
        st.tokens.retain(|_, t| {
            !(t.user_id == token.user_id
                && t.kind == TokenKind::EmailChangeRevert
                && t.created_at >= token.created_at)
        });
        let st = &mut *st;
        let Some(user) = st.users.get_mut(&token.user_id) else {
            return Ok(None);
        };
        let previous = user.email.clone();
        if let Some(restore) = token.new_email {
            let free = st
                .user_by_email
                .get(&restore)
                .is_none_or(|owner| owner == &user.id);
            if free && restore != user.email {
                st.user_by_email.remove(&user.email);
                st.user_by_email.insert(restore.clone(), user.id.clone());
                user.email = restore;
            }
        }
        user.password_hash = Some(lockout.clone());
        user.must_change_password = false;
        user.updated_at = now;
        user.tokens_invalidated_after = Some(user.next_credential_epoch(now));
        let user = user.clone();
        st.revoke_live_sessions(&user.id, RevokeReason::EmailChanged, now);
        st.drop_credential_tokens(&user.id);
        st.forget_attempts(&previous);
        st.forget_attempts(&user.email);
        Ok(Some(user))
    }

    async fn delete_account(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        let mut st = self.enter("users.delete_account")?;
        let Some(user) = st.users.remove(id) else {
            return Ok(None);
        };
        st.user_by_email.remove(&user.email);
        st.sessions.retain(|_, s| &s.user_id != id);
        st.drop_orphaned_refresh_tokens();
        st.tokens.retain(|_, t| &t.user_id != id);
        st.forget_factors(id);
        st.forget_oauth(id);
        st.forget_attempts(&user.email);
        st.pending.remove(&user.email);
        // Rate-limit keys are `{purpose}:{email}`. Matching the whole
        // `:{email}` suffix (not a pattern) keeps `bob@x.org` from taking
        // `jbob@x.org`'s counters with it.
        let suffix = format!(":{}", user.email);
        st.hits.retain(|key, _| !key.ends_with(&suffix));
        st.invites.retain(|_, i| {
            i.email.as_ref() != Some(&user.email) && i.used_by.as_ref() != Some(&user.email)
        });
        for i in st.invites.values_mut() {
            if i.created_by.as_ref() == Some(id) {
                i.created_by = None;
            }
        }
        Ok(Some(user))
    }

    async fn count_users(&self) -> Result<UserCounts, StoreError> {
        let st = self.enter("users.count_users")?;
        let count = |f: fn(&User) -> bool| st.users.values().filter(|u| f(u)).count() as u64;
        Ok(UserCounts {
            total: st.users.len() as u64,
            active: count(|u| u.is_active),
            verified: count(|u| u.is_verified),
            superusers: count(|u| u.is_superuser),
        })
    }

    async fn list_users(&self, skip: u64, limit: u64) -> Result<Vec<User>, StoreError> {
        let st = self.enter("users.list_users")?;
        let mut all: Vec<&User> = st.users.values().collect();
        all.sort_by(|a, b| (b.created_at, b.id.as_str()).cmp(&(a.created_at, a.id.as_str())));
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        Ok(all.into_iter().skip(skip).take(limit).cloned().collect())
    }

    async fn search_users<'c>(
        &self,
        filter: &UserFilter,
        after: Option<&'c UserCursor>,
        skip: u64,
        limit: u64,
    ) -> Result<Vec<User>, StoreError> {
        let st = self.enter("users.search_users")?;
        let mut found: Vec<&User> = st
            .users
            .values()
            .filter(|u| matches(filter, u))
            .filter(|u| {
                after.is_none_or(|c| (u.created_at, u.id.as_str()) < (c.created_at, c.id.as_str()))
            })
            .collect();
        found.sort_by(|a, b| (b.created_at, b.id.as_str()).cmp(&(a.created_at, a.id.as_str())));
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        Ok(found.into_iter().skip(skip).take(limit).cloned().collect())
    }

    async fn count_matching(&self, filter: &UserFilter) -> Result<u64, StoreError> {
        let st = self.enter("users.count_matching")?;
        Ok(st.users.values().filter(|u| matches(filter, u)).count() as u64)
    }

    async fn admin_update(
        &self,
        id: &UserId,
        change: &AdminChange,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        let mut st = self.enter("users.admin_update")?;
        let Some(user) = st.users.get_mut(id) else {
            return Ok(None);
        };
        if change.is_empty() {
            return Ok(Some(user.clone()));
        }
        if let Some(active) = change.is_active {
            user.is_active = active;
        }
        if let Some(superuser) = change.is_superuser {
            user.is_superuser = superuser;
        }
        if let Some(name) = &change.full_name {
            user.full_name = Some(name.clone());
        }
        (user.disabled_reason, user.disabled_until) =
            change.disabled_fields((user.disabled_reason.take(), user.disabled_until));
        user.updated_at = now;
        let disabled = change.is_active == Some(false);
        if disabled {
            user.tokens_invalidated_after = Some(user.next_credential_epoch(now));
        }
        let user = user.clone();
        if disabled {
            st.revoke_live_sessions(id, RevokeReason::Disabled, now);
        }
        Ok(Some(user))
    }

    async fn reenable_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        let mut st = self.enter("users.reenable_expired")?;
        let mut n = 0;
        for user in st.users.values_mut() {
            if !user.is_active && user.is_active_at(now) {
                user.is_active = true;
                user.disabled_reason = None;
                user.disabled_until = None;
                user.updated_at = now;
                n += 1;
            }
        }
        Ok(n)
    }
}

#[async_trait]
impl PendingStore for MemoryStore {
    async fn put(&self, pending: PendingRegistration) -> Result<bool, StoreError> {
        let mut st = self.enter("pending.put")?;
        if st
            .pending
            .get(&pending.email)
            .is_some_and(|live| live.expires_at > pending.created_at)
        {
            return Ok(false);
        }
        st.pending.insert(pending.email.clone(), pending);
        Ok(true)
    }

    async fn find_by_email(
        &self,
        email: &Email,
        now: Timestamp,
    ) -> Result<Option<PendingRegistration>, StoreError> {
        let st = self.enter("pending.find_by_email")?;
        Ok(st
            .pending
            .get(email)
            .filter(|p| p.expires_at > now)
            .cloned())
    }

    async fn replace_token(
        &self,
        email: &Email,
        token: &TokenHash,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut st = self.enter("pending.replace_token")?;
        // Only a live row can be renewed: an expired one is as good as
        // purged, so whether a resend works never depends on when the
        // purge task last ran.
        match st.pending.get_mut(email) {
            Some(row) if row.expires_at > now => {
                row.token_hash = token.clone();
                row.expires_at = expires_at;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn promote(
        &self,
        token: &TokenHash,
        id: &UserId,
        now: Timestamp,
    ) -> Result<Promotion, StoreError> {
        let mut st = self.enter("pending.promote")?;
        let Some(email) = st
            .pending
            .values()
            .find(|p| &p.token_hash == token && p.expires_at > now)
            .map(|p| p.email.clone())
        else {
            return Ok(Promotion::InvalidToken);
        };
        st.promote_row(&email, id, now)
    }

    async fn promote_email(
        &self,
        email: &Email,
        id: &UserId,
        now: Timestamp,
    ) -> Result<Promotion, StoreError> {
        let mut st = self.enter("pending.promote_email")?;
        if st.pending.get(email).is_none_or(|p| p.expires_at <= now) {
            return Ok(Promotion::InvalidToken);
        }
        st.promote_row(email, id, now)
    }

    async fn count_live(&self, now: Timestamp) -> Result<u64, StoreError> {
        let st = self.enter("pending.count_live")?;
        Ok(st.pending.values().filter(|p| p.expires_at > now).count() as u64)
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        let mut st = self.enter("pending.purge_expired")?;
        let before = st.pending.len();
        st.pending.retain(|_, p| p.expires_at > now);
        Ok((before - st.pending.len()) as u64)
    }
}

#[async_trait]
impl TokenStore for MemoryStore {
    async fn issue(&self, token: OneTimeToken) -> Result<(), StoreError> {
        let mut st = self.enter("tokens.issue")?;
        // A user deleted before this issue gets nothing (the port's rule).
        if !st.users.contains_key(&token.user_id) {
            return Ok(());
        }
        let supersedes = |t: &OneTimeToken| {
            t.user_id == token.user_id
                && t.kind == token.kind
                && token.kind != TokenKind::EmailChangeRevert
        };
        // A hash is a primary key. Colliding with a row this call is about
        // to supersede is fine; with anyone else's, it is refused.
        if st.tokens.get(&token.hash).is_some_and(|t| !supersedes(t)) {
            return Err(StoreError::Conflict("token hash"));
        }
        st.tokens.retain(|_, t| !supersedes(t));
        st.tokens.insert(token.hash.clone(), token);
        Ok(())
    }

    async fn peek(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<OneTimeToken>, StoreError> {
        let st = self.enter("tokens.peek")?;
        Ok(st
            .tokens
            .get(hash)
            .filter(|t| t.kind == kind && t.expires_at > now)
            .cloned())
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        let mut st = self.enter("tokens.purge_expired")?;
        let before = st.tokens.len();
        st.tokens.retain(|_, t| t.expires_at > now);
        Ok((before - st.tokens.len()) as u64)
    }
}

#[async_trait]
impl LoginAttemptStore for MemoryStore {
    async fn admit(
        &self,
        key: &LockoutKey,
        now: Timestamp,
        window: TimeDelta,
        threshold: u32,
    ) -> Result<Admission, StoreError> {
        let mut st = self.enter("login_attempts.admit")?;
        let start = window_start(now, window);
        let attempts = st.attempts.entry(key.clone()).or_default();
        let mut counted: Vec<Timestamp> = attempts.iter().copied().filter(|&t| t > start).collect();
        let threshold = threshold as usize;
        if counted.len() < threshold {
            attempts.push(now);
            return Ok(Admission::Admitted {
                failures: u32::try_from(counted.len() + 1).unwrap_or(u32::MAX),
            });
        }
        // The lock lifts when enough of the oldest counted attempts have
        // left the window to bring the count below the threshold: that is
        // the (len - threshold)-th oldest. With a threshold of 0 nothing
        // ever helps; report one window from now.
        counted.sort_unstable();
        let retry_at = match threshold {
            0 => now + window,
            _ => counted[counted.len() - threshold] + window,
        };
        Ok(Admission::Locked { retry_at })
    }

    async fn clear(&self, key: &LockoutKey) -> Result<(), StoreError> {
        let mut st = self.enter("login_attempts.clear")?;
        st.attempts.remove(key);
        Ok(())
    }

    async fn forget_address(&self, email: &Email) -> Result<(), StoreError> {
        let mut st = self.enter("login_attempts.forget_address")?;
        st.forget_attempts(email);
        Ok(())
    }

    async fn purge_expired(&self, before: Timestamp) -> Result<u64, StoreError> {
        let mut st = self.enter("login_attempts.purge_expired")?;
        let mut removed = 0;
        for attempts in st.attempts.values_mut() {
            let len = attempts.len();
            attempts.retain(|&t| t >= before);
            removed += (len - attempts.len()) as u64;
        }
        st.attempts.retain(|_, a| !a.is_empty());
        Ok(removed)
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn start(&self, new: NewSession) -> Result<SessionStart, StoreError> {
        let mut st = self.enter("sessions.start")?;
        // Every refusal before any change: the session, its first token and
        // the `last_login` stamp land together or not at all.
        if st.sessions.contains_key(&new.id) {
            return Err(StoreError::Conflict("session id"));
        }
        let Some(user) = st
            .users
            .get_mut(&new.user_id)
            .filter(|u| u.tokens_invalidated_after == new.credential_epoch)
        else {
            return Ok(SessionStart::Stale);
        };
        user.last_login = Some(new.created_at);
        st.refresh.insert(
            new.id.clone(),
            Family {
                live: new.refresh_hash,
                previous: None,
            },
        );
        st.sessions.insert(
            new.id.clone(),
            Session {
                id: new.id,
                user_id: new.user_id,
                created_at: new.created_at,
                last_used_at: new.created_at,
                expires_at: new.expires_at,
                idle_expires_at: new.idle_expires_at,
                user_agent: new.user_agent,
                ip: new.ip,
                revoked_at: None,
                revoked_reason: None,
            },
        );
        Ok(SessionStart::Started)
    }

    async fn rotate(
        &self,
        id: &SessionId,
        presented: &TokenHash,
        successor: &TokenHash,
        now: Timestamp,
        idle: TimeDelta,
    ) -> Result<Rotation, StoreError> {
        // One critical section from the first read to the last write: the
        // decision "this token is the live one" and spending it cannot be
        // separated by another caller.
        let mut st = self.enter("sessions.rotate")?;
        let live = st.sessions.get(id).is_some_and(|s| is_live(s, now));
        let family = st.refresh.get_mut(id);
        if let Some(family) = family.filter(|f| live && &f.live == presented) {
            // The family's live token: spend it, make the successor live,
            // move the idle end forward but never past the absolute end.
            family.previous = Some((std::mem::replace(&mut family.live, successor.clone()), now));
            if let Some(session) = st.sessions.get_mut(id) {
                session.last_used_at = now;
                session.idle_expires_at = now
                    .checked_add_signed(idle)
                    .map_or(session.expires_at, |idle_end| {
                        idle_end.min(session.expires_at)
                    });
            }
            return Ok(match st.session_and_user(id) {
                Some((session, user)) => Rotation::Rotated { session, user },
                None => Rotation::Unknown,
            });
        }
        // A miss: report the record as it stands; the caller judges it.
        let Some((session, user)) = st.session_and_user(id) else {
            return Ok(Rotation::Unknown);
        };
        let family = st.refresh.get(id);
        Ok(Rotation::NotLive(RefreshFamily {
            session,
            user,
            live: family.map(|f| f.live.clone()),
            previous: family.and_then(|f| f.previous.as_ref().map(|(h, _)| h.clone())),
            rotated_at: family.and_then(|f| f.previous.as_ref().map(|(_, at)| *at)),
        }))
    }

    async fn list(&self, user: &UserId, now: Timestamp) -> Result<Vec<Session>, StoreError> {
        let st = self.enter("sessions.list")?;
        let mut live: Vec<Session> = st
            .sessions
            .values()
            .filter(|s| &s.user_id == user && is_live(s, now))
            .cloned()
            .collect();
        // Newest first; the id breaks ties so the order is total.
        live.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        Ok(live)
    }

    async fn revoke_owned(
        &self,
        id: &SessionId,
        owner: &UserId,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut st = self.enter("sessions.revoke_owned")?;
        match st.sessions.get_mut(id) {
            Some(session) if &session.user_id == owner && is_live(session, now) => {
                session.revoked_at = Some(now);
                session.revoked_reason = Some(reason);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn authenticate(&self, id: &SessionId) -> Result<Option<(Session, User)>, StoreError> {
        let st = self.enter("sessions.authenticate")?;
        Ok(st.session_and_user(id))
    }

    async fn revoke(
        &self,
        id: &SessionId,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut st = self.enter("sessions.revoke")?;
        match st.sessions.get_mut(id) {
            // A dead session keeps the reason it died of: that is what the
            // next request with its token is told.
            Some(session) if is_live(session, now) => {
                session.revoked_at = Some(now);
                session.revoked_reason = Some(reason);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn revoke_all(
        &self,
        user: &UserId,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut st = self.enter("sessions.revoke_all")?;
        Ok(st.revoke_live_sessions(user, reason, now))
    }

    async fn purge_expired(&self, before: Timestamp) -> Result<u64, StoreError> {
        let mut st = self.enter("sessions.purge_expired")?;
        let len = st.sessions.len();
        // A session ended when it expired, idled out or was revoked,
        // whichever came first; its refresh tokens go with it.
        st.sessions.retain(|_, s| {
            let ended_before = s.expires_at < before
                || s.idle_expires_at < before
                || s.revoked_at.is_some_and(|r| r < before);
            !ended_before
        });
        st.drop_orphaned_refresh_tokens();
        Ok((len - st.sessions.len()) as u64)
    }
}

#[async_trait]
impl RateLimitStore for MemoryStore {
    async fn hit(
        &self,
        key: &str,
        now: Timestamp,
        window: TimeDelta,
        limit: u32,
    ) -> Result<bool, StoreError> {
        let mut st = self.enter("rate_limits.hit")?;
        let start = window_start(now, window);
        let hits = st.hits.entry(key.to_owned()).or_default();
        let counted = hits.iter().filter(|&&t| t > start).count();
        if counted < limit as usize {
            hits.push(now);
            Ok(true)
        } else {
            Ok(false)
        }
    }

    async fn purge_expired(&self, before: Timestamp) -> Result<u64, StoreError> {
        let mut st = self.enter("rate_limits.purge_expired")?;
        let mut removed = 0;
        for hits in st.hits.values_mut() {
            let len = hits.len();
            hits.retain(|&t| t >= before);
            removed += (len - hits.len()) as u64;
        }
        st.hits.retain(|_, h| !h.is_empty());
        Ok(removed)
    }
}

#[async_trait]
impl AuditStore for MemoryStore {
    async fn append(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        let mut st = self.enter("audit.append")?;
        for e in entries {
            st.audit.entry(e.id.clone()).or_insert_with(|| e.clone());
        }
        Ok(())
    }

    async fn query(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let st = self.enter("audit.query")?;
        let key = |e: &AuditEntry| (e.at, e.id.clone());
        let mut rows: Vec<&AuditEntry> = st
            .audit
            .values()
            .filter(|e| {
                q.user_id
                    .as_ref()
                    .is_none_or(|u| e.user_id.as_ref() == Some(u) || e.actor_id.as_ref() == Some(u))
            })
            .filter(|e| q.email.as_ref().is_none_or(|m| e.email.as_ref() == Some(m)))
            .filter(|e| q.kind.as_ref().is_none_or(|k| &e.kind == k))
            .filter(|e| q.since.is_none_or(|t| e.at >= t))
            .filter(|e| q.until.is_none_or(|t| e.at < t))
            .filter(|e| {
                q.after.as_ref().is_none_or(|c| {
                    let here = key(e);
                    let there = (c.at, c.id.clone());
                    if q.newest_first {
                        here < there
                    } else {
                        here > there
                    }
                })
            })
            .collect();
        rows.sort_by_key(|e| key(e));
        if q.newest_first {
            rows.reverse();
        }
        Ok(rows.into_iter().take(q.limit as usize).cloned().collect())
    }

    async fn purge_before(&self, before: Timestamp) -> Result<u64, StoreError> {
        let mut st = self.enter("audit.purge_before")?;
        let len = st.audit.len();
        st.audit.retain(|_, e| e.at >= before);
        Ok((len - st.audit.len()) as u64)
    }
}

#[async_trait]
impl MfaStore for MemoryStore {
    async fn open_challenge(&self, challenge: MfaChallenge) -> Result<(), StoreError> {
        let mut st = self.enter("mfa.open_challenge")?;
        // A user deleted before this open gets nothing (as `tokens.issue`).
        if !st.users.contains_key(&challenge.user_id) {
            return Ok(());
        }
        let supersedes =
            |c: &MfaChallenge| c.user_id == challenge.user_id && c.kind == challenge.kind;
        if st
            .challenges
            .get(&challenge.id)
            .is_some_and(|c| !supersedes(c))
        {
            return Err(StoreError::Conflict("challenge id"));
        }
        st.challenges.retain(|_, c| !supersedes(c));
        st.challenges.insert(challenge.id.clone(), challenge);
        Ok(())
    }

    async fn attempt_challenge(
        &self,
        id: &TokenHash,
        now: Timestamp,
    ) -> Result<ChallengeAttempt, StoreError> {
        let mut st = self.enter("mfa.attempt_challenge")?;
        match st.challenges.get_mut(id) {
            Some(c) if c.expires_at > now && c.attempts_left > 0 => {
                c.attempts_left -= 1;
                Ok(ChallengeAttempt::Counted(c.clone()))
            }
            Some(c) if c.expires_at > now => {
                st.challenges.remove(id);
                Ok(ChallengeAttempt::Exhausted)
            }
            _ => Ok(ChallengeAttempt::Unknown),
        }
    }

    async fn finish_challenge(
        &self,
        id: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<MfaChallenge>, StoreError> {
        let mut st = self.enter("mfa.finish_challenge")?;
        if st.challenges.get(id).is_some_and(|c| c.expires_at > now) {
            Ok(st.challenges.remove(id))
        } else {
            Ok(None)
        }
    }

    async fn factors(&self, user: &UserId) -> Result<Factors, StoreError> {
        let st = self.enter("mfa.factors")?;
        Ok(Factors {
            totp: st.totp.get(user).cloned(),
            phone_number: st.users.get(user).and_then(|u| u.phone_number.clone()),
            backup_codes_left: st
                .backup_codes
                .get(user)
                .map_or(0, |codes| u32::try_from(codes.len()).unwrap_or(u32::MAX)),
        })
    }

    async fn accept_totp_step(&self, user: &UserId, step: u64) -> Result<bool, StoreError> {
        let mut st = self.enter("mfa.accept_totp_step")?;
        match st.totp.get_mut(user) {
            Some(f) if f.last_step.is_none_or(|last| last < step) => {
                f.last_step = Some(step);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn spend_backup_code(&self, user: &UserId, hash: &TokenHash) -> Result<bool, StoreError> {
        let mut st = self.enter("mfa.spend_backup_code")?;
        Ok(st
            .backup_codes
            .get_mut(user)
            .is_some_and(|codes| codes.remove(hash)))
    }

    async fn enable_totp<'k>(
        &self,
        user: &UserId,
        sealed_secret: &str,
        backup_codes: &[TokenHash],
        keep: Option<&'k SessionId>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut st = self.enter("mfa.enable_totp")?;
        if !st.users.contains_key(user) {
            return Ok(false);
        }
        st.totp.insert(
            user.clone(),
            TotpFactor {
                sealed_secret: sealed_secret.to_owned(),
                last_step: None,
                created_at: now,
            },
        );
        st.backup_codes
            .insert(user.clone(), backup_codes.iter().cloned().collect());
        st.factor_changed(user, keep, now);
        Ok(true)
    }

    async fn disable_totp<'k>(
        &self,
        user: &UserId,
        keep: Option<&'k SessionId>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut st = self.enter("mfa.disable_totp")?;
        if st.totp.remove(user).is_none() {
            return Ok(false);
        }
        if st.users.get(user).is_none_or(|u| u.phone_number.is_none()) {
            st.backup_codes.remove(user);
        }
        st.factor_changed(user, keep, now);
        Ok(true)
    }

    async fn set_phone<'k>(
        &self,
        user: &UserId,
        phone: &str,
        keep: Option<&'k SessionId>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut st = self.enter("mfa.set_phone")?;
        let Some(u) = st.users.get_mut(user) else {
            return Ok(false);
        };
        u.phone_number = Some(phone.to_owned());
        st.factor_changed(user, keep, now);
        Ok(true)
    }

    async fn clear_phone<'k>(
        &self,
        user: &UserId,
        keep: Option<&'k SessionId>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut st = self.enter("mfa.clear_phone")?;
        let Some(u) = st.users.get_mut(user).filter(|u| u.phone_number.is_some()) else {
            return Ok(false);
        };
        u.phone_number = None;
        if !st.totp.contains_key(user) {
            st.backup_codes.remove(user);
        }
        st.factor_changed(user, keep, now);
        Ok(true)
    }

    async fn replace_backup_codes(
        &self,
        user: &UserId,
        codes: &[TokenHash],
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut st = self.enter("mfa.replace_backup_codes")?;
        let Some(u) = st.users.get_mut(user) else {
            return Ok(false);
        };
        u.updated_at = now;
        st.backup_codes
            .insert(user.clone(), codes.iter().cloned().collect());
        Ok(true)
    }

    async fn set_must_change_password(
        &self,
        user: &UserId,
        value: bool,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut st = self.enter("mfa.set_must_change_password")?;
        Ok(st.users.get_mut(user).is_some_and(|u| {
            u.must_change_password = value;
            u.updated_at = now;
            true
        }))
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        let mut st = self.enter("mfa.purge_expired")?;
        let before = st.challenges.len();
        st.challenges.retain(|_, c| c.expires_at > now);
        Ok((before - st.challenges.len()) as u64)
    }
}

#[async_trait]
impl OAuthStore for MemoryStore {
    async fn begin(&self, flow: OAuthFlow) -> Result<(), StoreError> {
        let mut st = self.enter("oauth.begin")?;
        // A link for an account deleted before this begin gets nothing
        // (the port's rule, as `tokens.issue`).
        if let FlowMode::Link(user) = &flow.mode {
            if !st.users.contains_key(user) {
                return Ok(());
            }
        }
        if st.flows.contains_key(&flow.id) {
            return Err(StoreError::Conflict("flow id"));
        }
        st.flows.insert(
            flow.id.clone(),
            FlowRow {
                flow,
                claimed: false,
                result: None,
            },
        );
        Ok(())
    }

    async fn claim(
        &self,
        id: &TokenHash,
        provider: &str,
        now: Timestamp,
    ) -> Result<Claim, StoreError> {
        let mut st = self.enter("oauth.claim")?;
        let Some(row) = st
            .flows
            .get_mut(id)
            .filter(|row| !row.claimed && row.flow.provider == provider)
        else {
            return Ok(Claim::Unknown);
        };
        if row.flow.expires_at > now {
            row.claimed = true;
            return Ok(Claim::Claimed(Box::new(row.flow.clone())));
        }
        st.flows.remove(id);
        Ok(Claim::Expired)
    }

    async fn complete(
        &self,
        id: &TokenHash,
        exchange: &TokenHash,
        result: &FlowResult,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut st = self.enter("oauth.complete")?;
        let clash = st.flows.iter().any(|(other, row)| {
            other != id && row.result.as_ref().is_some_and(|(x, _)| x == exchange)
        });
        if clash {
            return Err(StoreError::Conflict("exchange id"));
        }
        match st.flows.get_mut(id) {
            Some(row) if row.claimed && row.result.is_none() => {
                row.result = Some((exchange.clone(), result.clone()));
                row.flow.expires_at = expires_at;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn redeem(
        &self,
        exchange: &TokenHash,
        browser: &TokenHash,
        now: Timestamp,
    ) -> Result<Redemption, StoreError> {
        let mut st = self.enter("oauth.redeem")?;
        // Another browser's flow is left exactly as it is: a stranger who
        // learnt the id cannot spend it for the owner.
        let Some(id) = st
            .flows
            .iter()
            .find(|(_, row)| {
                row.result.as_ref().is_some_and(|(x, _)| x == exchange)
                    && &row.flow.browser == browser
            })
            .map(|(id, _)| id.clone())
        else {
            return Ok(Redemption::Unknown);
        };
        let Some(FlowRow {
            flow,
            result: Some((_, result)),
            ..
        }) = st.flows.remove(&id)
        else {
            return Ok(Redemption::Unknown);
        };
        if flow.expires_at > now {
            Ok(Redemption::Redeemed {
                flow: Box::new(flow),
                result,
            })
        } else {
            Ok(Redemption::Expired)
        }
    }

    async fn find_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<OAuthIdentity>, StoreError> {
        let st = self.enter("oauth.find_identity")?;
        Ok(st
            .identities
            .get(&(issuer.to_owned(), subject.to_owned()))
            .cloned())
    }

    async fn identities_of(&self, user: &UserId) -> Result<Vec<OAuthIdentity>, StoreError> {
        let st = self.enter("oauth.identities_of")?;
        let mut found: Vec<OAuthIdentity> = st
            .identities
            .values()
            .filter(|i| &i.user_id == user)
            .cloned()
            .collect();
        found.sort_by(|a, b| (a.linked_at, &a.provider).cmp(&(b.linked_at, &b.provider)));
        Ok(found)
    }

    async fn link_identity(&self, identity: &OAuthIdentity) -> Result<Linking, StoreError> {
        let mut st = self.enter("oauth.link_identity")?;
        if !st.users.contains_key(&identity.user_id) {
            return Ok(Linking::NoUser);
        }
        let key = (identity.issuer.clone(), identity.subject.clone());
        if st.identities.contains_key(&key) {
            return Ok(Linking::IdentityInUse);
        }
        if st
            .identities
            .values()
            .any(|i| i.user_id == identity.user_id && i.provider == identity.provider)
        {
            return Ok(Linking::ProviderTaken);
        }
        st.identities.insert(key, identity.clone());
        Ok(Linking::Linked)
    }

    async fn create_user_with_identity(
        &self,
        new: NewUser,
        identity: &OAuthIdentity,
    ) -> Result<Creation, StoreError> {
        let mut st = self.enter("oauth.create_user_with_identity")?;
        // Every refusal before any change: both rows or neither.
        let key = (identity.issuer.clone(), identity.subject.clone());
        if st.identities.contains_key(&key) {
            return Ok(Creation::IdentityInUse);
        }
        if st.user_by_email.contains_key(&new.email) {
            return Ok(Creation::EmailTaken);
        }
        let user = st.insert_user(new.into_user())?;
        st.identities.insert(
            key,
            OAuthIdentity {
                user_id: user.id.clone(),
                ..identity.clone()
            },
        );
        Ok(Creation::Created(user))
    }

    async fn unlink_identity(
        &self,
        user: &UserId,
        provider: &str,
    ) -> Result<Unlinking, StoreError> {
        let mut st = self.enter("oauth.unlink_identity")?;
        let Some(key) = st
            .identities
            .iter()
            .find(|(_, i)| &i.user_id == user && i.provider == provider)
            .map(|(key, _)| key.clone())
        else {
            return Ok(Unlinking::NotLinked);
        };
        let has_password = st
            .users
            .get(user)
            .is_some_and(|u| u.password_hash.is_some());
        let identities = st
            .identities
            .values()
            .filter(|i| &i.user_id == user)
            .count();
        if !has_password && identities <= 1 {
            return Ok(Unlinking::LastSignInMethod);
        }
        match st.identities.remove(&key) {
            Some(identity) => Ok(Unlinking::Unlinked(identity)),
            None => Ok(Unlinking::NotLinked),
        }
    }

    async fn touch_identity(
        &self,
        issuer: &str,
        subject: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut st = self.enter("oauth.touch_identity")?;
        match st
            .identities
            .get_mut(&(issuer.to_owned(), subject.to_owned()))
        {
            Some(identity) => {
                identity.last_used_at = Some(now);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        let mut st = self.enter("oauth.purge_expired")?;
        let before = st.flows.len();
        st.flows.retain(|_, row| row.flow.expires_at > now);
        Ok((before - st.flows.len()) as u64)
    }
}

#[async_trait]
impl InviteStore for MemoryStore {
    async fn create(&self, invite: Invite) -> Result<(), StoreError> {
        let mut st = self.enter("invites.create")?;
        if st.invites.contains_key(&invite.id)
            || st.invites.values().any(|i| i.code_hash == invite.code_hash)
        {
            return Err(StoreError::Conflict("invite"));
        }
        st.invites.insert(invite.id.clone(), invite);
        Ok(())
    }

    async fn list(
        &self,
        include_closed: bool,
        limit: u64,
        now: Timestamp,
    ) -> Result<Vec<Invite>, StoreError> {
        let st = self.enter("invites.list")?;
        let mut all: Vec<Invite> = st
            .invites
            .values()
            .filter(|i| include_closed || i.is_open(now))
            .cloned()
            .collect();
        all.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        all.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(all)
    }

    async fn revoke(&self, id: &InviteId, now: Timestamp) -> Result<Option<Invite>, StoreError> {
        let mut st = self.enter("invites.revoke")?;
        match st.invites.get_mut(id) {
            Some(i) if i.used_at.is_none() && i.revoked_at.is_none() => {
                i.revoked_at = Some(now);
                Ok(Some(i.clone()))
            }
            _ => Ok(None),
        }
    }

    async fn redeem(
        &self,
        code: &TokenHash,
        email: &Email,
        now: Timestamp,
    ) -> Result<InviteRedemption, StoreError> {
        let mut st = self.enter("invites.redeem")?;
        let Some(invite) = st.invites.values_mut().find(|i| &i.code_hash == code) else {
            return Ok(InviteRedemption::Unknown);
        };
        Ok(if invite.revoked_at.is_some() {
            InviteRedemption::Revoked
        } else if invite.used_at.is_some() {
            InviteRedemption::Spent
        } else if invite.expires_at <= now {
            InviteRedemption::Expired
        } else if invite.email.as_ref().is_some_and(|bound| bound != email) {
            InviteRedemption::WrongAddress
        } else {
            invite.used_at = Some(now);
            invite.used_by = Some(email.clone());
            InviteRedemption::Redeemed(invite.clone())
        })
    }

    async fn release(&self, id: &InviteId, email: &Email) -> Result<bool, StoreError> {
        let mut st = self.enter("invites.release")?;
        match st.invites.get_mut(id) {
            Some(i) if i.used_at.is_some() && i.used_by.as_ref() == Some(email) => {
                i.used_at = None;
                i.used_by = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        let mut st = self.enter("invites.purge_expired")?;
        let before = st.invites.len();
        st.invites.retain(|_, i| i.expires_at > now);
        Ok((before - st.invites.len()) as u64)
    }
}

#[async_trait]
impl StoreHealth for MemoryStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.enter("health.ping").map(drop)
    }

    async fn schema_is_current(&self) -> Result<bool, StoreError> {
        // Memory has no schema to fall behind.
        self.enter("health.schema_is_current").map(|_| true)
    }
}
