//! Delegating store wrappers: a test that breaks or observes one method of
//! a store port writes that method and nothing else; every other method goes
//! to the real store underneath.
//!
//! For each port in `regstack_ports::stores` there is a `…Forward` trait
//! with the same methods, each of them *provided*: by default it calls the
//! same method on the store that the one required method returns. That
//! accessor is named after the [`Stores`](regstack_ports::Stores) field
//! (`users`, `pending`, `tokens`, `login_attempts`, `sessions`,
//! `rate_limits`, `mfa`, `oauth`, `health`). [`Forwarding<F>`] implements the port for every
//! `F` that implements its `…Forward` trait, and [`forwarding`] wraps a
//! value for a `Stores` field:
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//!
//! use regstack_ports::{Session, SessionId, SessionStore, StoreError, Stores, User, UserId};
//! use regstack_testkit::fixtures::t0;
//! use regstack_testkit::forward::{forwarding, SessionStoreForward};
//!
//! /// Counts the per-request lookups; everything else is the real store.
//! struct CountingLookups {
//!     inner: Stores,
//!     lookups: AtomicU32,
//! }
//!
//! #[async_trait::async_trait]
//! impl SessionStoreForward for CountingLookups {
//!     fn sessions(&self) -> &dyn SessionStore {
//!         &*self.inner.sessions
//!     }
//!     async fn authenticate(&self, id: &SessionId) -> Result<Option<(Session, User)>, StoreError> {
//!         self.lookups.fetch_add(1, Ordering::SeqCst);
//!         self.sessions().authenticate(id).await
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let inner = regstack_testkit::memory_stores();
//! let counting = forwarding(CountingLookups { inner: inner.clone(), lookups: AtomicU32::new(0) });
//! let stores = Stores { sessions: counting.clone(), ..inner };
//!
//! assert_eq!(stores.sessions.authenticate(&SessionId::generate()).await.unwrap(), None);
//! assert_eq!(stores.sessions.list(&UserId::generate(), t0()).await.unwrap(), vec![]);
//! assert_eq!(counting.0.lookups.load(Ordering::SeqCst), 1);
//! # });
//! ```
//!
//! Why this shape rather than the others:
//! - **A newtype carries the port impl** because of the orphan rule: the
//!   blanket `impl<F: SessionStoreForward> SessionStore for F` is refused
//!   (E0210: a foreign trait for an uncovered type parameter), while
//!   `impl<F: …> SessionStore for Forwarding<F>` is ours to write.
//! - **Overrides are ordinary `async fn`s, not per-method hook closures on a
//!   `Forwarding` struct**: an override keeps the port's own signature —
//!   borrowed arguments, `?`, state in `self` (a mutex, a flag) — where a
//!   closure hook would need a boxed future with a higher-ranked lifetime
//!   for every `&TokenHash` argument and would have to capture its state in
//!   an `Arc`. The test code is the method it changes and one accessor.
//! - **The accessor is named after the port, not `inner`**, so one wrapper
//!   can forward two ports (a broken reset that peeks at tokens and writes
//!   users) without ambiguity, and an override reads
//!   `self.tokens().peek(…)`.
//! - **It keeps in step with the ports**: the traits and the impls are
//!   generated from one list per port, a port method missing from the list
//!   does not compile, and once listed every wrapper delegates it.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::TimeDelta;
use regstack_ports::{
    AdminChange, Admission, ChallengeAttempt, Claim, Creation, Email, EmailChangeOutcome, Factors,
    FlowResult, Linking, LockoutKey, LoginAttemptStore, MfaChallenge, MfaStore, NewSession,
    NewUser, OAuthFlow, OAuthIdentity, OAuthStore, OneTimeToken, PasswordHash, PendingRegistration,
    PendingStore, Promotion, RateLimitStore, Redemption, RevokeReason, Rotation, Session,
    SessionId, SessionStart, SessionStore, StoreError, StoreHealth, Timestamp, TokenHash,
    TokenKind, TokenStore, Unlinking, User, UserCounts, UserCursor, UserFilter, UserId, UserStore,
};

/// A wrapper `F` seen as the store ports whose `…Forward` traits it
/// implements, so it fits a [`Stores`](regstack_ports::Stores) field. The
/// field is public so a test can read the wrapper's state back.
#[derive(Debug, Default)]
pub struct Forwarding<F>(pub F);

/// Wraps `wrapper` for a [`Stores`](regstack_ports::Stores) field: the
/// `Arc<Forwarding<F>>` coerces to `Arc<dyn …Store>` for every port `F`
/// forwards. Keep a clone to read the wrapper's state later.
pub fn forwarding<F>(wrapper: F) -> Arc<Forwarding<F>> {
    Arc::new(Forwarding(wrapper))
}

