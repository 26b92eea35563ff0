//! The runners: each public method performs one flow over the ports.
//!
//! Rules live in [`crate::flows`] and in the atomic store operations; the
//! runner takes `now` from the Clock once per request, calls the ports in
//! order, and turns outcomes into [`AuthError`]s. Mail leaves the request
//! path: it is composed here and delivered by a background task, so a slow
//! or failing relay never delays or fails the request, and never loses the
//! user's work (the pending registration or reset request stays; a resend
//! mails again).
//! Where the answer must not depend on whether an address has an account
//! (`forgot_password`), everything address-dependent leaves the request
//! path too, as one job of the engine's `background` queue.
//!
//! [`Engine`] is a facade: this file holds its dependencies and the helpers
//! every capability shares (events, link tokens, mail); each capability's
//! runners live in a module of their own, beside the flow machine they run:
//!
//! | module | runners | machine |
//! |---|---|---|
//! | `registration` | `register`, `verify`, `resend_verification` | `flows::one_time` |
//! | `sign_in` | `login`, `start_session`, `require_current_password` | `flows::sign_in` |
//! | `sessions` | `authenticate`, `refresh`, `logout`, `logout_all`, `list_sessions`, `revoke_session` | `flows::refresh` |
//! | `account` | `update_profile`, `change_password`, `request_email_change`, `confirm_email_change`, `revert_email_change` | `flows::one_time` |
//! | `recovery` | `forgot_password`, `reset_password` | `flows::one_time` |
//! | `mfa` | `confirm_sign_in`, `totp_setup`, `totp_confirm`, `totp_disable`, `regenerate_backup_codes` | `flows::mfa`, `flows::gate` |
//! | `oauth` | `oauth_start`, `oauth_callback`, `oauth_exchange`, `oauth_unlink`, `oauth_identities` | `flows::oauth`, `flows::gate` |
//! | `deletion` | `delete_account` | |
//! | `audit` | `admin_audit` (reading; [`crate::audit`] writes) | |
//! | `housekeeping` | `purge_expired` | |
//!
//! A new capability (second factors, OAuth) adds its machine under
//! `flows/`, its runners in a module here, and a store port with its
//! contract cases.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use regstack_ports::{
    BreachVerdict, BreachedPasswords, Clock, Email, Mailer, NewPassword, OneTimeToken,
    OutgoingMail, PasswordHasher, SmsSender, Stores, Timestamp, TokenKind, User, UserId,
};
use secrecy::{ExposeSecret, SecretString};

use crate::audit::AuditLog;
use crate::config::{Config, ConfigError};
use crate::device_cookie::DeviceCookies;
use crate::error::AuthError;
use crate::events::{Event, EventBus, EventKind};
use crate::factors::{BackupCodeHasher, SecretSealer, SmsCodeHasher};
use crate::jwt::JwtCodec;
use crate::mail::{Composer, MailContext, MailKind, TemplateError};
use crate::password_policy::{self, PasswordRefusal};
use crate::refresh_token::RefreshTokens;
use crate::tokens;
use background::Background;

mod account;
mod admin;
mod audit;
mod background;
mod deletion;
mod forced_change;
mod housekeeping;
mod mfa;
mod oauth;
mod phone;
mod recovery;
mod registration;
mod sessions;
mod sign_in;

pub use admin::{
    AdminStats, InviteSpec, InviteSpecError, NewInvite, UserPage, DEFAULT_INVITE_TTL_SECONDS,
    MAX_INVITE_NOTE_CHARS, MAX_INVITE_PAGE, MAX_INVITE_TTL_SECONDS,
};
pub use forced_change::PasswordChangePending;
pub use housekeeping::PurgeReport;
pub use mfa::{BackupCodes, LoginOutcome, Method, MfaPending, PresentedCode, TotpSetup};
pub use oauth::{
    sanitize_for_log, CallbackQuery, ExchangeOutcome, OAuthProvider, OAuthProviders, OAuthStart,
};
pub use phone::PhoneStart;
pub use registration::{Registered, Registration};
pub use sessions::{Principal, Refreshed};
pub use sign_in::SignedIn;

