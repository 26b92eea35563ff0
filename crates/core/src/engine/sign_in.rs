//! Sign-in and the session starter: `login` runs the
//! [`SignIn`] machine (lockout → credentials → session), `start_session`
//! is the one place a session begins, and `require_current_password` is the
//! re-authentication of sensitive changes, counted by the same lockout.
//! The second factor goes between the credential check and the session.

use std::collections::VecDeque;

use regstack_ports::{Admission, Email, NewSession, SessionId, SessionStart, User, UserId};
use secrecy::SecretString;

use super::{seconds_until, secs, ClientContext, Engine, MAX_USER_AGENT_CHARS};
use crate::error::AuthError;
use crate::events::EventKind;
use crate::flows::sign_in::{CredentialCheck, Effect, LockoutPolicy, SignIn, SignInEvent};

/// A started session and its first tokens.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// Bearer token.
    pub access_token: String,
    /// Its lifetime in seconds.
    pub expires_in: u64,
    /// The family's first refresh token.
    pub refresh_token: SecretString,
    /// Seconds until the refresh token dies if unused.
    pub refresh_expires_in: u64,
    /// The session.
    pub session_id: SessionId,
    /// The user signed in.
    pub user: User,
}

impl Engine {
    /// `POST /login`: runs the [`SignIn`] machine.
    pub async fn login(
        &self,
        email: &Email,
        password: &SecretString,
        client: &ClientContext,
    ) -> Result<SignedIn, AuthError> {
        let now = self.now();
        let policy = LockoutPolicy {
            threshold: self.cfg.login_lockout_threshold,
        };
        let first = if self.cfg.rate_limit_disabled {
            SignInEvent::LockoutSkipped
        } else {
            let window = secs(self.cfg.login_lockout_window_seconds);
            match self
                .stores
                .login_attempts
                .admit(email, now, window, policy.threshold)
                .await?
            {
                Admission::Admitted { failures } => SignInEvent::Admitted { failures },
                Admission::Locked { retry_at } => SignInEvent::LockedOut { retry_at },
            }
        };
        let mut state = SignIn::Started;
        let mut queue = VecDeque::from([first]);
        let mut account: Option<User> = None;
        let mut signed_in = None;
        while let Some(event) = queue.pop_front() {
            let (next, effects) = state.step(event, now, policy);
            state = next;
            for effect in effects {
                match effect {
                    Effect::CheckPassword => {
                        let (check, user) = self.check_password(email, password).await?;
                        account = user;
                        queue.push_back(SignInEvent::Checked(check));
                    }
                    Effect::ClearFailures => self.stores.login_attempts.clear(email).await?,
                    Effect::StartSession(_) => {
                        let user = account
                            .take()
                            .ok_or_else(|| AuthError::internal("session without account"))?;
                        signed_in = Some(self.start_session(user, client).await?);
                    }
                    Effect::Emit(kind) => self.emit(kind, |e| {
                        e.email = Some(email.clone());
                        e.ip.clone_from(&client.ip);
                    }),
                }
            }
        }
        match state {
            SignIn::Authenticated { .. } => {
                signed_in.ok_or_else(|| AuthError::internal("authenticated without session"))
            }
            SignIn::Locked { retry_after_secs } => Err(AuthError::Locked { retry_after_secs }),
            SignIn::Rejected { remaining } => Err(AuthError::InvalidCredentials { remaining }),
            SignIn::Refused(crate::flows::sign_in::Refusal::Disabled) => {
                Err(AuthError::AccountDisabled)
            }
            SignIn::Refused(crate::flows::sign_in::Refusal::Unverified) => {
                Err(AuthError::EmailNotVerified)
            }
            SignIn::Started | SignIn::Admitted { .. } => {
                Err(AuthError::internal("sign-in did not finish"))
            }
        }
    }

    /// Looks the account up and checks the password, paying exactly one
    /// verification whatever the account's state.
    async fn check_password(
        &self,
        email: &Email,
        password: &SecretString,
    ) -> Result<(CredentialCheck, Option<User>), AuthError> {
        let Some(user) = self.stores.users.find_by_email(email).await? else {
            self.hasher.verify_dummy(password).await?;
            return Ok((CredentialCheck::NoAccount, None));
        };
        let Some(stored) = user.password_hash.clone() else {
            self.hasher.verify_dummy(password).await?;
            return Ok((CredentialCheck::NoPassword, None));
        };
        let verification = match self.hasher.verify(password, &stored).await {
            Ok(v) => v,
            Err(regstack_ports::HashError::Malformed) => {
                tracing::error!(user_id = %user.id, "stored password hash is malformed; treating as wrong password");
                return Ok((CredentialCheck::Wrong, None));
            }
            Err(e) => return Err(e.into()),
        };
        if !verification.matches {
            return Ok((CredentialCheck::Wrong, None));
        }
        if verification.needs_rehash {
            self.upgrade_hash_in_background(&user.id, stored, password.clone());
        }
        let check = CredentialCheck::Right {
            user_id: user.id.clone(),
            active: user.is_active,
            verified_or_exempt: user.is_verified || !self.cfg.require_verification,
        };
        Ok((check, Some(user)))
    }

