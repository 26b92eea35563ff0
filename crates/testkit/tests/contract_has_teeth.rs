//! The contract suite must fail a store that breaks the contract, or its
//! passes mean nothing. Each test here wraps the in-memory stores with one
//! realistic defect and checks that the case written against that defect
//! panics. The wrappers override only the defective method; every other
//! one goes to the real fake through `regstack_testkit::forward`.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::TimeDelta;
use regstack_ports::{
    Admission, Creation, Email, Linking, LockoutKey, LoginAttemptStore, NewUser, OAuthIdentity,
    OAuthStore, OneTimeToken, PasswordHash, PendingRegistration, PendingStore, Promotion,
    RevokeReason, Rotation, SessionId, SessionStore, StoreError, Stores, Timestamp, TokenHash,
    TokenKind, TokenStore, User, UserId, UserStore,
};
use regstack_testkit::forward::{
    forwarding, LoginAttemptStoreForward, OAuthStoreForward, PendingStoreForward,
    SessionStoreForward, TokenStoreForward, UserStoreForward,
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
impl UserStoreForward for RacyReset {
    fn users(&self) -> &dyn UserStore {
        &*self.inner.users
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
        self.users()
            .change_password(&t.user_id, new, RevokeReason::PasswordReset, now)
            .await
    }
}

#[test]
fn a_read_then_write_reset_fails_the_race_case() {
    let inner = memory_stores();
    let stores = Stores {
        users: forwarding(RacyReset {
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
impl TokenStoreForward for KindBlind {
    fn tokens(&self) -> &dyn TokenStore {
        &*self.inner.tokens
    }
    async fn peek(
        &self,
        _kind: TokenKind,
        hash: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<OneTimeToken>, StoreError> {
        for kind in [TokenKind::PasswordReset, TokenKind::EmailChange] {
            if let Some(t) = self.tokens().peek(kind, hash, now).await? {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }
}

#[test]
fn a_kind_blind_token_lookup_fails_the_kind_binding_case() {
    let inner = memory_stores();
    let stores = Stores {
        tokens: forwarding(KindBlind {
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
impl PendingStoreForward for OffByOneExpiry {
    fn pending(&self) -> &dyn PendingStore {
        &*self.inner.pending
    }
    async fn find_by_email(
        &self,
        email: &Email,
        now: Timestamp,
    ) -> Result<Option<PendingRegistration>, StoreError> {
        let earlier = now - TimeDelta::microseconds(1);
        self.pending().find_by_email(email, earlier).await
    }
    async fn promote(
        &self,
        token: &TokenHash,
        id: &UserId,
        now: Timestamp,
    ) -> Result<Promotion, StoreError> {
        let earlier = now - TimeDelta::microseconds(1);
        self.pending().promote(token, id, earlier).await
    }
}

#[test]
fn an_off_by_one_expiry_fails_the_expiry_case() {
    let inner = memory_stores();
    let stores = Stores {
        pending: forwarding(OffByOneExpiry {
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
impl SessionStoreForward for OverwritingRevoke {
    fn sessions(&self) -> &dyn SessionStore {
        &*self.inner.sessions
    }
    async fn revoke(
        &self,
        id: &SessionId,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        // Pretends every call succeeded, as `UPDATE … WHERE id = ?` without
        // the liveness condition would.
        let _ = self.sessions().revoke(id, reason, now).await?;
        Ok(self.sessions().authenticate(id).await?.is_some())
    }
}

#[test]
fn a_revoke_without_a_liveness_check_fails_the_idempotence_case() {
    let inner = memory_stores();
    let stores = Stores {
        sessions: forwarding(OverwritingRevoke {
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
impl SessionStoreForward for RacyRotate {
    fn sessions(&self) -> &dyn SessionStore {
        &*self.inner.sessions
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
            .sessions()
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
}

#[test]
fn a_read_then_write_rotation_fails_the_parallel_rotation_case() {
    let inner = memory_stores();
    let stores = Stores {
        sessions: forwarding(RacyRotate {
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
impl LoginAttemptStoreForward for AddressOnlyLockout {
    fn login_attempts(&self) -> &dyn LoginAttemptStore {
        &*self.inner.login_attempts
    }
    async fn admit(
        &self,
        key: &LockoutKey,
        now: Timestamp,
        window: TimeDelta,
        threshold: u32,
    ) -> Result<Admission, StoreError> {
        let address = LockoutKey::address(key.email().clone());
        self.login_attempts()
            .admit(&address, now, window, threshold)
            .await
    }
    async fn clear(&self, key: &LockoutKey) -> Result<(), StoreError> {
        let address = LockoutKey::address(key.email().clone());
        self.login_attempts().clear(&address).await
    }
}

fn address_only_lockout() -> Stores {
    let inner = memory_stores();
    Stores {
        login_attempts: forwarding(AddressOnlyLockout {
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

/// A first sign-in in two steps: create the account, then link the
/// identity. The loser of a race (or anyone whose identity is taken) is
/// left with an account that has no way in.
struct TwoStepFirstSignIn {
    inner: Stores,
}

#[async_trait]
impl OAuthStoreForward for TwoStepFirstSignIn {
    fn oauth(&self) -> &dyn OAuthStore {
        &*self.inner.oauth
    }
    async fn create_user_with_identity(
        &self,
        user: NewUser,
        identity: &OAuthIdentity,
    ) -> Result<Creation, StoreError> {
        let created = match self.inner.users.insert(user).await {
            Ok(created) => created,
            Err(StoreError::Conflict("email")) => return Ok(Creation::EmailTaken),
            Err(e) => return Err(e),
        };
        let identity = OAuthIdentity {
            user_id: created.id.clone(),
            ..identity.clone()
        };
        Ok(match self.oauth().link_identity(&identity).await? {
            Linking::Linked => Creation::Created(created),
            _ => Creation::IdentityInUse,
        })
    }
}

fn two_step_first_sign_in() -> Stores {
    let inner = memory_stores();
    Stores {
        oauth: forwarding(TwoStepFirstSignIn {
            inner: inner.clone(),
        }),
        ..inner
    }
}

#[test]
fn a_two_step_first_sign_in_fails_the_both_or_neither_cases() {
    assert!(fails(
        contract::create_user_with_identity_writes_both_or_neither,
        two_step_first_sign_in()
    ));
    assert!(fails(
        contract::create_user_with_identity_has_one_winner_among_20_parallel_first_sign_ins,
        two_step_first_sign_in()
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
    assert!(!fails(
        contract::create_user_with_identity_writes_both_or_neither,
        memory_stores()
    ));
    assert!(!fails(
        contract::create_user_with_identity_has_one_winner_among_20_parallel_first_sign_ins,
        memory_stores()
    ));
}
