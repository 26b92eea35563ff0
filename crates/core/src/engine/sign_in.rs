//! Sign-in and the session starter. `login` and `require_current_password`
//! (the re-authentication of sensitive changes) both run the [`SignIn`]
//! machine through [`drive`], each with its own effect handler
//! ([`LoginEffects`], [`Reauthentication`]) that holds only the request's
//! inputs and performs effects through the ports; what a run learns — the
//! account read with the password, the session started — travels in the
//! machine. `start_session` is the one place a session begins. The second
//! factor goes between the credential check and the session.
//!
//! Device cookies ([`crate::device_cookie`]: a stranger's failures must not
//! lock out the owner's browser): `login`
//! recognises the cookie the client presented ([`ClientContext`]'s
//! `device_cookie`) for the presented address before the run — a parse,
//! like the body's — and the machine decides which lockout bucket that
//! means; a run that ends in `SignedIn` hands the client a new cookie for
//! the address ([`SignedIn::device_cookie`]).

use regstack_ports::{
    Admission, DeviceId, Email, HashError, LockoutKey, NewSession, SessionId, SessionStart,
    Timestamp, User, UserId,
};
use secrecy::{ExposeSecret, SecretString};

use super::mfa::{LoginOutcome, PresentedCode};
use super::{seconds_until, secs, ClientContext, Engine, MAX_USER_AGENT_CHARS};
use crate::error::AuthError;
use crate::events::EventKind;
use crate::flows::gate::Cleared;
use crate::flows::sign_in::{
    Bucket, CredentialCheck, Effect, LockoutPolicy, Purpose, Refusal, SignIn, SignInEvent,
    SignInPolicy,
};
use crate::flows::{drive, Effects};
use crate::mail::MailKind;

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
    /// A new device cookie for the address, which the client presents to
    /// later sign-ins so that they count in this device's own lockout
    /// bucket (LK-4). Set by a password sign-in (`login`); `None` from
    /// [`Engine::start_session`] itself.
    pub device_cookie: Option<SecretString>,
}

/// `/login`'s effects: the presented credentials and the client, nothing
/// learned.
struct LoginEffects<'a> {
    engine: &'a Engine,
    email: &'a Email,
    password: &'a SecretString,
    client: &'a ClientContext,
    now: Timestamp,
    /// The account's `last_login` before this sign-in, read from the
    /// cleared record just before the session starts (`Some(None)`: it
    /// never signed in): the new-device notice skips a first sign-in.
    prior_login: Option<Option<Timestamp>>,
}

impl Effects<SignIn<SignedIn>> for LoginEffects<'_> {
    async fn perform(
        &mut self,
        effect: Effect,
    ) -> Result<Option<SignInEvent<SignedIn>>, AuthError> {
        let engine = self.engine;
        Ok(match effect {
            Effect::Admit(bucket, lockout) => {
                let key = lockout_key(self.email, bucket);
                Some(engine.admit(&key, lockout, self.now).await?)
            }
            Effect::CheckPassword => Some(SignInEvent::Checked(
                engine.check_password(self.email, self.password).await?,
            )),
            Effect::ClearFailures(bucket) => {
                let key = lockout_key(self.email, bucket);
                engine.stores.login_attempts.clear(&key).await?;
                None
            }
            Effect::StartSession(cleared) => {
                self.prior_login = Some(cleared.user().last_login);
                Some(SignInEvent::SessionStarted(
                    engine.start_session(cleared, self.client).await?,
                ))
            }
            Effect::Emit(kind) => {
                engine.emit(kind, |e| {
                    e.email = Some(self.email.clone());
                    e.ip.clone_from(&self.client.ip);
                });
                None
            }
            Effect::Failed(failure) => {
                engine.emit(EventKind::LoginFailed, |e| {
                    e.email = Some(self.email.clone());
                    e.ip.clone_from(&self.client.ip);
                    e.reason = Some(failure.name());
                });
                None
            }
        })
    }
}

/// The client's user agent as a session records it: control characters
/// dropped, at most [`MAX_USER_AGENT_CHARS`].
fn normalized_user_agent(client: &ClientContext) -> Option<String> {
    client.user_agent.as_ref().map(|ua| {
        ua.chars()
            .filter(|c| !c.is_control())
            .take(MAX_USER_AGENT_CHARS)
            .collect()
    })
}

