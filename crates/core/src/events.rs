//! Events hosts can subscribe to (regstack's hook names).
//!
//! Handlers run in their own tasks, each under a timeout: a failing, slow
//! or panicking handler is logged and can neither break nor delay the flow
//! that fired the event. Payloads never carry a live credential: URLs are
//! given with the token replaced by `[REDACTED]`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use regstack_ports::{Email, SessionId, Timestamp, UserId};

/// Every event regstack fires. Names are regstack's (`user_registered`, …)
/// plus the ones our additions bring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A user row was created (directly, or by verification).
    UserRegistered,
    /// A verification mail was requested (register or resend).
    VerificationRequested,
    /// A pending registration was verified.
    UserVerified,
    /// A session started.
    UserLoggedIn,
    /// A session was ended by its holder.
    UserLoggedOut,
    /// The password was changed by its owner.
    PasswordChanged,
    /// A reset link was requested for an existing account.
    PasswordResetRequested,
    /// A reset link was used.
    PasswordResetCompleted,
    /// An email-change link was sent.
    EmailChangeRequested,
    /// The address was switched.
    EmailChanged,
    /// The account was deleted.
    UserDeleted,
    /// A sign-in was refused because the address is locked out.
    LoginLocked,
    /// A sign-in or a current-password check failed; the event's `reason`
    /// says which way (never the password). A run of these across many
    /// addresses from few IPs is what credential stuffing looks like.
    LoginFailed,
    /// A session (refresh family) started.
    SessionStarted,
    /// One session was ended by its owner.
    SessionRevoked,
    /// Every session of a user was ended (`/logout-all`).
    SessionsRevokedAll,
    /// A refresh token was exchanged for its successor (a rotation; a
    /// replay inside the grace window is not one).
    SessionRefreshed,
    /// A spent refresh token was presented again: its family was revoked.
    RefreshTokenReused,
    /// A wrong second-factor code was presented.
    MfaChallengeFailed,
    /// A second-factor challenge used its last attempt and is gone.
    MfaChallengeExhausted,
    /// A second-factor challenge was opened (a sign-in whose password was
    /// right).
    MfaChallengeStarted,
    /// A second factor was added to the account.
    MfaFactorEnabled,
    /// A second factor was removed from the account.
    MfaFactorDisabled,
    /// An OAuth flow was started (sign-in or link); `provider` says where.
    OAuthSignInStarted,
    /// An OAuth callback decided whose account it is (a session follows at
    /// the exchange, through the second factor if the account has one).
    OAuthSignInCompleted,
    /// An identity was linked to an existing account.
    OAuthAccountLinked,
    /// An identity was removed from an account.
    OAuthAccountUnlinked,
    /// An administrator changed an account's flags or name (`actor_id`
    /// says who; disabling ended its sessions).
    AdminUserUpdated,
    /// An administrator flagged an account to set a new password at its
    /// next sign-in (its sessions ended).
    AdminPasswordChangeRequired,
    /// An administrator forgot every sign-in failure counted against an
    /// address (its lockout, the address's own and its devices').
    AdminLockoutCleared,
    /// An administrator made an invitation (`email`: the address it is
    /// bound to, if any; `actor_id`: who; none from the command line).
    AdminInviteCreated,
    /// An administrator withdrew an invitation.
    AdminInviteRevoked,
    /// A registration spent an invitation (`email`: the address that
    /// registered).
    InviteRedeemed,
    /// The old address's owner used the "this wasn't me" link of an email
    /// change: every session ended, the change was blocked or undone
    /// (`old_email`: the address it held before, if it moved back), and
    /// the password must be reset.
    EmailChangeReverted,
}

