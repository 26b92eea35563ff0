//! The contract suite must fail a store that breaks the contract, or its
//! passes mean nothing. Each test here wraps the in-memory stores with one
//! realistic defect and checks that the case written against that defect
//! panics.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::TimeDelta;
use regstack_ports::{
    Admission, Email, EmailChangeOutcome, LockoutKey, LoginAttemptStore, NewSession, NewUser,
    OneTimeToken, PasswordHash, PendingRegistration, PendingStore, Promotion, RevokeReason,
    Rotation, Session, SessionId, SessionStart, SessionStore, StoreError, Stores, Timestamp,
    TokenHash, TokenKind, TokenStore, User, UserId, UserStore,
};
use regstack_testkit::{contract, memory_stores};

/// Runs a case and reports whether it failed.
fn fails<F, Fut>(case: F, stores: Stores) -> bool
where
    F: FnOnce(Stores) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let outcome = catch_unwind(AssertUnwindSafe(|| contract::run_case(case(stores))));
    outcome.is_err()
}

/// Read-then-write reset: checks the token with `peek`, gives the other
/// racers time to do the same, then changes the password without spending
/// the token atomically. The classic double-spend.
struct RacyReset {
    inner: Stores,
}

#[async_trait]
impl UserStore for RacyReset {
    async fn insert(&self, user: NewUser) -> Result<User, StoreError> {
        self.inner.users.insert(user).await
    }
    async fn get(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        self.inner.users.get(id).await
    }
    async fn find_by_email(&self, email: &Email) -> Result<Option<User>, StoreError> {
        self.inner.users.find_by_email(email).await
    }
    async fn update_full_name(
        &self,
        id: &UserId,
        full_name: Option<String>,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        self.inner.users.update_full_name(id, full_name, now).await
    }
    async fn upgrade_password_hash(
        &self,
        id: &UserId,
        expected: &PasswordHash,
        new: &PasswordHash,
    ) -> Result<bool, StoreError> {
        self.inner
            .users
            .upgrade_password_hash(id, expected, new)
            .await
    }
    async fn change_password(
        &self,
        id: &UserId,
        new: &PasswordHash,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        self.inner.users.change_password(id, new, reason, now).await
    }
    async fn complete_password_reset(
        &self,
        token: &TokenHash,
        new: &PasswordHash,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        let Some(t) = self
            .inner
            .tokens
            .peek(TokenKind::PasswordReset, token, now)
            .await?
        else {
            return Ok(None);
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.inner
            .users
            .change_password(&t.user_id, new, RevokeReason::PasswordReset, now)
            .await
    }
    async fn confirm_email_change(
        &self,
        token: &TokenHash,
        now: Timestamp,
    ) -> Result<EmailChangeOutcome, StoreError> {
        self.inner.users.confirm_email_change(token, now).await
    }
    async fn delete_account(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        self.inner.users.delete_account(id).await
    }
}

#[test]
fn a_read_then_write_reset_fails_the_race_case() {
    let inner = memory_stores();
    let stores = Stores {
        users: Arc::new(RacyReset {
            inner: inner.clone(),
        }),
        ..inner
    };
    assert!(fails(
        contract::complete_password_reset_is_single_use_under_20_parallel_attempts,
        stores
    ));
}

/// Looks tokens up by hash alone, forgetting the kind.
struct KindBlind {
    inner: Stores,
}

#[async_trait]
impl TokenStore for KindBlind {
    async fn issue(&self, token: OneTimeToken) -> Result<(), StoreError> {
        self.inner.tokens.issue(token).await
    }
    async fn peek(
        &self,
        _kind: TokenKind,
        hash: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<OneTimeToken>, StoreError> {
        for kind in [TokenKind::PasswordReset, TokenKind::EmailChange] {
            if let Some(t) = self.inner.tokens.peek(kind, hash, now).await? {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }
    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.inner.tokens.purge_expired(now).await
    }
}

#[test]
fn a_kind_blind_token_lookup_fails_the_kind_binding_case() {
    let inner = memory_stores();
    let stores = Stores {
        tokens: Arc::new(KindBlind {
            inner: inner.clone(),
        }),
        ..inner
    };
    assert!(fails(
        contract::reset_token_is_not_an_email_change_token,
        stores
    ));
}

/// Compares expiry with `>=` instead of `>`: alive at `expires_at`.
struct OffByOneExpiry {
    inner: Stores,
}

#[async_trait]
impl PendingStore for OffByOneExpiry {
    async fn put(&self, pending: PendingRegistration) -> Result<bool, StoreError> {
        self.inner.pending.put(pending).await
    }
    async fn find_by_email(
        &self,
        email: &Email,
        now: Timestamp,
    ) -> Result<Option<PendingRegistration>, StoreError> {
        let earlier = now - TimeDelta::microseconds(1);
        self.inner.pending.find_by_email(email, earlier).await
    }
    async fn replace_token(
        &self,
        email: &Email,
        token: &TokenHash,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.inner
            .pending
            .replace_token(email, token, expires_at, now)
            .await
    }
    async fn promote(
        &self,
        token: &TokenHash,
        id: &UserId,
        now: Timestamp,
    ) -> Result<Promotion, StoreError> {
        let earlier = now - TimeDelta::microseconds(1);
        self.inner.pending.promote(token, id, earlier).await
    }
    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.inner.pending.purge_expired(now).await
    }
}

#[test]
fn an_off_by_one_expiry_fails_the_expiry_case() {
    let inner = memory_stores();
    let stores = Stores {
        pending: Arc::new(OffByOneExpiry {
            inner: inner.clone(),
        }),
        ..inner
    };
    assert!(fails(
        contract::expired_pending_registration_cannot_be_promoted,
        stores
    ));
}

/// Revokes whatever it is asked to, dead or alive, overwriting the reason.
struct OverwritingRevoke {
    inner: Stores,
}

#[async_trait]
impl SessionStore for OverwritingRevoke {
    async fn start(&self, session: NewSession) -> Result<SessionStart, StoreError> {
        self.inner.sessions.start(session).await
    }
    async fn rotate(
        &self,
        id: &SessionId,
        presented: &TokenHash,
        successor: &TokenHash,
        now: Timestamp,
        idle: TimeDelta,
    ) -> Result<Rotation, StoreError> {
        self.inner
            .sessions
            .rotate(id, presented, successor, now, idle)
            .await
    }
    async fn list(&self, user: &UserId, now: Timestamp) -> Result<Vec<Session>, StoreError> {
        self.inner.sessions.list(user, now).await
    }
    async fn revoke_owned(
        &self,
        id: &SessionId,
        owner: &UserId,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.inner
            .sessions
            .revoke_owned(id, owner, reason, now)
            .await
    }
    async fn authenticate(&self, id: &SessionId) -> Result<Option<(Session, User)>, StoreError> {
        self.inner.sessions.authenticate(id).await
    }
    async fn revoke(
        &self,
        id: &SessionId,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        // Pretends every call succeeded, as `UPDATE … WHERE id = ?` without
        // the liveness condition would.
        let _ = self.inner.sessions.revoke(id, reason, now).await?;
        Ok(self.inner.sessions.authenticate(id).await?.is_some())
    }
    async fn revoke_all(
        &self,
        user: &UserId,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.inner.sessions.revoke_all(user, reason, now).await
    }
    async fn purge_expired(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.inner.sessions.purge_expired(before).await
    }
}

#[test]
fn a_revoke_without_a_liveness_check_fails_the_idempotence_case() {
    let inner = memory_stores();
    let stores = Stores {
        sessions: Arc::new(OverwritingRevoke {
            inner: inner.clone(),
        }),
        ..inner
    };
    assert!(fails(
        contract::revoke_is_idempotent_and_reports_liveness,
        stores
    ));
}

/// Read-then-write rotation: decides "this token is still unspent" in one
/// critical section, gives the other racers time to decide the same, and
/// spends it in another. Every presentation that read before the first
/// write believes it won, so one token rotates many times.
struct RacyRotate {
    inner: Stores,
    spent: Mutex<HashSet<TokenHash>>,
}

#[async_trait]
impl SessionStore for RacyRotate {
    async fn start(&self, session: NewSession) -> Result<SessionStart, StoreError> {
        self.inner.sessions.start(session).await
    }
    async fn rotate(
        &self,
        id: &SessionId,
        presented: &TokenHash,
        successor: &TokenHash,
        now: Timestamp,
        idle: TimeDelta,
    ) -> Result<Rotation, StoreError> {
        let already_spent = self
            .spent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(presented);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let outcome = self
            .inner
            .sessions
            .rotate(id, presented, successor, now, idle)
            .await?;
        if already_spent {
            return Ok(outcome);
        }
        self.spent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(presented.clone());
        // What the stale read decided: "unspent, so this call rotated".
        Ok(match outcome {
            Rotation::NotLive(f) => Rotation::Rotated {
                session: f.session,
                user: f.user,
            },
            other => other,
        })
    }
    async fn list(&self, user: &UserId, now: Timestamp) -> Result<Vec<Session>, StoreError> {
        self.inner.sessions.list(user, now).await
    }
    async fn revoke_owned(
        &self,
        id: &SessionId,
        owner: &UserId,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.inner
            .sessions
            .revoke_owned(id, owner, reason, now)
            .await
    }
    async fn authenticate(&self, id: &SessionId) -> Result<Option<(Session, User)>, StoreError> {
        self.inner.sessions.authenticate(id).await
    }
    async fn revoke(
        &self,
        id: &SessionId,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.inner.sessions.revoke(id, reason, now).await
    }
    async fn revoke_all(
        &self,
        user: &UserId,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.inner.sessions.revoke_all(user, reason, now).await
    }
    async fn purge_expired(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.inner.sessions.purge_expired(before).await
    }
}

#[test]
fn a_read_then_write_rotation_fails_the_parallel_rotation_case() {
    let inner = memory_stores();
    let stores = Stores {
        sessions: Arc::new(RacyRotate {
            inner: inner.clone(),
            spent: Mutex::default(),
        }),
        ..inner
    };
    assert!(fails(
        contract::rotate_with_20_parallel_presentations_yields_one_rotation_and_reports_it_to_the_rest,
        stores
    ));
}

/// A lockout counter that knows addresses only: every device's attempts
/// land in the address's bucket, so strangers lock the owner's device out
/// again (LK-4).
struct AddressOnlyLockout {
    inner: Stores,
}

#[async_trait]
impl LoginAttemptStore for AddressOnlyLockout {
    async fn admit(
        &self,
        key: &LockoutKey,
        now: Timestamp,
        window: TimeDelta,
        threshold: u32,
    ) -> Result<Admission, StoreError> {
        let address = LockoutKey::address(key.email().clone());
        self.inner
            .login_attempts
            .admit(&address, now, window, threshold)
            .await
    }
    async fn clear(&self, key: &LockoutKey) -> Result<(), StoreError> {
        let address = LockoutKey::address(key.email().clone());
        self.inner.login_attempts.clear(&address).await
    }
    async fn purge_expired(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.inner.login_attempts.purge_expired(before).await
    }
}

fn address_only_lockout() -> Stores {
    let inner = memory_stores();
    Stores {
        login_attempts: Arc::new(AddressOnlyLockout {
            inner: inner.clone(),
        }),
        ..inner
    }
}

#[test]
fn a_lockout_without_device_buckets_fails_the_device_bucket_cases() {
    assert!(fails(
        contract::device_buckets_count_apart_from_the_address_bucket,
        address_only_lockout()
    ));
    assert!(fails(
        contract::admit_on_a_device_bucket_never_admits_more_than_the_threshold_under_20_parallel_attempts,
        address_only_lockout()
    ));
}

#[test]
fn the_unbroken_fakes_pass_the_same_cases() {
    assert!(!fails(
        contract::complete_password_reset_is_single_use_under_20_parallel_attempts,
        memory_stores()
    ));
    assert!(!fails(
        contract::reset_token_is_not_an_email_change_token,
        memory_stores()
    ));
    assert!(!fails(
        contract::rotate_with_20_parallel_presentations_yields_one_rotation_and_reports_it_to_the_rest,
        memory_stores()
    ));
    assert!(!fails(
        contract::device_buckets_count_apart_from_the_address_bucket,
        memory_stores()
    ));
    assert!(!fails(
        contract::admit_on_a_device_bucket_never_admits_more_than_the_threshold_under_20_parallel_attempts,
        memory_stores()
    ));
}
