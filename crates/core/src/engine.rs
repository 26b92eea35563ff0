//! The runners: each public method performs one flow over the ports.
//!
//! Rules live in [`crate::flows`] and in the atomic store operations; the
//! runner takes `now` from the Clock once per request, calls the ports in
//! order, and turns outcomes into [`AuthError`]s. Mail leaves the request
//! path: it is composed here and delivered by a background task, so a slow
//! or failing relay never delays or fails the request (DECISIONS.md §21),
//! and the answer for an unknown address takes as long as for a known one.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use regstack_ports::{
    Admission, Clock, Email, EmailChangeOutcome, Mailer, NewSession, NewUser, OneTimeToken,
    PasswordHasher, PendingRegistration, Promotion, RevokeReason, Rotation, Session, SessionId,
    SessionStart, Stores, Timestamp, TokenKind, User, UserId,
};
use secrecy::{ExposeSecret, SecretString};

use crate::config::{Config, ConfigError};
use crate::error::{AuthError, AuthFailure, Field};
use crate::events::{Event, EventBus, EventKind};
use crate::flows::sign_in::{CredentialCheck, Effect, LockoutPolicy, SignIn, SignInEvent};
use crate::jwt::JwtCodec;
use crate::mail::{Composer, MailContext, MailKind, TemplateError};
use crate::password::{check_length, PasswordPolicyError};
use crate::refresh_token::RefreshTokens;
use crate::tokens::{self, MAX_TOKEN_CHARS};

/// Longest user agent kept on a session.
const MAX_USER_AGENT_CHARS: usize = 256;
/// How long a mail delivery may take before it is abandoned.
const MAIL_TIMEOUT: Duration = Duration::from_secs(30);

/// Who is calling, as far as the transport knows. Recorded on sessions and
/// events; never used for decisions that need trust.
#[derive(Debug, Clone, Default)]
pub struct ClientContext {
    /// Client IP (socket, or proxy header when `behind_proxy`).
    pub ip: Option<String>,
    /// `User-Agent` header.
    pub user_agent: Option<String>,
}

/// A new registration as received.
#[derive(Debug)]
pub struct Registration {
    /// Canonical address.
    pub email: Email,
    /// Chosen password.
    pub password: SecretString,
    /// Display name.
    pub full_name: Option<String>,
}

/// The outcome of `register`.
#[derive(Debug, Clone)]
pub enum Registered {
    /// A verification link was mailed; no user exists yet.
    Pending {
        /// Canonical address.
        email: Email,
        /// When the link dies.
        expires_at: Timestamp,
    },
    /// The user exists (verification not required).
    Active(User),
}

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

/// The answer to `POST /refresh`.
#[derive(Debug, Clone)]
pub struct Refreshed {
    /// A new bearer token for the same session.
    pub access_token: String,
    /// Its lifetime in seconds.
    pub expires_in: u64,
    /// The successor refresh token (the same one again for a replay).
    pub refresh_token: SecretString,
    /// Seconds until it dies if unused.
    pub refresh_expires_in: u64,
}

/// An authenticated caller: the user and the session its token names.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user, as loaded in the same lookup as the session.
    pub user: User,
    /// The session.
    pub session: Session,
}

/// What the engine needs from the outside world.
pub struct Deps {
    /// Every store.
    pub stores: Stores,
    /// Password hashing (bounded).
    pub hasher: Arc<dyn PasswordHasher>,
    /// Source of `now`.
    pub clock: Arc<dyn Clock>,
    /// Mail transport.
    pub mailer: Arc<dyn Mailer>,
    /// Event fan-out (hosts subscribe on it).
    pub events: EventBus,
    /// Template overrides by name (read by the caller from
    /// `extra_template_dirs`).
    pub template_overrides: HashMap<String, String>,
}

/// The engine could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A template override does not parse or render.
    #[error(transparent)]
    Template(#[from] TemplateError),
}