impl EventKind {
    /// Every kind, for exhaustive checks.
    pub const ALL: [EventKind; 34] = [
        Self::UserRegistered,
        Self::VerificationRequested,
        Self::UserVerified,
        Self::UserLoggedIn,
        Self::UserLoggedOut,
        Self::PasswordChanged,
        Self::PasswordResetRequested,
        Self::PasswordResetCompleted,
        Self::EmailChangeRequested,
        Self::EmailChanged,
        Self::UserDeleted,
        Self::LoginLocked,
        Self::LoginFailed,
        Self::SessionStarted,
        Self::SessionRevoked,
        Self::SessionsRevokedAll,
        Self::SessionRefreshed,
        Self::RefreshTokenReused,
        Self::MfaChallengeFailed,
        Self::MfaChallengeExhausted,
        Self::MfaChallengeStarted,
        Self::MfaFactorEnabled,
        Self::MfaFactorDisabled,
        Self::OAuthSignInStarted,
        Self::OAuthSignInCompleted,
        Self::OAuthAccountLinked,
        Self::OAuthAccountUnlinked,
        Self::AdminUserUpdated,
        Self::AdminPasswordChangeRequired,
        Self::AdminLockoutCleared,
        Self::AdminInviteCreated,
        Self::AdminInviteRevoked,
        Self::InviteRedeemed,
        Self::EmailChangeReverted,
    ];

    /// The wire name hosts subscribe by.
    pub fn name(self) -> &'static str {
        match self {
            Self::UserRegistered => "user_registered",
            Self::VerificationRequested => "verification_requested",
            Self::UserVerified => "user_verified",
            Self::UserLoggedIn => "user_logged_in",
            Self::UserLoggedOut => "user_logged_out",
            Self::PasswordChanged => "password_changed",
            Self::PasswordResetRequested => "password_reset_requested",
            Self::PasswordResetCompleted => "password_reset_completed",
            Self::EmailChangeRequested => "email_change_requested",
            Self::EmailChanged => "email_changed",
            Self::UserDeleted => "user_deleted",
            Self::LoginLocked => "login_locked",
            Self::LoginFailed => "login_failed",
            Self::SessionStarted => "session_started",
            Self::SessionRevoked => "session_revoked",
            Self::SessionsRevokedAll => "sessions_revoked_all",
            Self::SessionRefreshed => "session_refreshed",
            Self::RefreshTokenReused => "refresh_token_reused",
            Self::MfaChallengeFailed => "mfa_challenge_failed",
            Self::MfaChallengeExhausted => "mfa_challenge_exhausted",
            Self::MfaChallengeStarted => "mfa_challenge_started",
            Self::MfaFactorEnabled => "mfa_factor_enabled",
            Self::MfaFactorDisabled => "mfa_factor_disabled",
            Self::OAuthSignInStarted => "oauth_signin_started",
            Self::OAuthSignInCompleted => "oauth_signin_completed",
            Self::OAuthAccountLinked => "oauth_account_linked",
            Self::OAuthAccountUnlinked => "oauth_account_unlinked",
            Self::AdminUserUpdated => "admin_user_updated",
            Self::AdminPasswordChangeRequired => "admin_password_change_required",
            Self::AdminLockoutCleared => "admin_lockout_cleared",
            Self::AdminInviteCreated => "admin_invite_created",
            Self::AdminInviteRevoked => "admin_invite_revoked",
            Self::InviteRedeemed => "invite_redeemed",
            Self::EmailChangeReverted => "email_change_reverted",
        }
    }

    /// Looks a kind up by its wire name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// What happened, to whom, when. Fields that do not apply are `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Which event.
    pub kind: EventKind,
    /// When (from the Clock).
    pub at: Timestamp,
    /// The account, when one exists.
    pub user_id: Option<UserId>,
    /// The address concerned (the new one for email changes).
    pub email: Option<Email>,
    /// The previous address, for `email_changed`.
    pub old_email: Option<Email>,
    /// The session, for sign-in and sign-out.
    pub session_id: Option<SessionId>,
    /// The mailed link with its token replaced by `[REDACTED]`.
    pub url_without_token: Option<String>,
    /// Client IP, when known.
    pub ip: Option<String>,
    /// Why a sign-in failed, for `login_failed` (`no_account`,
    /// `no_password`, `wrong_password`, `disabled`, `unverified`,
    /// `wrong_current_password`): for operators only — the client gets one
    /// answer for the first three.
    pub reason: Option<&'static str>,
    /// The OAuth provider's configured name, for the `oauth_*` events.
    pub provider: Option<String>,
    /// For `oauth_signin_started` / `oauth_signin_completed`: `signin` or
    /// `link`.
    pub mode: Option<&'static str>,
    /// For `oauth_signin_completed`: the callback created the account.
    pub was_new: Option<bool>,
    /// The administrator who acted, for what an administrator did to an
    /// account (`admin_*`, and `user_deleted` / `user_verified` /
    /// `verification_requested` from the admin routes).
    pub actor_id: Option<UserId>,
    /// For `admin_user_updated`: each field the administrator set, with
    /// its new value (flags as booleans; a name change as `true`, the name
    /// itself is not repeated).
    pub changes: Vec<(&'static str, serde_json::Value)>,
}