/// The store's key for `bucket` of `email`.
fn lockout_key(email: &Email, bucket: Bucket) -> LockoutKey {
    match bucket {
        Bucket::Address => LockoutKey::address(email.clone()),
        Bucket::Device(device) => LockoutKey::device(email.clone(), device),
    }
}

/// The current-password check's effects: the signed-in account and the
/// password presented for it.
struct Reauthentication<'a> {
    engine: &'a Engine,
    user: &'a User,
    current: &'a SecretString,
    now: Timestamp,
}

/// Re-authentication never starts a session, so it has none to carry.
type Reauth = SignIn<std::convert::Infallible>;

impl Effects<Reauth> for Reauthentication<'_> {
    async fn perform(
        &mut self,
        effect: Effect,
    ) -> Result<Option<SignInEvent<std::convert::Infallible>>, AuthError> {
        let engine = self.engine;
        let email = &self.user.email;
        Ok(match effect {
            Effect::Admit(bucket, lockout) => {
                let key = lockout_key(email, bucket);
                Some(engine.admit(&key, lockout, self.now).await?)
            }
            Effect::CheckPassword => Some(SignInEvent::Checked(
                engine
                    .check_current_password(self.user, self.current)
                    .await?,
            )),
            Effect::ClearFailures(bucket) => {
                let key = lockout_key(email, bucket);
                engine.stores.login_attempts.clear(&key).await?;
                None
            }
            Effect::StartSession(_) => {
                return Err(AuthError::internal("re-authentication asked for a session"))
            }
            Effect::Emit(kind) => {
                engine.emit(kind, |e| {
                    e.user_id = Some(self.user.id.clone());
                    e.email = Some(email.clone());
                });
                None
            }
            // Whatever the check found, the caller hears "wrong current
            // password"; the operator too.
            Effect::Failed(_) => {
                engine.emit(EventKind::LoginFailed, |e| {
                    e.user_id = Some(self.user.id.clone());
                    e.email = Some(email.clone());
                    e.reason = Some("wrong_current_password");
                });
                None
            }
        })
    }
}

impl Engine {
    /// The sign-in settings in force, for `purpose`.
    fn sign_in_policy(&self, purpose: Purpose) -> SignInPolicy {
        SignInPolicy {
            lockout: (!self.cfg.rate_limit_disabled).then(|| LockoutPolicy {
                threshold: self.cfg.login_lockout_threshold,
                window: secs(self.cfg.login_lockout_window_seconds),
            }),
            require_verification: self.cfg.require_verification,
            purpose,
        }
    }