    fn upgrade_hash_in_background(
        &self,
        id: &UserId,
        old: regstack_ports::PasswordHash,
        password: SecretString,
    ) {
        let hasher = self.hasher.clone();
        let users = self.stores.users.clone();
        let id = id.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let result = async {
                    let new = hasher.hash(&password).await.map_err(|e| e.to_string())?;
                    users.upgrade_password_hash(&id, &old, &new).await.map_err(|e| e.to_string())
                }
                .await;
                match result {
                    Ok(true) => tracing::info!(user_id = %id, "password hash upgraded to current parameters"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(user_id = %id, error = %e, "password hash upgrade failed"),
                }
            });
        }
    }

    /// Starts a session for a user whose every required factor has been
    /// checked. Every sign-in path ends here (password now; MFA and OAuth in
    /// later issues), so session rules live in one place.
    ///
    /// `user` must be the record as read together with the credential that
    /// was checked: the session is bound to its credential epoch
    /// (`tokens_invalidated_after`), and the store refuses to start it if a
    /// password change, reset or email change has moved the epoch since.
    /// Such a sign-in is answered as wrong credentials — the password it
    /// proved is no longer the account's.
    pub async fn start_session(
        &self,
        user: User,
        client: &ClientContext,
    ) -> Result<SignedIn, AuthError> {
        let now = self.now();
        let session_id = SessionId::generate();
        let user_agent = client.user_agent.as_ref().map(|ua| {
            ua.chars()
                .filter(|c| !c.is_control())
                .take(MAX_USER_AGENT_CHARS)
                .collect()
        });
        let refresh = self.refresh_tokens.mint(&session_id);
        let expires_at = now + secs(self.cfg.sessions.refresh_absolute_ttl_seconds);
        let idle_expires_at =
            (now + secs(self.cfg.sessions.refresh_idle_ttl_seconds)).min(expires_at);
        let started = self
            .stores
            .sessions
            .start(NewSession {
                id: session_id.clone(),
                user_id: user.id.clone(),
                created_at: now,
                expires_at,
                idle_expires_at,
                refresh_hash: refresh.hash,
                user_agent,
                ip: client.ip.clone(),
                credential_epoch: user.tokens_invalidated_after,
            })
            .await?;
        if started == SessionStart::Stale {
            tracing::info!(user_id = %user.id, "sign-in lost a race with a credential change: no session");
            return Err(AuthError::InvalidCredentials { remaining: None });
        }
        let access_token = self
            .jwt
            .issue_access(&user.id, &session_id, now)
            .map_err(AuthError::internal)?;
        for kind in [EventKind::UserLoggedIn, EventKind::SessionStarted] {
            self.emit(kind, |e| {
                e.user_id = Some(user.id.clone());
                e.email = Some(user.email.clone());
                e.session_id = Some(session_id.clone());
                e.ip.clone_from(&client.ip);
            });
        }
        let user = User {
            last_login: Some(now),
            ..user
        };
        Ok(SignedIn {
            access_token,
            expires_in: self.jwt.ttl_seconds(),
            refresh_token: refresh.raw,
            refresh_expires_in: seconds_until(idle_expires_at, now),
            session_id,
            user,
        })
    }

    /// `POST /refresh`: rotates the presented refresh token (one atomic
    /// store step, specified by [`crate::flows::refresh`]). A replay inside
    /// the grace window gets the same successor; any other reuse revokes the
    /// family. Every failure is the same [`AuthError::InvalidRefreshToken`].
    /// Re-authentication for sensitive changes. Costs one verification
    /// whether or not the account has a password.
    /// The current-password check of change-password, change-email and
    /// account deletion. A stolen session must not become a password
    /// oracle (LK-8): every check is admitted through the account's sign-in
    /// lockout — the same counter, threshold and window as `/login` — so
    /// guessing here is no cheaper than there, a locked account is refused
    /// before any hashing, and the right password clears the counter.
    pub(super) async fn require_current_password(
        &self,
        user: &User,
        current: &SecretString,
    ) -> Result<(), AuthError> {
        let counted = !self.cfg.rate_limit_disabled;
        if counted {
            let now = self.now();
            let window = secs(self.cfg.login_lockout_window_seconds);
            let admission = self
                .stores
                .login_attempts
                .admit(&user.email, now, window, self.cfg.login_lockout_threshold)
                .await?;
            if let Admission::Locked { retry_at } = admission {
                return Err(AuthError::Locked {
                    retry_after_secs: crate::flows::sign_in::retry_after_secs(retry_at, now),
                });
            }
        }
        let Some(stored) = &user.password_hash else {
            self.hasher.verify_dummy(current).await?;
            return Err(AuthError::WrongCurrentPassword);
        };
        match self.hasher.verify(current, stored).await {
            Ok(v) if v.matches => {
                if counted {
                    self.stores.login_attempts.clear(&user.email).await?;
                }
                Ok(())
            }
            Ok(_) | Err(regstack_ports::HashError::Malformed) => {
                Err(AuthError::WrongCurrentPassword)
            }
            Err(e) => Err(e.into()),
        }
    }
}