impl Event {
    /// An event with only kind and time set.
    pub fn new(kind: EventKind, at: Timestamp) -> Self {
        Self {
            kind,
            at,
            user_id: None,
            email: None,
            old_email: None,
            session_id: None,
            url_without_token: None,
            ip: None,
            reason: None,
            provider: None,
            mode: None,
            was_new: None,
            actor_id: None,
            changes: Vec::new(),
        }
    }
}

/// The error type handlers may return; it is logged and dropped.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// A subscribed handler.
pub type Handler = Arc<dyn Fn(Event) -> BoxFuture<'static, Result<(), HandlerError>> + Send + Sync>;

/// Fans events out to subscribed handlers without ever blocking the caller.
#[derive(Clone)]
pub struct EventBus {
    handlers: Arc<RwLock<HashMap<EventKind, Vec<Handler>>>>,
    timeout: Duration,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(Duration::from_secs(10))
    }
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl EventBus {
    /// A bus whose handlers are abandoned after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            handlers: Arc::default(),
            timeout,
        }
    }

    /// Subscribes `handler` to `kind`. Several handlers per kind run
    /// concurrently.
    pub fn subscribe<F, Fut>(&self, kind: EventKind, handler: F)
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let h: Handler = Arc::new(move |e| Box::pin(handler(e)));
        let mut map = self.handlers.write().unwrap_or_else(|e| e.into_inner());
        map.entry(kind).or_default().push(h);
    }

    /// Fires an event: returns at once; each handler runs in its own task.
    pub fn emit(&self, event: Event) {
        tracing::info!(
            target: "regstack::events",
            event = event.kind.name(),
            user_id = event.user_id.as_ref().map(|u| u.as_str()),
            reason = event.reason,
            ip = event.ip.as_deref(),
            "event"
        );
        let handlers: Vec<Handler> = {
            let map = self.handlers.read().unwrap_or_else(|e| e.into_inner());
            map.get(&event.kind).cloned().unwrap_or_default()
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                event = event.kind.name(),
                "no async runtime: handlers not run"
            );
            return;
        };
        for h in handlers {
            let ev = event.clone();
            let timeout = self.timeout;
            let name = event.kind.name();
            // The inner task isolates panics: a panicking handler surfaces
            // as a JoinError here and is logged like any failure.
            runtime.spawn(async move {
                let task = tokio::spawn(h(ev));
                match tokio::time::timeout(timeout, task).await {
                    Ok(Ok(Ok(()))) => {}
                    Ok(Ok(Err(e))) => {
                        tracing::warn!(event = name, error = %e, "event handler failed")
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(event = name, error = %e, "event handler panicked")
                    }
                    Err(_) => tracing::warn!(event = name, ?timeout, "event handler timed out"),
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for k in EventKind::ALL {
            assert!(seen.insert(k.name()));
            assert_eq!(EventKind::from_name(k.name()), Some(k));
        }
    }

    #[tokio::test]
    async fn slow_failing_and_panicking_handlers_do_not_hold_up_emit() {
        let bus = EventBus::new(Duration::from_millis(200));
        let ok = Arc::new(AtomicUsize::new(0));
        bus.subscribe(EventKind::UserLoggedIn, |_| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(())
        });
        bus.subscribe(EventKind::UserLoggedIn, |_| async { Err("boom".into()) });
        #[allow(clippy::panic)]
        bus.subscribe(EventKind::UserLoggedIn, |_| async { panic!("handler bug") });
        let seen = ok.clone();
        bus.subscribe(EventKind::UserLoggedIn, move |_| {
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        });
        let started = std::time::Instant::now();
        bus.emit(Event::new(
            EventKind::UserLoggedIn,
            chrono::DateTime::UNIX_EPOCH,
        ));
        assert!(started.elapsed() < Duration::from_millis(50));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(ok.load(Ordering::SeqCst), 1);
    }
}