    /// `POST /login`: runs the [`SignIn`] machine. A device cookie the
    /// client presents for `email` puts the attempt in that device's
    /// lockout bucket; a success answers with a new cookie for `email`.
    ///
    /// An account with a second factor gets no session from its password:
    /// the run opens a challenge and answers [`LoginOutcome::MfaRequired`]
    /// — unless the request carried a code (`one_step`, DocuVault's
    /// one-step login), which then answers that challenge at once; a wrong
    /// one counts against the challenge and the address's lockout.
    #[tracing::instrument(name = "flow", skip_all, fields(flow = "login", user_id = tracing::field::Empty, session_id = tracing::field::Empty))]
    pub async fn login(
        &self,
        email: &Email,
        password: &SecretString,
        one_step: Option<PresentedCode>,
        client: &ClientContext,
    ) -> Result<LoginOutcome, AuthError> {
        let now = self.now();
        let policy = self.sign_in_policy(Purpose::Session);
        let device = self.recognize_device(email, client);
        let known_device = device.is_some();
        let mut effects = LoginEffects {
            engine: self,
            email,
            password,
            client,
            now,
            prior_login: None,
        };
        let end = drive(
            SignIn::Started,
            SignInEvent::Attempted { device },
            now,
            &policy,
            &mut effects,
        )
        .await?;
        match end {
            // The password was right for `email` from this client: from now
            // on it is a device of the address (a new id every time, so a
            // copy of an older cookie does not share the new bucket).
            SignIn::SignedIn(signed_in) => {
                if !known_device {
                    if let Some(Some(_)) = effects.prior_login {
                        self.notice_if_new_device(&signed_in, client).await;
                    }
                }
                Ok(LoginOutcome::SignedIn(Box::new(SignedIn {
                    device_cookie: Some(self.device_cookies.mint(email)),
                    ..signed_in
                })))
            }
            SignIn::PasswordChangeRequired { user } => Ok(LoginOutcome::PasswordChangeRequired(
                self.open_password_change(&user).await?,
            )),
            SignIn::SecondFactorRequired { user } => {
                let pending = self
                    .open_sign_in_challenge(&user, one_step.is_none())
                    .await?;
                self.emit_for(EventKind::MfaChallengeStarted, &user, client);
                let Some(code) = one_step else {
                    return Ok(LoginOutcome::MfaRequired(pending));
                };
                match self
                    .confirm_sign_in(&pending.mfa_pending_token, &code, client)
                    .await
                {
                    Ok(signed_in) => {
                        if !known_device && user.last_login.is_some() {
                            self.notice_if_new_device(&signed_in, client).await;
                        }
                        Ok(LoginOutcome::SignedIn(Box::new(SignedIn {
                            device_cookie: Some(self.device_cookies.mint(email)),
                            ..signed_in
                        })))
                    }
                    // A wrong code: the password's attempt stays counted
                    // in the lockout (the machine did not clear it).
                    Err(e) => Err(e),
                }
            }
            SignIn::Locked { retry_after_secs } => Err(AuthError::Locked { retry_after_secs }),
            SignIn::Rejected { remaining } => Err(AuthError::InvalidCredentials { remaining }),
            SignIn::Refused(Refusal::Disabled) => Err(AuthError::AccountDisabled),
            SignIn::Refused(Refusal::Unverified) => Err(AuthError::EmailNotVerified),
            SignIn::Started
            | SignIn::Admitting { .. }
            | SignIn::Admitted { .. }
            | SignIn::Authenticated { .. }
            | SignIn::Confirmed => Err(AuthError::internal("sign-in did not finish")),
        }
    }