/// Writes, from one list of a port's methods, its `…Forward` trait (each
/// method provided, delegating through the accessor) and the port's impl
/// for [`Forwarding`] (each method calling the `…Forward` one, overridden
/// or not). Each listed method is `fn name(args) -> Ok type;`.
macro_rules! forward {
    (
        $(#[$attr:meta])*
        $forward:ident for $port:ident via $accessor:ident {
            $( fn $method:ident $(<$($lt:lifetime),*>)? ($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty; )*
        }
    ) => {
        $(#[$attr])*
        #[async_trait]
        pub trait $forward: Send + Sync {
            #[doc = concat!(
                "The real [`", stringify!($port), "`] every method that is not ",
                "overridden goes to."
            )]
            fn $accessor(&self) -> &dyn $port;
            $(
                #[doc = concat!(
                    "Delegates to [`", stringify!($port), "::", stringify!($method),
                    "`] unless overridden."
                )]
                async fn $method $(<$($lt),*>)? (&self, $($arg: $ty),*) -> Result<$ret, StoreError> {
                    <Self as $forward>::$accessor(self).$method($($arg),*).await
                }
            )*
        }

        #[async_trait]
        impl<F: $forward> $port for Forwarding<F> {
            $(
                async fn $method $(<$($lt),*>)? (&self, $($arg: $ty),*) -> Result<$ret, StoreError> {
                    <F as $forward>::$method(&self.0, $($arg),*).await
                }
            )*
        }
    };
}

forward! {
    /// [`UserStore`], one method at a time: implement
    /// [`users`](Self::users) and the methods to change.
    UserStoreForward for UserStore via users {
        fn insert(user: NewUser) -> User;
        fn get(id: &UserId) -> Option<User>;
        fn find_by_email(email: &Email) -> Option<User>;
        fn update_full_name(id: &UserId, full_name: Option<String>, now: Timestamp) -> Option<User>;
        fn upgrade_password_hash(id: &UserId, expected: &PasswordHash, new: &PasswordHash) -> bool;
        fn change_password(
            id: &UserId,
            new: &PasswordHash,
            reason: RevokeReason,
            now: Timestamp,
        ) -> Option<User>;
        fn complete_password_reset(
            token: &TokenHash,
            new: &PasswordHash,
            now: Timestamp,
        ) -> Option<User>;
        fn confirm_email_change(token: &TokenHash, now: Timestamp) -> EmailChangeOutcome;
        fn revert_email_change(
            token: &TokenHash,
            lockout: &PasswordHash,
            now: Timestamp,
        ) -> Option<User>;
        fn delete_account(id: &UserId) -> Option<User>;
        fn count_users() -> UserCounts;
        fn list_users(skip: u64, limit: u64) -> Vec<User>;
        fn search_users<'c>(
            filter: &UserFilter,
            after: Option<&'c UserCursor>,
            skip: u64,
            limit: u64,
        ) -> Vec<User>;
        fn count_matching(filter: &UserFilter) -> u64;
        fn admin_update(id: &UserId, change: &AdminChange, now: Timestamp) -> Option<User>;
        fn reenable_expired(now: Timestamp) -> u64;
    }
}

forward! {
    /// [`PendingStore`], one method at a time: implement
    /// [`pending`](Self::pending) and the methods to change.
    PendingStoreForward for PendingStore via pending {
        fn put(pending: PendingRegistration) -> bool;
        fn find_by_email(email: &Email, now: Timestamp) -> Option<PendingRegistration>;
        fn replace_token(
            email: &Email,
            token: &TokenHash,
            expires_at: Timestamp,
            now: Timestamp,
        ) -> bool;
        fn promote(token: &TokenHash, id: &UserId, now: Timestamp) -> Promotion;
        fn promote_email(email: &Email, id: &UserId, now: Timestamp) -> Promotion;
        fn count_live(now: Timestamp) -> u64;
        fn purge_expired(now: Timestamp) -> u64;
    }
}

forward! {
    /// [`TokenStore`], one method at a time: implement
    /// [`tokens`](Self::tokens) and the methods to change.
    TokenStoreForward for TokenStore via tokens {
        fn issue(token: OneTimeToken) -> ();
        fn peek(kind: TokenKind, hash: &TokenHash, now: Timestamp) -> Option<OneTimeToken>;
        fn purge_expired(now: Timestamp) -> u64;
    }
}