/// Longest user agent kept on a session.
const MAX_USER_AGENT_CHARS: usize = 256;
/// How long a mail delivery may take before it is abandoned.
const MAIL_TIMEOUT: Duration = Duration::from_secs(30);

/// Who is calling, as far as the transport knows. The IP and user agent
/// are recorded on sessions and events and never used for decisions that
/// need trust; the device cookie is trusted only once its MAC verifies
/// for the address signing in ([`crate::device_cookie`]).
#[derive(Debug, Clone, Default)]
pub struct ClientContext {
    /// Client IP (socket, or proxy header when `behind_proxy`).
    pub ip: Option<String>,
    /// `User-Agent` header.
    pub user_agent: Option<String>,
    /// The device cookie the client presented to a sign-in, as it came
    /// (`/login` reads it; other routes leave it `None`).
    pub device_cookie: Option<SecretString>,
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
    /// Text-message transport (SMS second factors).
    pub sms: Arc<dyn SmsSender>,
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

/// Runs every account flow. Cheap to clone — every part is shared — so a
/// runner can hand a clone to a background job.
#[derive(Clone)]
pub struct Engine {
    cfg: Arc<Config>,
    stores: Stores,
    hasher: Arc<dyn PasswordHasher>,
    clock: Arc<dyn Clock>,
    mailer: Arc<dyn Mailer>,
    sms: Arc<dyn SmsSender>,
    composer: Arc<Composer>,
    jwt: Arc<JwtCodec>,
    refresh_tokens: Arc<RefreshTokens>,
    device_cookies: Arc<DeviceCookies>,
    /// Seals TOTP secrets at rest.
    sealer: Arc<SecretSealer>,
    /// Keys backup-code digests.
    backup_codes: Arc<BackupCodeHasher>,
    /// The sealers and backup-code keys of `jwt_previous_secrets`: factors
    /// enrolled before a rotation keep working while the old secret is
    /// listed (open and check only; new ones use the current keys).
    previous_factor_keys: Arc<Vec<(SecretSealer, BackupCodeHasher)>>,
    /// Keys SMS-code digests.
    sms_codes: Arc<SmsCodeHasher>,
    events: EventBus,
    background: Arc<Background>,
    /// OAuth providers by name (none unless the host adds some).
    oauth: Arc<OAuthProviders>,
    /// The audit log's queue (`audit.enabled`).
    audit: Option<Arc<AuditLog>>,
    /// Screens new passwords against breach corpora (none unless the host
    /// or the server's `password.breach_check` adds one).
    breach: Option<Arc<dyn BreachedPasswords>>,
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

impl Engine {
    /// Validates the configuration, logs its warnings
    /// ([`Config::warnings`]: protections it turns off) and wires the engine.
    pub fn new(cfg: Config, deps: Deps) -> Result<Self, EngineError> {
        cfg.validate()?;
        for warning in cfg.warnings() {
            tracing::warn!("{warning}");
        }
        let composer = Composer::new(&cfg.app_name, deps.template_overrides)?;
        let jwt = JwtCodec::new(
            &cfg.jwt_secret,
            cfg.jwt_algorithm,
            cfg.jwt_audience.clone(),
            cfg.jwt_ttl_seconds,
        )
        .with_iat_leeway(cfg.jwt_iat_leeway_seconds)
        .with_previous_secrets(&cfg.jwt_previous_secrets);
        let jwt = if cfg.jwt_algorithm.is_asymmetric() {
            let keys = crate::jwt::SigningKeys::parse(cfg.jwt_algorithm, &cfg.jwt_private_keys)
                .map_err(|reason| ConfigError::new("jwt_private_keys", reason))?;
            jwt.with_signing_keys(keys)
        } else {
            jwt
        };
        let refresh_tokens =
            RefreshTokens::new(&cfg.jwt_secret).with_previous_secrets(&cfg.jwt_previous_secrets);
        let device_cookies =
            DeviceCookies::new(&cfg.jwt_secret).with_previous_secrets(&cfg.jwt_previous_secrets);
        Ok(Self {
            refresh_tokens: Arc::new(refresh_tokens),
            device_cookies: Arc::new(device_cookies),
            sealer: Arc::new(SecretSealer::new(&cfg.jwt_secret)),
            backup_codes: Arc::new(BackupCodeHasher::new(&cfg.jwt_secret)),
            previous_factor_keys: Arc::new(
                cfg.jwt_previous_secrets
                    .iter()
                    .map(|s| (SecretSealer::new(s), BackupCodeHasher::new(s)))
                    .collect(),
            ),
            sms_codes: Arc::new(SmsCodeHasher::new(&cfg.jwt_secret)),
            audit: cfg.audit.enabled.then(|| {
                Arc::new(AuditLog::new(
                    deps.stores.audit.clone(),
                    cfg.audit.queue_capacity,
                ))
            }),
            cfg: Arc::new(cfg),
            stores: deps.stores,
            hasher: deps.hasher,
            clock: deps.clock,
            mailer: deps.mailer,
            sms: deps.sms,
            composer: Arc::new(composer),
            jwt: Arc::new(jwt),
            events: deps.events,
            background: Arc::default(),
            oauth: Arc::default(),
            breach: None,
        })
    }