    /// Mails the new-device notice ([`crate::notices`]) unless another
    /// live session of the account is the same client. The caller has
    /// checked the other two conditions (no device cookie for the address,
    /// a sign-in before this one). A store error skips the notice, never
    /// the sign-in.
    async fn notice_if_new_device(&self, signed_in: &SignedIn, client: &ClientContext) {
        if !self.cfg.notices.new_device {
            return;
        }
        let sessions = match self
            .stores
            .sessions
            .list(&signed_in.user.id, self.now())
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "no new-device notice: sessions could not be read");
                return;
            }
        };
        let user_agent = normalized_user_agent(client);
        let seen = sessions.iter().any(|s| {
            s.id != signed_in.session_id
                && crate::notices::same_client(
                    s.ip.as_deref(),
                    s.user_agent.as_deref(),
                    client.ip.as_deref(),
                    user_agent.as_deref(),
                )
        });
        if !seen {
            self.notify(MailKind::NewDevice, &signed_in.user, Some(client))
                .await;
        }
    }

    /// The device the client's device cookie names, if it was minted here
    /// for `email`. Anything else — no cookie, another address's, a forged
    /// or malformed one — is no device: the attempt counts as untrusted.
    fn recognize_device(&self, email: &Email, client: &ClientContext) -> Option<DeviceId> {
        let raw = client.device_cookie.as_ref()?;
        self.device_cookies.recognize(raw.expose_secret(), email)
    }

    /// Asks the lockout store to admit one attempt into `key`'s bucket.
    async fn admit<S>(
        &self,
        key: &LockoutKey,
        lockout: LockoutPolicy,
        now: Timestamp,
    ) -> Result<SignInEvent<S>, AuthError> {
        let admission = self
            .stores
            .login_attempts
            .admit(key, now, lockout.window, lockout.threshold)
            .await?;
        Ok(match admission {
            Admission::Admitted { failures } => SignInEvent::Admitted { failures },
            Admission::Locked { retry_at } => SignInEvent::LockedOut { retry_at },
        })
    }

    /// Looks the account up and checks the password, paying exactly one
    /// verification whatever the account's state.
    async fn check_password(
        &self,
        email: &Email,
        password: &SecretString,
    ) -> Result<CredentialCheck, AuthError> {
        let Some(user) = self.stores.users.find_by_email(email).await? else {
            self.hasher.verify_dummy(password).await?;
            return Ok(CredentialCheck::NoAccount);
        };
        let Some(stored) = user.password_hash.clone() else {
            self.hasher.verify_dummy(password).await?;
            return Ok(CredentialCheck::NoPassword);
        };
        let verification = match self.hasher.verify(password, &stored).await {
            Ok(v) => v,
            Err(HashError::Malformed) => {
                tracing::error!(user_id = %user.id, "stored password hash is malformed; treating as wrong password");
                return Ok(CredentialCheck::Wrong);
            }
            Err(e) => return Err(e.into()),
        };
        if !verification.matches {
            return Ok(CredentialCheck::Wrong);
        }
        if verification.needs_rehash {
            self.upgrade_hash_in_background(&user.id, stored, password.clone());
        }
        Ok(CredentialCheck::Right(Box::new(user)))
    }

    /// Checks the password of a signed-in account, paying one verification
    /// whether or not it has a password.
    async fn check_current_password(
        &self,
        user: &User,
        current: &SecretString,
    ) -> Result<CredentialCheck, AuthError> {
        let Some(stored) = &user.password_hash else {
            self.hasher.verify_dummy(current).await?;
            return Ok(CredentialCheck::NoPassword);
        };
        match self.hasher.verify(current, stored).await {
            Ok(v) if v.matches => Ok(CredentialCheck::Right(Box::new(user.clone()))),
            Ok(_) | Err(HashError::Malformed) => Ok(CredentialCheck::Wrong),
            Err(e) => Err(e.into()),
        }
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

    /// Starts a session for an account the MFA gate cleared: every sign-in
    /// path ends here, and only with a [`Cleared`], which only the gate's
    /// machines can make ([`crate::flows::gate`]) — so no path, present or
    /// future, reaches a session around a required second factor.
    ///
    /// The cleared record is the one read together with the credential
    /// that was checked: the session is bound to its credential epoch
    /// (`tokens_invalidated_after`), and the store refuses to start it if a
    /// password change, reset or email change has moved the epoch since.
    /// Such a sign-in is answered as wrong credentials — the password it
    /// proved is no longer the account's.
    pub async fn start_session(
        &self,
        cleared: Cleared,
        client: &ClientContext,
    ) -> Result<SignedIn, AuthError> {
        let user = cleared.into_user();
        let now = self.now();
        let session_id = SessionId::generate();
        let user_agent = normalized_user_agent(client);
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
        Self::record_ids(&user.id, Some(&session_id));
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
            device_cookie: None,
        })
    }

    /// The current-password check of change-password, change-email and
    /// account deletion: the [`SignIn`] machine for
    /// [`Purpose::Reauthentication`]. A stolen session must not become a
    /// password oracle (LK-8): every check is admitted through the
    /// account's sign-in lockout — the same counter, threshold and window
    /// as `/login` — so guessing here is no cheaper than there, a locked
    /// account is refused before any hashing, and the right password clears
    /// the counter. Costs one verification whether or not the account has
    /// a password.
    pub(super) async fn require_current_password(
        &self,
        user: &User,
        current: &SecretString,
    ) -> Result<(), AuthError> {
        let now = self.now();
        let policy = self.sign_in_policy(Purpose::Reauthentication);
        let mut effects = Reauthentication {
            engine: self,
            user,
            current,
            now,
        };
        // The current-password check counts in the address's bucket: its
        // caller holds a session, not a device cookie checked here.
        let end = drive(
            Reauth::Started,
            SignInEvent::Attempted { device: None },
            now,
            &policy,
            &mut effects,
        )
        .await?;
        match end {
            SignIn::Confirmed => Ok(()),
            SignIn::Locked { retry_after_secs } => Err(AuthError::Locked { retry_after_secs }),
            SignIn::Rejected { .. } => Err(AuthError::WrongCurrentPassword),
            SignIn::Started
            | SignIn::Admitting { .. }
            | SignIn::Admitted { .. }
            | SignIn::Refused(_)
            | SignIn::SecondFactorRequired { .. }
            | SignIn::PasswordChangeRequired { .. }
            | SignIn::Authenticated { .. }
            | SignIn::SignedIn(_) => Err(AuthError::internal("re-authentication did not finish")),
        }
    }
}