forward! {
    /// [`LoginAttemptStore`], one method at a time: implement
    /// [`login_attempts`](Self::login_attempts) and the methods to change.
    LoginAttemptStoreForward for LoginAttemptStore via login_attempts {
        fn admit(key: &LockoutKey, now: Timestamp, window: TimeDelta, threshold: u32) -> Admission;
        fn clear(key: &LockoutKey) -> ();
        fn forget_address(email: &Email) -> ();
        fn purge_expired(before: Timestamp) -> u64;
    }
}

forward! {
    /// [`SessionStore`], one method at a time: implement
    /// [`sessions`](Self::sessions) and the methods to change.
    SessionStoreForward for SessionStore via sessions {
        fn start(session: NewSession) -> SessionStart;
        fn rotate(
            session: &SessionId,
            presented: &TokenHash,
            successor: &TokenHash,
            now: Timestamp,
            idle: TimeDelta,
        ) -> Rotation;
        fn list(user: &UserId, now: Timestamp) -> Vec<Session>;
        fn revoke_owned(
            id: &SessionId,
            owner: &UserId,
            reason: RevokeReason,
            now: Timestamp,
        ) -> bool;
        fn authenticate(id: &SessionId) -> Option<(Session, User)>;
        fn revoke(id: &SessionId, reason: RevokeReason, now: Timestamp) -> bool;
        fn revoke_all(user: &UserId, reason: RevokeReason, now: Timestamp) -> u64;
        fn purge_expired(before: Timestamp) -> u64;
    }
}

forward! {
    /// [`RateLimitStore`], one method at a time: implement
    /// [`rate_limits`](Self::rate_limits) and the methods to change.
    RateLimitStoreForward for RateLimitStore via rate_limits {
        fn hit(key: &str, now: Timestamp, window: TimeDelta, limit: u32) -> bool;
        fn purge_expired(before: Timestamp) -> u64;
    }
}

forward! {
    /// [`MfaStore`], one method at a time: implement [`mfa`](Self::mfa)
    /// and the methods to change.
    MfaStoreForward for MfaStore via mfa {
        fn open_challenge(challenge: MfaChallenge) -> ();
        fn attempt_challenge(id: &TokenHash, now: Timestamp) -> ChallengeAttempt;
        fn finish_challenge(id: &TokenHash, now: Timestamp) -> Option<MfaChallenge>;
        fn factors(user: &UserId) -> Factors;
        fn accept_totp_step(user: &UserId, step: u64) -> bool;
        fn spend_backup_code(user: &UserId, hash: &TokenHash) -> bool;
        fn enable_totp<'k>(
            user: &UserId,
            sealed_secret: &str,
            backup_codes: &[TokenHash],
            keep: Option<&'k SessionId>,
            now: Timestamp,
        ) -> bool;
        fn disable_totp<'k>(user: &UserId, keep: Option<&'k SessionId>, now: Timestamp) -> bool;
        fn set_phone<'k>(
            user: &UserId,
            phone: &str,
            keep: Option<&'k SessionId>,
            now: Timestamp,
        ) -> bool;
        fn clear_phone<'k>(user: &UserId, keep: Option<&'k SessionId>, now: Timestamp) -> bool;
        fn replace_backup_codes(user: &UserId, codes: &[TokenHash], now: Timestamp) -> bool;
        fn set_must_change_password(user: &UserId, value: bool, now: Timestamp) -> bool;
        fn purge_expired(now: Timestamp) -> u64;
    }
}

forward! {
    /// [`OAuthStore`], one method at a time: implement [`oauth`](Self::oauth)
    /// and the methods to change.
    OAuthStoreForward for OAuthStore via oauth {
        fn begin(flow: OAuthFlow) -> ();
        fn claim(id: &TokenHash, provider: &str, now: Timestamp) -> Claim;
        fn complete(
            id: &TokenHash,
            exchange: &TokenHash,
            result: &FlowResult,
            expires_at: Timestamp,
        ) -> bool;
        fn redeem(exchange: &TokenHash, browser: &TokenHash, now: Timestamp) -> Redemption;
        fn find_identity(issuer: &str, subject: &str) -> Option<OAuthIdentity>;
        fn identities_of(user: &UserId) -> Vec<OAuthIdentity>;
        fn link_identity(identity: &OAuthIdentity) -> Linking;
        fn create_user_with_identity(user: NewUser, identity: &OAuthIdentity) -> Creation;
        fn unlink_identity(user: &UserId, provider: &str) -> Unlinking;
        fn touch_identity(issuer: &str, subject: &str, now: Timestamp) -> bool;
        fn purge_expired(now: Timestamp) -> u64;
    }
}

forward! {
    /// [`StoreHealth`], one method at a time: implement
    /// [`health`](Self::health) and the methods to change.
    StoreHealthForward for StoreHealth via health {
        fn ping() -> ();
        fn schema_is_current() -> bool;
    }
}