    /// Signs in through these OAuth providers (replacing any before). The
    /// routes exist only where the host mounts them (`enable_oauth`).
    pub fn with_oauth_providers(mut self, providers: OAuthProviders) -> Self {
        self.oauth = Arc::new(providers);
        self
    }

    /// Screens every new password (register, change, reset, the forced
    /// change) with this breach corpus, bounded by
    /// `password.breach_timeout_ms`; what an unavailable screen means is
    /// `password.breach_fail_closed`.
    pub fn with_breach_screen(mut self, screen: Arc<dyn BreachedPasswords>) -> Self {
        self.breach = Some(screen);
        self
    }

    /// Refuses a new password for `email`'s account that is common, made
    /// of context words, or breached — before anything is hashed or
    /// changed ([`crate::password_policy`]). Every flow that sets a
    /// password calls it; public for the ones outside the engine (the
    /// CLI's `create-admin`).
    pub async fn screen_new_password(
        &self,
        new: &NewPassword,
        email: &Email,
    ) -> Result<(), AuthError> {
        let p = &self.cfg.password;
        let context = p
            .context_words
            .then(|| (self.cfg.app_name.as_str(), email.as_str()));
        if let Some(refusal) =
            password_policy::refusal(new.secret().expose_secret(), p.blocklist, context)
        {
            return Err(AuthError::PasswordRefused(refusal));
        }
        let Some(screen) = &self.breach else {
            return Ok(());
        };
        let digest = password_policy::sha1_of(new.secret());
        let limit = Duration::from_millis(p.breach_timeout_ms.max(1));
        let verdict = tokio::time::timeout(limit, screen.check(&digest))
            .await
            .unwrap_or_else(|_| BreachVerdict::Unavailable("timed out".into()));
        match verdict {
            BreachVerdict::Breached => Err(AuthError::PasswordRefused(PasswordRefusal::Breached)),
            BreachVerdict::NotBreached => Ok(()),
            BreachVerdict::Unavailable(reason) if p.breach_fail_closed => {
                tracing::warn!(%reason, "breached-password screen unavailable: request refused (breach_fail_closed)");
                Err(AuthError::PasswordScreenUnavailable)
            }
            BreachVerdict::Unavailable(reason) => {
                tracing::warn!(%reason, "breached-password screen unavailable: password accepted unscreened (fail open)");
                Ok(())
            }
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The JWK Set of the access-token keys (`GET /.well-known/jwks.json`):
    /// `None` when tokens are signed with `jwt_secret` (HS256/384/512),
    /// which must never be published.
    pub fn jwks(&self) -> Option<serde_json::Value> {
        self.jwt.jwks()
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

    /// The audit log's queue, when `audit.enabled`: its counters, and
    /// [`AuditLog::flush`] for shutdown.
    pub fn audit_log(&self) -> Option<&AuditLog> {
        self.audit.as_deref()
    }

    /// Names the account (and session) in the current span — a flow's,
    /// or the HTTP request's — so the log lines after this carry them. Ids
    /// only: never an address, never a secret.
    fn record_ids(user: &UserId, session: Option<&regstack_ports::SessionId>) {
        let span = tracing::Span::current();
        span.record("user_id", user.as_str());
        if let Some(s) = session {
            span.record("session_id", s.as_str());
        }
    }

    /// Counts one request against a route limit — at most `limit` within
    /// `window` for `key` — and answers whether it is admitted (a refused
    /// request is not counted). The HTTP layer's per-route limits
    /// (`rate_limits.*`) come here rather than to the store, so that they
    /// count with the engine's clock in the same counter store as the mail
    /// quota and the SMS caps: the database, or Redis when the server is
    /// configured so — shared by every instance either way.
    pub async fn take_route_limit(
        &self,
        key: &str,
        window: TimeDelta,
        limit: u32,
    ) -> Result<bool, regstack_ports::StoreError> {
        self.stores
            .rate_limits
            .hit(key, self.now(), window, limit)
            .await
    }

    fn emit(&self, kind: EventKind, f: impl FnOnce(&mut Event)) {
        let mut e = Event::new(kind, self.now());
        f(&mut e);
        if let Some(audit) = &self.audit {
            audit.record(&e);
        }
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

    /// Takes one mail from the address's hourly quota
    /// (`email.max_per_address_per_hour`), before anything is superseded:
    /// over the quota a flow must change nothing, so the link its owner
    /// last received stays valid — otherwise a few requests an hour by
    /// anyone would kill every link the owner gets and send none.
    async fn take_mail_quota(&self, to: &Email, kind: MailKind) -> Result<bool, AuthError> {
        let allowed = self
            .stores
            .rate_limits
            .hit(
                &format!("mail:{}", to.as_str()),
                self.now(),
                TimeDelta::hours(1),
                self.cfg.email.max_per_address_per_hour,
            )
            .await?;
        if !allowed {
            tracing::warn!(
                kind = kind.stem(),
                "mail quota for this address reached: nothing sent, the last link stays valid"
            );
        }
        Ok(allowed)
    }

    /// Composes a mail; `None` (logged) if a template fails.
    fn compose_mail(
        &self,
        kind: MailKind,
        to: &Email,
        full_name: Option<&str>,
        url: &str,
        ttl_seconds: u64,
    ) -> Option<OutgoingMail> {
        self.compose_for(kind, to, full_name, url, ttl_seconds, None)
    }

    /// [`Self::compose_mail`], naming the client (IP, user agent) when
    /// one is given: a security notice says where the change came from.
    fn compose_for(
        &self,
        kind: MailKind,
        to: &Email,
        full_name: Option<&str>,
        url: &str,
        ttl_seconds: u64,
        client: Option<&ClientContext>,
    ) -> Option<OutgoingMail> {
        let context = MailContext {
            to,
            full_name,
            url,
            ttl_seconds,
            ip: client.and_then(|c| c.ip.as_deref()),
            user_agent: client.and_then(|c| c.user_agent.as_deref()),
        };
        self.composer
            .compose(kind, &context)
            .inspect_err(|e| tracing::error!(error = %e, kind = kind.stem(), "mail not composed"))
            .ok()
    }

    /// Hands a composed mail to the mailer under [`MAIL_TIMEOUT`] and waits
    /// for the outcome. Failures are logged without the body.
    async fn deliver(&self, kind: MailKind, mail: OutgoingMail) {
        match tokio::time::timeout(MAIL_TIMEOUT, self.mailer.send(&mail)).await {
            Ok(Ok(())) => tracing::debug!(kind = kind.stem(), "mail delivered"),
            Ok(Err(e)) => tracing::error!(kind = kind.stem(), error = %e, "mail delivery failed"),
            Err(_) => tracing::error!(kind = kind.stem(), "mail delivery timed out"),
        }
    }

    /// Whether a security notice of `kind` may go to `to`: its switch in
    /// `[notices]` is on, the address is a real one (not an OAuth
    /// placeholder) and the address's notice quota admits it (taken here):
    /// `email.max_per_address_per_hour` notices an hour, counted apart
    /// from the links (`notice:<address>`), so that a burst of notices an
    /// intruder provokes can neither flood the owner nor use up the quota
    /// the owner's own reset link needs. A notice never fails the flow
    /// that caused it: a quota that cannot be read is logged and the
    /// notice skipped.
    async fn notice_allowed(&self, kind: MailKind, to: &Email) -> bool {
        let n = &self.cfg.notices;
        let on = match kind {
            MailKind::NewDevice => n.new_device,
            MailKind::PasswordChanged => n.password_changed,
            MailKind::EmailChangeNotice => n.email_changed,
            MailKind::MfaDisabled => n.mfa_disabled,
            MailKind::RefreshReuse => n.refresh_reuse,
            _ => true,
        };
        if !on || to.as_str().ends_with("@oauth.invalid") {
            return false;
        }
        let quota = self
            .stores
            .rate_limits
            .hit(
                &format!("notice:{}", to.as_str()),
                self.now(),
                TimeDelta::hours(1),
                self.cfg.email.max_per_address_per_hour,
            )
            .await;
        match quota {
            Ok(true) => true,
            Ok(false) => {
                tracing::warn!(
                    kind = kind.stem(),
                    "notice quota for this address reached: notice not sent"
                );
                false
            }
            Err(e) => {
                tracing::error!(error = %e, kind = kind.stem(), "no security notice: the mail quota could not be read");
                false
            }
        }
    }

    /// The account page, where a notice's reader acts (change the
    /// password, sign out everywhere, remove what was added).
    fn account_page_url(&self) -> String {
        format!(
            "{}{}/me",
            self.cfg.base(),
            self.cfg.ui_prefix.trim_end_matches('/')
        )
    }

    /// Mails the security notice `kind` about `user` to the account's
    /// address, linking the account page — if [`Self::notice_allowed`].
    /// Delivery is in the background; nothing secret is in it.
    async fn notify(&self, kind: MailKind, user: &User, client: Option<&ClientContext>) {
        if !self.notice_allowed(kind, &user.email).await {
            return;
        }
        let url = match kind {
            // A password changed by someone else: the owner's way back is
            // a reset mailed to this address.
            MailKind::PasswordChanged => format!(
                "{}{}/forgot-password",
                self.cfg.base(),
                self.cfg.ui_prefix.trim_end_matches('/')
            ),
            _ => self.account_page_url(),
        };
        let Some(mail) = self.compose_for(
            kind,
            &user.email,
            user.full_name.as_deref(),
            &url,
            0,
            client,
        ) else {
            return;
        };
        self.spawn_delivery(kind, mail);
    }

    /// Delivers a composed mail in the background.
    fn spawn_delivery(&self, kind: MailKind, mail: OutgoingMail) {
        let engine = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move { engine.deliver(kind, mail).await });
            }
            Err(_) => tracing::error!("no async runtime: mail not sent"),
        }
    }

    /// Composes now and delivers in the background; the caller has taken
    /// the quota ([`Self::take_mail_quota`]). Failures are logged without
    /// the body.
    fn send_mail(
        &self,
        kind: MailKind,
        to: &Email,
        full_name: Option<&str>,
        url: &str,
        ttl_seconds: u64,
    ) {
        let Some(mail) = self.compose_mail(kind, to, full_name, url, ttl_seconds) else {
            return;
        };
        self.spawn_delivery(kind, mail);
    }
}