/// Rows removed by [`Engine::purge_expired`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Pending registrations.
    pub pending: u64,
    /// Reset and email-change tokens.
    pub tokens: u64,
    /// Lockout attempts.
    pub login_attempts: u64,
    /// Sessions.
    pub sessions: u64,
    /// Rate-limit hits.
    pub rate_limit_hits: u64,
}

/// Runs every account flow. Cheap to share behind an `Arc`.
pub struct Engine {
    cfg: Config,
    stores: Stores,
    hasher: Arc<dyn PasswordHasher>,
    clock: Arc<dyn Clock>,
    mailer: Arc<dyn Mailer>,
    composer: Composer,
    jwt: JwtCodec,
    refresh_tokens: RefreshTokens,
    events: EventBus,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn secs(s: u64) -> TimeDelta {
    TimeDelta::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1_000_000))
}

/// Whole seconds from `now` until `t` (0 if past).
fn seconds_until(t: Timestamp, now: Timestamp) -> u64 {
    u64::try_from((t - now).num_seconds()).unwrap_or(0)
}

fn length_error(field: Field, e: PasswordPolicyError) -> AuthError {
    AuthError::PasswordLength {
        field,
        too_short: e == PasswordPolicyError::TooShort,
    }
}

impl Engine {
    /// Validates the configuration and wires the engine.
    pub fn new(cfg: Config, deps: Deps) -> Result<Self, EngineError> {
        cfg.validate()?;
        let composer = Composer::new(&cfg.app_name, deps.template_overrides)?;
        let jwt = JwtCodec::new(
            &cfg.jwt_secret,
            cfg.jwt_algorithm,
            cfg.jwt_audience.clone(),
            cfg.jwt_ttl_seconds,
        );
        let refresh_tokens = RefreshTokens::new(&cfg.jwt_secret);
        Ok(Self {
            refresh_tokens,
            cfg,
            stores: deps.stores,
            hasher: deps.hasher,
            clock: deps.clock,
            mailer: deps.mailer,
            composer,
            jwt,
            events: deps.events,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The event bus, to subscribe handlers.
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// The stores (for health checks and the CLI).
    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// `now` from the clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn emit(&self, kind: EventKind, f: impl FnOnce(&mut Event)) {
        let mut e = Event::new(kind, self.now());
        f(&mut e);
        self.events.emit(e);
    }

    /// Stores a fresh link token of `kind` for a user — superseding the
    /// user's older ones of that kind — and returns the raw token for the
    /// mail.
    async fn issue_link_token(
        &self,
        kind: TokenKind,
        user_id: &UserId,
        new_email: Option<Email>,
        ttl_seconds: u64,
    ) -> Result<SecretString, AuthError> {
        let now = self.now();
        let token = tokens::issue();
        self.stores
            .tokens
            .issue(OneTimeToken {
                hash: token.hash,
                kind,
                user_id: user_id.clone(),
                new_email,
                created_at: now,
                expires_at: now + secs(ttl_seconds),
            })
            .await?;
        Ok(token.raw)
    }

    /// Fires an event about a user's account, from a client.
    fn emit_for(&self, kind: EventKind, user: &User, client: &ClientContext) {
        self.emit(kind, |e| {
            e.user_id = Some(user.id.clone());
            e.email = Some(user.email.clone());
            e.ip.clone_from(&client.ip);
        });
    }

    fn link(&self, template: Option<&str>, path: &str, token: &str) -> String {
        let base = self.cfg.base();
        match template {
            // Literal replacement (regstack): no format-string surprises.
            Some(t) => t.replace("{base_url}", base).replace("{token}", token),
            None => format!("{base}{}{path}?token={token}", self.cfg.link_prefix()),
        }
    }

    /// Composes now, delivers in the background under the per-address
    /// hourly quota. Failures are logged without the body.
    fn send_mail(
        &self,
        kind: MailKind,
        to: &Email,
        full_name: Option<&str>,
        url: &str,
        ttl_seconds: u64,
    ) {
        let mail = match self.composer.compose(
            kind,
            &MailContext {
                to,
                full_name,
                url,
                ttl_seconds,
            },
        ) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, kind = kind.stem(), "mail not composed");
                return;
            }
        };
        let limits = self.stores.rate_limits.clone();
        let mailer = self.mailer.clone();
        let now = self.now();
        let quota = self.cfg.email.max_per_address_per_hour;
        let key = format!("mail:{}", to.as_str());
        let task = async move {
            match limits.hit(&key, now, TimeDelta::hours(1), quota).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(
                        kind = kind.stem(),
                        "mail quota for this address reached; not sent"
                    );
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "mail quota check failed; not sent");
                    return;
                }
            }
            match tokio::time::timeout(MAIL_TIMEOUT, mailer.send(&mail)).await {
                Ok(Ok(())) => tracing::debug!(kind = kind.stem(), "mail delivered"),
                Ok(Err(e)) => {
                    tracing::error!(kind = kind.stem(), error = %e, "mail delivery failed")
                }
                Err(_) => tracing::error!(kind = kind.stem(), "mail delivery timed out"),
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(task);
            }
            Err(_) => tracing::error!("no async runtime: mail not sent"),
        }
    }

    // ----------------------------------------------------------------- register

    /// `POST /register`.
    pub async fn register(
        &self,
        reg: Registration,
        client: &ClientContext,
    ) -> Result<Registered, AuthError> {
        if !self.cfg.allow_registration {
            return Err(AuthError::RegistrationClosed);
        }
        check_length(reg.password.expose_secret()).map_err(|e| length_error(Field::Password, e))?;
        if self.stores.users.find_by_email(&reg.email).await?.is_some() {
            return Err(AuthError::EmailTaken);
        }
        let hash = self.hasher.hash(&reg.password).await?;
        let now = self.now();
        if !self.cfg.require_verification {
            let user = self
                .stores
                .users
                .insert(NewUser {
                    id: UserId::generate(),
                    email: reg.email,
                    password_hash: Some(hash),
                    full_name: reg.full_name,
                    is_verified: true,
                    is_superuser: false,
                    created_at: now,
                })
                .await
                .map_err(|e| match e {
                    regstack_ports::StoreError::Conflict(_) => AuthError::EmailTaken,
                    e => e.into(),
                })?;
            self.emit_for(EventKind::UserRegistered, &user, client);
            return Ok(Registered::Active(user));
        }
        let token = tokens::issue();
        let expires_at = now + secs(self.cfg.verification_token_ttl_seconds);
        self.stores
            .pending
            .put(PendingRegistration {
                email: reg.email.clone(),
                password_hash: hash,
                full_name: reg.full_name.clone(),
                token_hash: token.hash,
                created_at: now,
                expires_at,
            })
            .await?;
        self.mail_verification(
            &reg.email,
            reg.full_name.as_deref(),
            token.raw.expose_secret(),
            client,
        );
        Ok(Registered::Pending {
            email: reg.email,
            expires_at,
        })
    }

    fn mail_verification(
        &self,
        email: &Email,
        full_name: Option<&str>,
        raw: &str,
        client: &ClientContext,
    ) {
        let url = self.link(self.cfg.verify_url_template.as_deref(), "/verify", raw);
        self.send_mail(
            MailKind::Verification,
            email,
            full_name,
            &url,
            self.cfg.verification_token_ttl_seconds,
        );
        self.emit(EventKind::VerificationRequested, |e| {
            e.email = Some(email.clone());
            e.url_without_token = Some(tokens::redact_url(&url, raw));
            e.ip.clone_from(&client.ip);
        });
    }

    /// `POST /verify`: the pending registration becomes a verified user.
    pub async fn verify(
        &self,
        token: &SecretString,
        client: &ClientContext,
    ) -> Result<User, AuthError> {
        if token.expose_secret().len() > MAX_TOKEN_CHARS {
            return Err(AuthError::InvalidVerificationToken);
        }
        let hash = tokens::hash_presented(token);
        match self
            .stores
            .pending
            .promote(&hash, &UserId::generate(), self.now())
            .await?
        {
            Promotion::Promoted(user) => {
                for kind in [EventKind::UserVerified, EventKind::UserRegistered] {
                    self.emit_for(kind, &user, client);
                }
                Ok(user)
            }
            Promotion::InvalidToken => Err(AuthError::InvalidVerificationToken),
            Promotion::EmailTaken => Err(AuthError::EmailTaken),
        }
    }

    /// `POST /resend-verification`: a new link if a registration is pending.
    /// The caller answers the same whatever happens here.
    pub async fn resend_verification(
        &self,
        email: &Email,
        client: &ClientContext,
    ) -> Result<(), AuthError> {
        let now = self.now();
        let token = tokens::issue();
        let expires_at = now + secs(self.cfg.verification_token_ttl_seconds);
        if self
            .stores
            .pending
            .replace_token(email, &token.hash, expires_at, now)
            .await?
        {
            let full_name = self
                .stores
                .pending
                .find_by_email(email, now)
                .await?
                .and_then(|p| p.full_name);
            self.mail_verification(
                email,
                full_name.as_deref(),
                token.raw.expose_secret(),
                client,
            );
        }
        Ok(())
    }

    // ------------------------------------------------------------------ sign-in

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
                            .ok_or_else(|| AuthError::Internal("session without account".into()))?;
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
                signed_in.ok_or_else(|| AuthError::Internal("authenticated without session".into()))
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
                Err(AuthError::Internal("sign-in did not finish".into()))
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
            .map_err(|e| AuthError::Internal(e.to_string()))?;
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
    pub async fn refresh(
        &self,
        presented: &SecretString,
        client: &ClientContext,
    ) -> Result<Refreshed, AuthError> {
        // A token this server did not mint for its session never reaches
        // the store (and so can never revoke anything).
        let Some(presented) = self.refresh_tokens.parse(presented.expose_secret()) else {
            return Err(AuthError::InvalidRefreshToken);
        };
        let now = self.now();
        let successor = self.refresh_tokens.successor(&presented);
        let rotation = self
            .stores
            .sessions
            .rotate(
                &presented.session,
                &presented.hash,
                &successor.hash,
                now,
                secs(self.cfg.sessions.reuse_grace_seconds),
                secs(self.cfg.sessions.refresh_idle_ttl_seconds),
            )
            .await?;
        let (session, user) = match rotation {
            Rotation::Rotated { session, user } | Rotation::Replayed { session, user } => {
                (session, user)
            }
            Rotation::Reused {
                session_id,
                user_id,
            } => {
                tracing::warn!(session_id = %session_id, user_id = %user_id, "spent refresh token presented again: session revoked");
                self.emit(EventKind::RefreshTokenReused, |e| {
                    e.user_id = Some(user_id);
                    e.session_id = Some(session_id);
                    e.ip.clone_from(&client.ip);
                });
                return Err(AuthError::InvalidRefreshToken);
            }
            Rotation::Invalid => return Err(AuthError::InvalidRefreshToken),
        };
        if !user.is_active {
            return Err(AuthError::InvalidRefreshToken);
        }
        let access_token = self
            .jwt
            .issue_access(&user.id, &session.id, now)
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        Ok(Refreshed {
            access_token,
            expires_in: self.jwt.ttl_seconds(),
            refresh_token: successor.raw,
            refresh_expires_in: seconds_until(session.idle_expires_at, now),
        })
    }

    /// `POST /logout-all`: ends every session of the caller. Returns how many.
    pub async fn logout_all(
        &self,
        p: &Principal,
        client: &ClientContext,
    ) -> Result<u64, AuthError> {
        let n = self
            .stores
            .sessions
            .revoke_all(&p.user.id, RevokeReason::LogoutAll, self.now())
            .await?;
        self.emit_for(EventKind::SessionsRevokedAll, &p.user, client);
        Ok(n)
    }

    /// `GET /sessions`: the caller's live sessions, newest first.
    pub async fn list_sessions(&self, p: &Principal) -> Result<Vec<Session>, AuthError> {
        Ok(self.stores.sessions.list(&p.user.id, self.now()).await?)
    }

    /// `DELETE /sessions/{id}`: ends one of the caller's own sessions.
    pub async fn revoke_session(
        &self,
        p: &Principal,
        id: &SessionId,
        client: &ClientContext,
    ) -> Result<(), AuthError> {
        if !self
            .stores
            .sessions
            .revoke_owned(id, &p.user.id, RevokeReason::Revoked, self.now())
            .await?
        {
            return Err(AuthError::SessionNotFound);
        }
        self.emit(EventKind::SessionRevoked, |e| {
            e.user_id = Some(p.user.id.clone());
            e.session_id = Some(id.clone());
            e.ip.clone_from(&client.ip);
        });
        Ok(())
    }

    /// Checks a bearer token: signature and expiry, then one lookup of the
    /// session together with its user.
    pub async fn authenticate(&self, bearer: Option<&str>) -> Result<Principal, AuthError> {
        let token = bearer.ok_or(AuthError::Unauthenticated(AuthFailure::Missing))?;
        let now = self.now();
        let claims = self
            .jwt
            .verify_access(token, now)
            .map_err(|_| AuthError::Unauthenticated(AuthFailure::Invalid))?;
        let Some((session, user)) = self
            .stores
            .sessions
            .authenticate(&claims.session_id)
            .await?
        else {
            // The session only disappears with its user (or long after the
            // token expired): the account is gone.
            return Err(AuthError::Unauthenticated(AuthFailure::Inactive));
        };
        if session.user_id != claims.user_id || user.id != claims.user_id {
            return Err(AuthError::Unauthenticated(AuthFailure::Invalid));
        }
        if !user.is_active {
            return Err(AuthError::Unauthenticated(AuthFailure::Inactive));
        }
        if session.revoked_at.is_some() {
            let failure = match session.revoked_reason {
                Some(RevokeReason::Disabled) => AuthFailure::Inactive,
                Some(r) if r.is_bulk() => AuthFailure::Invalidated,
                _ => AuthFailure::Revoked,
            };
            return Err(AuthError::Unauthenticated(failure));
        }
        if !session.is_live(now) {
            return Err(AuthError::Unauthenticated(AuthFailure::Invalid));
        }
        Ok(Principal { user, session })
    }

    /// `POST /logout`: revokes the session of the presented token.
    pub async fn logout(&self, p: &Principal, client: &ClientContext) -> Result<(), AuthError> {
        self.stores
            .sessions
            .revoke(&p.session.id, RevokeReason::Logout, self.now())
            .await?;
        for kind in [EventKind::UserLoggedOut, EventKind::SessionRevoked] {
            self.emit(kind, |e| {
                e.user_id = Some(p.user.id.clone());
                e.email = Some(p.user.email.clone());
                e.session_id = Some(p.session.id.clone());
                e.ip.clone_from(&client.ip);
            });
        }
        Ok(())
    }

    // ------------------------------------------------------------------ account

    /// `PATCH /me`.
    pub async fn update_profile(
        &self,
        p: &Principal,
        full_name: Option<String>,
    ) -> Result<User, AuthError> {
        self.stores
            .users
            .update_full_name(&p.user.id, full_name, self.now())
            .await?
            .ok_or(AuthError::Unauthenticated(AuthFailure::Inactive))
    }

    /// Re-authentication for sensitive changes. Costs one verification
    /// whether or not the account has a password.
    /// The current-password check of change-password, change-email and
    /// account deletion. A stolen session must not become a password
    /// oracle (LK-8): every check is admitted through the account's sign-in
    /// lockout — the same counter, threshold and window as `/login` — so
    /// guessing here is no cheaper than there, a locked account is refused
    /// before any hashing, and the right password clears the counter.
    async fn require_current_password(
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

    /// `POST /change-password`: every session ends, this one included.
    pub async fn change_password(
        &self,
        p: &Principal,
        current: &SecretString,
        new: &SecretString,
        client: &ClientContext,
    ) -> Result<(), AuthError> {
        check_length(new.expose_secret()).map_err(|e| length_error(Field::NewPassword, e))?;
        if current.expose_secret() == new.expose_secret() {
            return Err(AuthError::SamePassword);
        }
        self.require_current_password(&p.user, current).await?;
        let hash = self.hasher.hash(new).await?;
        self.stores
            .users
            .change_password(&p.user.id, &hash, RevokeReason::PasswordChanged, self.now())
            .await?
            .ok_or(AuthError::Unauthenticated(AuthFailure::Inactive))?;
        self.emit_for(EventKind::PasswordChanged, &p.user, client);
        Ok(())
    }

    /// `POST /change-email`: mails a link to the new address. An address
    /// that is taken gets the same answer and no mail (no enumeration).
    pub async fn request_email_change(
        &self,
        p: &Principal,
        new_email: &Email,
        current: &SecretString,
        client: &ClientContext,
    ) -> Result<(), AuthError> {
        if *new_email == p.user.email {
            return Err(AuthError::SameEmail);
        }
        self.require_current_password(&p.user, current).await?;
        if self.stores.users.find_by_email(new_email).await?.is_some() {
            return Ok(());
        }
        let token = self
            .issue_link_token(
                TokenKind::EmailChange,
                &p.user.id,
                Some(new_email.clone()),
                self.cfg.email_change_token_ttl_seconds,
            )
            .await?;
        let raw = token.expose_secret();
        let url = self.link(
            self.cfg.email_change_url_template.as_deref(),
            "/confirm-email-change",
            raw,
        );
        self.send_mail(
            MailKind::EmailChange,
            new_email,
            p.user.full_name.as_deref(),
            &url,
            self.cfg.email_change_token_ttl_seconds,
        );
        self.emit(EventKind::EmailChangeRequested, |e| {
            e.user_id = Some(p.user.id.clone());
            e.email = Some(new_email.clone());
            e.old_email = Some(p.user.email.clone());
            e.url_without_token = Some(tokens::redact_url(&url, raw));
            e.ip.clone_from(&client.ip);
        });
        Ok(())
    }

    /// `POST /confirm-email-change`.
    pub async fn confirm_email_change(
        &self,
        token: &SecretString,
        client: &ClientContext,
    ) -> Result<User, AuthError> {
        if token.expose_secret().len() > MAX_TOKEN_CHARS {
            return Err(AuthError::InvalidEmailChangeToken);
        }
        let now = self.now();
        let hash = tokens::hash_presented(token);
        let Some(record) = self
            .stores
            .tokens
            .peek(TokenKind::EmailChange, &hash, now)
            .await?
        else {
            return Err(AuthError::InvalidEmailChangeToken);
        };
        let old_email = self
            .stores
            .users
            .get(&record.user_id)
            .await?
            .map(|u| u.email);
        match self.stores.users.confirm_email_change(&hash, now).await? {
            EmailChangeOutcome::Changed(user) => {
                self.emit(EventKind::EmailChanged, |e| {
                    e.user_id = Some(user.id.clone());
                    e.email = Some(user.email.clone());
                    e.old_email = old_email;
                    e.ip.clone_from(&client.ip);
                });
                Ok(user)
            }
            EmailChangeOutcome::InvalidToken => Err(AuthError::InvalidEmailChangeToken),
            EmailChangeOutcome::EmailTaken => Err(AuthError::EmailTaken),
        }
    }

    /// `DELETE /account`: removes every row of the user.
    pub async fn delete_account(
        &self,
        p: &Principal,
        current: &SecretString,
        client: &ClientContext,
    ) -> Result<(), AuthError> {
        if !self.cfg.enable_account_deletion {
            return Err(AuthError::AccountDeletionDisabled);
        }
        self.require_current_password(&p.user, current).await?;
        if let Some(user) = self.stores.users.delete_account(&p.user.id).await? {
            self.emit_for(EventKind::UserDeleted, &user, client);
        }
        Ok(())
    }

    // ----------------------------------------------------------------- recovery

    /// `POST /forgot-password`: mails a reset link to an active account. The
    /// caller answers the same whatever happens here.
    pub async fn forgot_password(
        &self,
        email: &Email,
        client: &ClientContext,
    ) -> Result<(), AuthError> {
        if !self.cfg.enable_password_reset {
            return Err(AuthError::PasswordResetDisabled);
        }
        let Some(user) = self.stores.users.find_by_email(email).await? else {
            return Ok(());
        };
        if !user.is_active {
            return Ok(());
        }
        let token = self
            .issue_link_token(
                TokenKind::PasswordReset,
                &user.id,
                None,
                self.cfg.password_reset_token_ttl_seconds,
            )
            .await?;
        let raw = token.expose_secret();
        let url = self.link(
            self.cfg.password_reset_url_template.as_deref(),
            "/reset-password",
            raw,
        );
        self.send_mail(
            MailKind::PasswordReset,
            &user.email,
            user.full_name.as_deref(),
            &url,
            self.cfg.password_reset_token_ttl_seconds,
        );
        self.emit(EventKind::PasswordResetRequested, |e| {
            e.user_id = Some(user.id.clone());
            e.email = Some(user.email.clone());
            e.url_without_token = Some(tokens::redact_url(&url, raw));
            e.ip.clone_from(&client.ip);
        });
        Ok(())
    }

    /// `POST /reset-password`: single use; every session ends.
    pub async fn reset_password(
        &self,
        token: &SecretString,
        new: &SecretString,
        client: &ClientContext,
    ) -> Result<(), AuthError> {
        if !self.cfg.enable_password_reset {
            return Err(AuthError::PasswordResetDisabled);
        }
        check_length(new.expose_secret()).map_err(|e| length_error(Field::NewPassword, e))?;
        if token.expose_secret().len() > MAX_TOKEN_CHARS {
            return Err(AuthError::InvalidResetToken);
        }
        let hash = tokens::hash_presented(token);
        // Refuse a dead link before paying for a password hash; the atomic
        // spend below decides between concurrent presentations.
        let Some(record) = self
            .stores
            .tokens
            .peek(TokenKind::PasswordReset, &hash, self.now())
            .await?
        else {
            return Err(AuthError::InvalidResetToken);
        };
        match self.stores.users.get(&record.user_id).await? {
            Some(u) if u.is_active => {}
            _ => return Err(AuthError::InvalidResetToken),
        }
        let new_hash = self.hasher.hash(new).await?;
        let user = self
            .stores
            .users
            .complete_password_reset(&hash, &new_hash, self.now())
            .await?
            .ok_or(AuthError::InvalidResetToken)?;
        self.emit_for(EventKind::PasswordResetCompleted, &user, client);
        Ok(())
    }

    // ------------------------------------------------------------- housekeeping

    /// Deletes rows past their expiry (DECISIONS.md §11). Run periodically
    /// by the server and by the CLI.
    pub async fn purge_expired(&self) -> Result<PurgeReport, regstack_ports::StoreError> {
        let now = self.now();
        let s = &self.stores;
        Ok(PurgeReport {
            pending: s.pending.purge_expired(now).await?,
            tokens: s.tokens.purge_expired(now).await?,
            login_attempts: s
                .login_attempts
                .purge_expired(now - secs(self.cfg.login_lockout_window_seconds))
                .await?,
            // Revoked sessions stay until every access token they issued has
            // expired, so a dead token keeps getting its precise refusal.
            sessions: s
                .sessions
                .purge_expired(now - secs(self.cfg.jwt_ttl_seconds))
                .await?,
            rate_limit_hits: s
                .rate_limits
                .purge_expired(now - TimeDelta::hours(1))
                .await?,
        })
    }
}
