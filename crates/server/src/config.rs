//! Loading `regstack.toml` and `REGSTACK_*` variables into [`FileConfig`],
//! the file-level shape with regstack's key names, and splitting it into
//! the [`Settings`] parts each ring reads.
//!
//! Order, lowest first: built-in defaults, the TOML file (`--config`, else
//! `$REGSTACK_CONFIG`, else `./regstack.toml` when present), then
//! environment variables (`REGSTACK_EMAIL__SMTP_HOST` → `email.smtp_host`).
//! A key regstack 0.9.3 knows but we do not implement yet is accepted with
//! a warning — unless it promises a protection we do not give yet
//! (none today): that stops start-up
//! naming the key, as does a key neither knows. regstack's per-route
//! `*_rate_limit` keys are enforced: each sets its route's limit beside the
//! `[rate_limits]` groups (`regstack_http_axum::ratelimit::ROUTES` maps
//! them).
//!
//! [`FileConfig`] lists every key itself rather than flattening the parts
//! into one struct: serde's `deny_unknown_fields` does not work through
//! `#[serde(flatten)]`, and the unknown-key error should list every key of
//! the table it is in. Whole tables that belong to one part (`[password]`,
//! `[sessions]`: core's; `[http]`: the HTTP layer's) are that part's type;
//! `[email]` is split between core's sender and quota and the notify
//! adapter's transport. Defaults come from the parts, so they are defined
//! once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Toml};
use figment::value::{Dict, Value};
use figment::Figment;
use regstack_adapters_notify::SmsTransport;
use regstack_adapters_notify::{MailTransport, SesSettings, SmtpSecurity, SmtpSettings};
use regstack_core::config::{
    AuditPolicy, EmailPolicy, JwtAlgorithm, MfaPolicy, NoticesPolicy, OAuthPolicy, PasswordConfig,
    SessionsConfig,
};
use regstack_core::{Config, ConfigError, RegistrationMode};
use regstack_http_axum::{HttpSettings, PageSettings};
use regstack_oauth::{ProviderConfig, ProviderKind};
use secrecy::SecretString;
use serde::Deserialize;

use crate::settings::{DatabaseSettings, OAuthSettings, RateLimitStore, Settings};

/// Top-level keys regstack 0.9.3 defines that this build does not
/// implement yet and whose presence promises no protection: accepted,
/// warned about, ignored, so that a regstack configuration loads unchanged
/// (a key neither regstack nor we know stops start-up naming it). Keys that
/// do promise one are [`UNSUPPORTED_SECURITY_SWITCHES`].
const REGSTACK_ONLY_KEYS: &[&str] = &[
    // Where regstack keeps its data. A wrong name finds no data; it exposes
    // none (our table and collection names are regstack's defaults, so a
    // regstack database can later be adopted in place by a migration).
    "user_collection",
    "pending_collection",
    "blacklist_collection",
    "login_attempt_collection",
    "mfa_code_collection",
    "oauth_identity_collection",
    "oauth_state_collection",
];

/// regstack 0.9.3 switches that turn on a protection this build does not
/// have yet. On, they would make an operator believe the protection is
/// there, so start-up stops naming the key (security review R7: no dead
/// security configuration). Off (`false`, also `"false"`, `"0"`, `"no"`,
/// `"off"` from a variable) they promise nothing and only warn.
/// (None today: `enable_sms_2fa`, the last one, is implemented.)
const UNSUPPORTED_SECURITY_SWITCHES: &[(&str, &str)] = &[];

/// `email.backend`: which mail transport to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EmailBackend {
    /// Log mail instead of sending it (development).
    #[default]
    Console,
    /// Send through an SMTP relay.
    Smtp,
    /// Send through AWS SES.
    Ses,
}

/// `email.smtp_security`: how to secure the SMTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurityKey {
    /// Upgrade a plain connection with STARTTLS (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS at all: only for a relay on the same host.
    Plain,
}

/// `[email]` as written: core's sender and quota ([`EmailPolicy`]) and the
/// notify adapter's transport ([`MailTransport`]) in one table.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailSection {
    /// Transport.
    pub backend: EmailBackend,
    /// Sender address (policy).
    pub from_address: String,
    /// Sender display name; `app_name` when unset (policy).
    pub from_name: Option<String>,
    /// SMTP relay host; required with `backend = "smtp"`.
    pub smtp_host: Option<String>,
    /// SMTP relay port.
    pub smtp_port: u16,
    /// regstack's switch: STARTTLS on (true) or plain (false). Overridden by
    /// `smtp_security` when that is set.
    pub smtp_starttls: bool,
    /// `starttls`, `tls` or `plain`; takes precedence over `smtp_starttls`.
    pub smtp_security: Option<SmtpSecurityKey>,
    /// SMTP user.
    pub smtp_username: Option<String>,
    /// SMTP password.
    pub smtp_password: Option<SecretString>,
    /// Seconds before an SMTP exchange is abandoned.
    pub smtp_timeout_seconds: u64,
    /// AWS region of SES (`backend = "ses"`).
    pub ses_region: String,
    /// Profile whose static keys SES uses; not with the explicit keys.
    pub ses_profile: Option<String>,
    /// Explicit AWS access key id; set together with the secret.
    pub ses_access_key_id: Option<SecretString>,
    /// Explicit AWS secret access key.
    pub ses_secret_access_key: Option<SecretString>,
    /// Console transport only: log the text body (it holds live links).
    /// `None` means "not set": on in zero-config development mode, off
    /// otherwise — with any configuration present the server may face real
    /// users, whose live links must not reach a log.
    pub log_bodies: Option<bool>,
    /// At most this many mails to one address per hour (policy: past it
    /// the mail-sending routes give the same answer and send nothing, so
    /// nobody can flood an inbox through them).
    pub max_per_address_per_hour: u32,
}

impl Default for EmailSection {
    fn default() -> Self {
        let EmailPolicy {
            from_address,
            from_name,
            max_per_address_per_hour,
        } = EmailPolicy::default();
        let smtp = SmtpSettings::new("");
        Self {
            backend: EmailBackend::Console,
            from_address,
            from_name,
            smtp_host: None,
            smtp_port: smtp.port,
            smtp_starttls: smtp.security == SmtpSecurity::StartTls,
            smtp_security: None,
            smtp_username: None,
            smtp_password: None,
            smtp_timeout_seconds: smtp.timeout.as_secs(),
            ses_region: SesSettings::DEFAULT_REGION.to_owned(),
            ses_profile: None,
            ses_access_key_id: None,
            ses_secret_access_key: None,
            log_bodies: None,
            max_per_address_per_hour,
        }
    }
}

impl std::fmt::Debug for EmailSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailSection")
            .field("backend", &self.backend)
            .field("from_address", &self.from_address)
            .field("from_name", &self.from_name)
            .field("smtp_host", &self.smtp_host)
            .field("smtp_port", &self.smtp_port)
            .field("smtp_security", &self.effective_smtp_security())
            .field("smtp_username", &self.smtp_username)
            .field(
                "smtp_password",
                &self.smtp_password.as_ref().map(|_| "[redacted]"),
            )
            .field("ses_region", &self.ses_region)
            .field("ses_profile", &self.ses_profile)
            .field(
                "ses_access_key_id",
                &self.ses_access_key_id.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "ses_secret_access_key",
                &self.ses_secret_access_key.as_ref().map(|_| "[redacted]"),
            )
            .field("log_bodies", &self.log_bodies)
            .finish_non_exhaustive()
    }
}

impl EmailSection {
    /// The security mode after applying regstack's `smtp_starttls` switch.
    pub fn effective_smtp_security(&self) -> SmtpSecurity {
        match self.smtp_security {
            Some(SmtpSecurityKey::Starttls) => SmtpSecurity::StartTls,
            Some(SmtpSecurityKey::Tls) => SmtpSecurity::Tls,
            Some(SmtpSecurityKey::Plain) => SmtpSecurity::Plain,
            None if self.smtp_starttls => SmtpSecurity::StartTls,
            None => SmtpSecurity::Plain,
        }
    }

    /// Core's half and the adapter's half. An SMTP backend without a host
    /// is refused here, naming `email.smtp_host`, and so are SES keys that
    /// contradict each other (half a key pair, a profile with keys); the
    /// rest is checked by the adapter when the mailer is built (SES
    /// credentials are resolved then too).
    pub fn split(self) -> Result<(EmailPolicy, MailTransport), ConfigError> {
        let security = self.effective_smtp_security();
        let Self {
            backend,
            from_address,
            from_name,
            smtp_host,
            smtp_port,
            smtp_starttls: _,
            smtp_security: _,
            smtp_username,
            smtp_password,
            smtp_timeout_seconds,
            ses_region,
            ses_profile,
            ses_access_key_id,
            ses_secret_access_key,
            log_bodies,
            max_per_address_per_hour,
        } = self;
        // Checked whatever the backend, as regstack's validator does: a
        // contradiction is a mistake even while the keys are unused.
        let ses_credentials = SesSettings::credentials_from_keys(
            ses_profile,
            ses_access_key_id,
            ses_secret_access_key,
        )
        .map_err(|e| ConfigError::new(e.key, e.reason))?;
        let transport = match backend {
            EmailBackend::Console => MailTransport::Console {
                log_bodies: log_bodies.unwrap_or(false),
            },
            EmailBackend::Smtp => {
                let Some(host) = smtp_host else {
                    return Err(ConfigError::new(
                        "email.smtp_host",
                        "is required when email.backend = \"smtp\"",
                    ));
                };
                MailTransport::Smtp(SmtpSettings {
                    port: smtp_port,
                    security,
                    username: smtp_username,
                    password: smtp_password,
                    // regstack read 0 as "at once"; a send needs some time.
                    timeout: Duration::from_secs(smtp_timeout_seconds.max(1)),
                    ..SmtpSettings::new(host)
                })
            }
            EmailBackend::Ses => MailTransport::Ses(SesSettings {
                region: ses_region,
                credentials: ses_credentials,
                ..SesSettings::new()
            }),
        };
        let policy = EmailPolicy {
            from_address,
            from_name,
            max_per_address_per_hour,
        };
        Ok((policy, transport))
    }
}

/// `[oauth]` as written: core's policy ([`OAuthPolicy`]), regstack's
/// `google_*` keys (provider `google`) and our `[oauth.providers.<name>]`
/// tables, any number of them (`REGSTACK_OAUTH__PROVIDERS__<NAME>__<KEY>`
/// from the environment).
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OAuthSection {
    /// regstack's Google client id: defines provider `google`.
    pub google_client_id: Option<String>,
    /// Its secret.
    pub google_client_secret: Option<SecretString>,
    /// Its callback URL, when not `{base_url}{api_prefix}/oauth/google/callback`.
    pub google_redirect_uri: Option<String>,
    /// See [`OAuthPolicy::auto_link_verified_emails`].
    pub auto_link_verified_emails: bool,
    /// See [`OAuthPolicy::enforce_mfa_on_oauth_signin`] (default on).
    pub enforce_mfa_on_oauth_signin: bool,
    /// See [`OAuthPolicy::state_ttl_seconds`].
    pub state_ttl_seconds: u64,
    /// See [`OAuthPolicy::completion_ttl_seconds`].
    pub completion_ttl_seconds: u64,
    /// `[oauth.providers.<name>]`: `kind`, `issuer`, `client_id`,
    /// `client_secret`, `scopes`, `redirect_uri`, `tenant`, … (see
    /// [`ProviderConfig`]).
    pub providers: std::collections::BTreeMap<String, ProviderConfig>,
}

impl Default for OAuthSection {
    fn default() -> Self {
        let OAuthPolicy {
            state_ttl_seconds,
            completion_ttl_seconds,
            auto_link_verified_emails,
            enforce_mfa_on_oauth_signin,
        } = OAuthPolicy::default();
        Self {
            google_client_id: None,
            google_client_secret: None,
            google_redirect_uri: None,
            auto_link_verified_emails,
            enforce_mfa_on_oauth_signin,
            state_ttl_seconds,
            completion_ttl_seconds,
            providers: Default::default(),
        }
    }
}

impl OAuthSection {
    /// Core's policy and the providers, each named after its table. The
    /// `google_*` keys become provider `google` (half of them is an
    /// error, and so is a `[oauth.providers.google]` beside them).
    fn split(self) -> Result<(OAuthPolicy, Vec<ProviderConfig>), ConfigError> {
        let policy = OAuthPolicy {
            state_ttl_seconds: self.state_ttl_seconds,
            completion_ttl_seconds: self.completion_ttl_seconds,
            auto_link_verified_emails: self.auto_link_verified_emails,
            enforce_mfa_on_oauth_signin: self.enforce_mfa_on_oauth_signin,
        };
        let mut providers: Vec<ProviderConfig> = self
            .providers
            .into_iter()
            .map(|(name, mut p)| {
                p.name = name;
                p
            })
            .collect();
        match (self.google_client_id, self.google_client_secret) {
            (Some(id), Some(secret)) => {
                if providers.iter().any(|p| p.name == "google") {
                    return Err(ConfigError::new(
                        "oauth.google_client_id",
                        "defines provider `google`, and so does [oauth.providers.google]: keep one",
                    ));
                }
                let mut google = ProviderConfig::new("google", ProviderKind::Google, id, secret);
                google.redirect_uri = self.google_redirect_uri;
                providers.push(google);
            }
            (None, None) => {
                if self.google_redirect_uri.is_some() {
                    return Err(ConfigError::new(
                        "oauth.google_redirect_uri",
                        "is set without oauth.google_client_id and oauth.google_client_secret",
                    ));
                }
            }
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "oauth.google_client_secret",
                    "is required with oauth.google_client_id",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "oauth.google_client_id",
                    "is required with oauth.google_client_secret",
                ))
            }
        }
        Ok((policy, providers))
    }
}

/// `registration_mode`, or regstack's `allow_registration` for it; the two
/// set against each other is a configuration error (which one was meant
/// cannot be guessed, and guessing "open" would open a closed service).
fn registration_mode_of(
    mode: Option<RegistrationMode>,
    allow: Option<bool>,
) -> Result<RegistrationMode, ConfigError> {
    match (mode, allow) {
        (None, None | Some(true)) => Ok(RegistrationMode::Open),
        (None, Some(false)) => Ok(RegistrationMode::Closed),
        (Some(mode), None) => Ok(mode),
        (Some(RegistrationMode::Closed), Some(false)) => Ok(RegistrationMode::Closed),
        (Some(mode @ (RegistrationMode::Open | RegistrationMode::Invite)), Some(true)) => Ok(mode),
        (Some(mode), Some(allow)) => Err(ConfigError::new(
            "registration_mode",
            format!(
                "is \"{}\" but allow_registration = {allow} says otherwise; set only registration_mode",
                mode.as_str()
            ),
        )),
    }
}

/// `rate_limits.backend`: where the counters of the route limits, the
/// mail quota and the SMS caps live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitBackendKey {
    /// The accounts database (`database_url`): nothing more to run.
    #[default]
    Database,
    /// A Redis server (`rate_limits.redis_url`): counters off the database.
    Redis,
}

/// `[rate_limits]` as written: where counters live, and each route
/// group's limit (slowapi strings, `""` = the group unlimited; see
/// [`RouteLimits`](regstack_http_axum::RouteLimits) for the routes and
/// defaults).
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitsSection {
    /// `database` (default) or `redis`.
    pub backend: RateLimitBackendKey,
    /// `redis://[:password@]host:port[/db]`, with `backend = "redis"`.
    pub redis_url: Option<SecretString>,
    /// `/login`.
    pub login: String,
    /// `/register`, `/resend-verification`.
    pub register: String,
    /// `/forgot-password`, `/reset-password`.
    pub forgot_password: String,
    /// `/verify`, `/confirm-email-change`.
    pub verify: String,
    /// `/login/mfa-confirm`, `/login/change-password`, `/totp/confirm`.
    pub mfa: String,
    /// `/phone/*`.
    pub sms: String,
    /// `/oauth/{provider}/start`, `/oauth/{provider}/link/start`, `/oauth/exchange`.
    pub oauth_start: String,
}

impl Default for RateLimitsSection {
    fn default() -> Self {
        let regstack_http_axum::RouteLimits {
            login,
            register,
            forgot_password,
            verify,
            mfa,
            sms,
            oauth_start,
            regstack_routes: _,
        } = regstack_http_axum::RouteLimits::default();
        Self {
            backend: RateLimitBackendKey::Database,
            redis_url: None,
            login,
            register,
            forgot_password,
            verify,
            mfa,
            sms,
            oauth_start,
        }
    }
}

impl RateLimitsSection {
    /// The HTTP layer's route limits (with regstack's per-route keys) and
    /// the server's counter store.
    fn split(
        self,
        regstack_routes: std::collections::BTreeMap<String, String>,
    ) -> Result<(regstack_http_axum::RouteLimits, RateLimitStore), ConfigError> {
        let store = match (self.backend, self.redis_url) {
            (RateLimitBackendKey::Database, None) => RateLimitStore::Database,
            (RateLimitBackendKey::Database, Some(_)) => {
                return Err(ConfigError::new(
                    "rate_limits.redis_url",
                    "is set but rate_limits.backend is \"database\": set backend = \"redis\" \
                     to keep the counters in Redis, or remove the URL",
                ))
            }
            (RateLimitBackendKey::Redis, Some(url)) => RateLimitStore::Redis { url },
            (RateLimitBackendKey::Redis, None) => {
                return Err(ConfigError::new(
                    "rate_limits.redis_url",
                    "is required with rate_limits.backend = \"redis\" (redis://host:port)",
                ))
            }
        };
        let limits = regstack_http_axum::RouteLimits {
            login: self.login,
            register: self.register,
            forgot_password: self.forgot_password,
            verify: self.verify,
            mfa: self.mfa,
            sms: self.sms,
            oauth_start: self.oauth_start,
            regstack_routes,
        };
        Ok((limits, store))
    }
}

/// `regstack.toml` and `REGSTACK_*` as read: every key regstack-rs
/// implements, with regstack's names and defaults. [`FileConfig::split`]
/// turns it into the [`Settings`] parts.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// Product name shown in mail.
    pub app_name: String,
    /// Public origin of the service; every mailed link is built from it.
    pub base_url: String,
    /// Take the client IP from `Forwarded` / `X-Forwarded-For`.
    pub behind_proxy: bool,
    /// Storage location (server: [`DatabaseSettings::url`]).
    pub database_url: SecretString,
    /// MongoDB database used when the URL names none (server).
    pub mongodb_database: String,
    /// Key material for every token the service signs. At least 32 bytes.
    pub jwt_secret: SecretString,
    /// Secrets still accepted, never used to sign: rotation (JW-5).
    pub jwt_previous_secrets: Vec<SecretString>,
    /// Signing algorithm for access tokens: `HS256` (default), `HS384`,
    /// `HS512` with `jwt_secret`; `EdDSA` or `RS256` with the keys of
    /// `jwt_keys_file`, published at `/.well-known/jwks.json`.
    pub jwt_algorithm: JwtAlgorithm,
    /// With `jwt_algorithm = "EdDSA"` or `"RS256"`: the PEM file of private
    /// keys, the signing one first, then the rotated-out one (see
    /// [`crate::keys`]). Unset: `regstack.jwt-keys.pem` in the secrets
    /// directory, generated there for EdDSA.
    pub jwt_keys_file: Option<PathBuf>,
    /// Where a generated key file goes: the configuration file's directory,
    /// or the development secret's (set by [`load`] and development mode,
    /// never read from the file).
    #[serde(skip)]
    pub secrets_dir: Option<PathBuf>,
    /// Access-token lifetime.
    pub jwt_ttl_seconds: u64,
    /// When set, tokens carry and must present this `aud`.
    pub jwt_audience: Option<String>,
    /// Clock skew tolerated on an access token's `iat` (0–60 s).
    pub jwt_iat_leeway_seconds: u64,
    /// Registration waits for the address to be proven.
    pub require_verification: bool,
    /// Who may register: `"open"`, `"invite"` or `"closed"` (unset: open,
    /// or what `allow_registration` says).
    pub registration_mode: Option<RegistrationMode>,
    /// regstack's switch: `false` is `registration_mode = "closed"`. Kept
    /// working; set beside a `registration_mode` it contradicts, start-up
    /// fails.
    pub allow_registration: Option<bool>,
    /// A taken address gets the same answer as a new one, and its owner a
    /// notice (EN-5); off: regstack's 409.
    pub uniform_registration: bool,
    /// The forgot/reset routes exist.
    pub enable_password_reset: bool,
    /// `DELETE /account` exists.
    pub enable_account_deletion: bool,
    /// The `/admin/*` routes exist.
    pub enable_admin_router: bool,
    /// Verification link lifetime.
    pub verification_token_ttl_seconds: u64,
    /// Reset link lifetime.
    pub password_reset_token_ttl_seconds: u64,
    /// Email-change link lifetime.
    pub email_change_token_ttl_seconds: u64,
    /// Turns off the login lockout and the route limits.
    pub rate_limit_disabled: bool,
    /// Failed sign-ins allowed per address within the window.
    pub login_lockout_threshold: u32,
    /// Sliding window of the lockout.
    pub login_lockout_window_seconds: u64,
    /// Mount point of the JSON API.
    pub api_prefix: String,
    /// Serve the account pages at `ui_prefix` (regstack's key). On by
    /// default here, unlike regstack: the ready-made server has no other
    /// UI, and its mailed links must open something.
    pub enable_ui_router: bool,
    /// Mount point of the account pages.
    pub ui_prefix: String,
    /// Logo shown in the pages' header (regstack's key).
    pub brand_logo_url: Option<String>,
    /// Line shown beside the product name (regstack's key).
    pub brand_tagline: Option<String>,
    /// Where the pages' stylesheet (and `extra_static_dirs`) are served.
    pub static_prefix: String,
    /// A stylesheet loaded after the built-in one (regstack's key).
    pub theme_css_url: Option<String>,
    /// Directories served under `static_prefix`, first match wins.
    pub extra_static_dirs: Vec<String>,
    /// `[ui]`: the pages' template override directory and brand colour.
    pub ui: UiSection,
    /// Path prefix for the links in mail.
    pub email_link_prefix: Option<String>,
    /// Full URL template of the verification link (`{base_url}`, `{token}`).
    pub verify_url_template: Option<String>,
    /// Full URL template of the reset link.
    pub password_reset_url_template: Option<String>,
    /// Full URL template of the email-change link.
    pub email_change_url_template: Option<String>,
    /// Full URL template of the "this wasn't me" link of an email change.
    pub revert_email_change_url_template: Option<String>,
    /// Directories whose templates override the built-in ones.
    pub extra_template_dirs: Vec<String>,
    /// `[email]`: sender, quota (core) and transport (notify adapter).
    pub email: EmailSection,
    /// `[password]`: hashing (core).
    pub password: PasswordConfig,
    /// `[http]`: body limit, CORS, request deadline, HSTS (HTTP layer).
    pub http: HttpSettings,
    /// `[sessions]`: refresh-token families (core).
    pub sessions: SessionsConfig,
    /// Digits of an SMS code (core's [`MfaPolicy`]).
    pub sms_code_length: usize,
    /// SMS code lifetime.
    pub sms_code_ttl_seconds: u64,
    /// Wrong codes a second-factor challenge allows.
    pub sms_code_max_attempts: u32,
    /// Lifetime of a pending second-factor step.
    pub mfa_pending_token_ttl_seconds: u64,
    /// SMS second factors and the `/phone` routes.
    pub enable_sms_2fa: bool,
    /// `[sms]`: the transport (notify adapter) and the daily caps (core).
    pub sms: SmsSection,
    /// Mount the `/oauth/*` routes (regstack's key).
    pub enable_oauth: bool,
    /// `[oauth]`: policy (core) and providers (the oauth adapter).
    pub oauth: OAuthSection,
    /// `[audit]`: the audit log (core).
    pub audit: AuditPolicy,
    /// `[notices]`: security notices by mail (core).
    pub notices: NoticesPolicy,
    /// How the `regstack` binary writes log lines: `text` (the default)
    /// or `json`, one object per line, for a log pipeline.
    pub log_format: LogFormat,
    /// `[metrics]`: whether and where the binary serves `GET /metrics`.
    pub metrics: MetricsSection,
    /// `[tracing]`: OpenTelemetry export of the spans (feature `otel`).
    pub tracing: TracingSection,
    /// `[rate_limits]`: the route groups' limits (HTTP layer) and where
    /// counters live (server).
    pub rate_limits: RateLimitsSection,
    /// regstack's per-route `*_rate_limit` keys that were set (top-level
    /// keys, taken out by [`from_dict`]).
    #[serde(skip)]
    pub regstack_route_limits: std::collections::BTreeMap<String, String>,
}

/// `[ui]`: what only the account pages read beside regstack's top-level
/// keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UiSection {
    /// A directory whose files override the pages' templates by name
    /// (`login.html`, `base.html`, …), like `extra_template_dirs` for mail.
    pub template_dir: Option<String>,
    /// The brand colour (a CSS colour) the stylesheet's accents use.
    pub brand_color: Option<String>,
}

/// How log lines are written (`log_format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, with the request's span (request id,
    /// method, route path) on each.
    Json,
}

/// `[metrics]`: Prometheus metrics are always counted; this says whether
/// the binary serves them. Off by default: a scrape tells how many
/// sign-ins fail and why, which is not for the public. With `listen`, they
/// are served on that address alone (a port the load balancer does not
/// expose); without it, at `/metrics` on the main port, outside the API
/// prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSection {
    /// Serve `GET /metrics`.
    pub enabled: bool,
    /// `host:port` of a listener of its own, e.g. `127.0.0.1:9464`.
    pub listen: Option<String>,
}

impl MetricsSection {
    /// The address of the metrics listener: `None` when metrics go on the
    /// main port (or nowhere).
    pub fn listen_addr(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        let Some(listen) = &self.listen else {
            return Ok(None);
        };
        if !self.enabled {
            return Err(ConfigError::new(
                "metrics.listen",
                "is set but metrics.enabled is false: set metrics.enabled = true to serve metrics there",
            ));
        }
        listen.parse().map(Some).map_err(|_| {
            ConfigError::new(
                "metrics.listen",
                "must be an IP address and port, such as \"127.0.0.1:9464\"",
            )
        })
    }
}

/// `[tracing]`: the binary's spans (a `request` span per request with its
/// `request_id`, a `flow` span per account flow with the account's ids —
/// never an address or a secret) exported to an OpenTelemetry collector
/// over OTLP/HTTP (protobuf), besides the log. Needs a build with the
/// `otel` feature; without it, setting the endpoint stops start-up rather
/// than promise traces that never leave.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracingSection {
    /// Base URL of the collector's OTLP/HTTP receiver, such as
    /// `http://127.0.0.1:4318`: spans go to `<url>/v1/traces`.
    pub otlp_endpoint: Option<String>,
    /// The exported `service.name`.
    pub service_name: String,
}

impl Default for TracingSection {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "regstack".into(),
        }
    }
}

impl TracingSection {
    /// Where spans are posted (`<otlp_endpoint>/v1/traces`), if anywhere.
    pub fn traces_url(&self) -> Result<Option<String>, ConfigError> {
        let Some(endpoint) = &self.otlp_endpoint else {
            return Ok(None);
        };
        if !cfg!(feature = "otel") {
            return Err(ConfigError::new(
                "tracing.otlp_endpoint",
                "this regstack was built without OpenTelemetry export: build it with `--features otel`, or remove the key",
            ));
        }
        let url = reqwest::Url::parse(endpoint)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        let Some(url) = url else {
            return Err(ConfigError::new(
                "tracing.otlp_endpoint",
                "must be an http(s) URL such as \"http://127.0.0.1:4318\"",
            ));
        };
        if self.service_name.trim().is_empty() {
            return Err(ConfigError::new(
                "tracing.service_name",
                "must not be empty",
            ));
        }
        Ok(Some(format!(
            "{}/v1/traces",
            url.as_str().trim_end_matches('/')
        )))
    }
}

/// `[sms]`: regstack's transport keys, plus the daily caps that keep a
/// texting endpoint from becoming a toll-fraud pump. (Read by taking the
/// caps out and handing the rest to the transport, which refuses a key it
/// does not know — serde's `flatten` would let a misspelt one through.)
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "std::collections::BTreeMap<String, serde_json::Value>")]
pub struct SmsSection {
    /// Texts to one number per day, at most.
    pub max_per_number_per_day: u32,
    /// Texts for one account per day, at most.
    pub max_per_account_per_day: u32,
    /// Texts in all per day, at most (every instance together).
    pub max_per_day: u32,
    /// `backend`, `from_number`, `sns_region`, `twilio_*`, `log_bodies`.
    pub transport: SmsTransport,
}

impl TryFrom<std::collections::BTreeMap<String, serde_json::Value>> for SmsSection {
    type Error = String;

    fn try_from(
        mut table: std::collections::BTreeMap<String, serde_json::Value>,
    ) -> Result<Self, String> {
        let defaults = Self::default();
        let mut cap = |key: &str, default: u32| -> Result<u32, String> {
            match table.remove(key) {
                None => Ok(default),
                Some(v) => serde_json::from_value(v)
                    .map_err(|e| format!("sms.{key}: {e} (a whole number of texts per day)")),
            }
        };
        let max_per_number_per_day =
            cap("max_per_number_per_day", defaults.max_per_number_per_day)?;
        let max_per_account_per_day =
            cap("max_per_account_per_day", defaults.max_per_account_per_day)?;
        let max_per_day = cap("max_per_day", defaults.max_per_day)?;
        let transport =
            serde_json::from_value(serde_json::Value::Object(table.into_iter().collect()))
                .map_err(|e| format!("[sms]: {e}"))?;
        Ok(Self {
            max_per_number_per_day,
            max_per_account_per_day,
            max_per_day,
            transport,
        })
    }
}

impl Default for SmsSection {
    fn default() -> Self {
        let MfaPolicy {
            sms_max_per_number_per_day,
            sms_max_per_account_per_day,
            sms_max_per_day,
            ..
        } = MfaPolicy::default();
        Self {
            max_per_number_per_day: sms_max_per_number_per_day,
            max_per_account_per_day: sms_max_per_account_per_day,
            max_per_day: sms_max_per_day,
            transport: SmsTransport::default(),
        }
    }
}

impl Default for FileConfig {
    /// Each key's default is its part's: listing every field here (no
    /// `..`) makes a key added to core's `Config` fail to compile until the
    /// file has it too.
    fn default() -> Self {
        let Config {
            app_name,
            base_url,
            jwt_secret,
            jwt_previous_secrets,
            jwt_algorithm,
            jwt_private_keys: _,
            jwt_ttl_seconds,
            jwt_audience,
            jwt_iat_leeway_seconds,
            require_verification,
            registration_mode: _,
            uniform_registration,
            enable_password_reset,
            enable_account_deletion,
            enable_admin_router,
            verification_token_ttl_seconds,
            password_reset_token_ttl_seconds,
            email_change_token_ttl_seconds,
            rate_limit_disabled,
            login_lockout_threshold,
            login_lockout_window_seconds,
            enable_ui_router: _,
            ui_prefix,
            email_link_prefix,
            verify_url_template,
            password_reset_url_template,
            email_change_url_template,
            revert_email_change_url_template,
            extra_template_dirs,
            email: _,
            password,
            sessions,
            mfa:
                MfaPolicy {
                    sms_code_length,
                    sms_code_ttl_seconds,
                    sms_code_max_attempts,
                    mfa_pending_token_ttl_seconds,
                    enable_sms_2fa,
                    ..
                },
            oauth: _,
            audit,
            notices,
        } = Config::default();
        let HttpSettings {
            api_prefix,
            behind_proxy,
            pages:
                PageSettings {
                    brand_logo_url,
                    brand_tagline,
                    static_prefix,
                    theme_css_url,
                    extra_static_dirs,
                    template_dir,
                    brand_color,
                    template_overrides: _,
                },
            ..
        } = HttpSettings::default();
        let DatabaseSettings {
            url: database_url,
            mongodb_database,
        } = DatabaseSettings::default();
        Self {
            app_name,
            base_url,
            behind_proxy,
            database_url,
            mongodb_database,
            jwt_secret,
            jwt_previous_secrets,
            jwt_algorithm,
            jwt_keys_file: None,
            secrets_dir: None,
            jwt_ttl_seconds,
            jwt_audience,
            jwt_iat_leeway_seconds,
            require_verification,
            registration_mode: None,
            allow_registration: None,
            uniform_registration,
            enable_password_reset,
            enable_account_deletion,
            enable_admin_router,
            verification_token_ttl_seconds,
            password_reset_token_ttl_seconds,
            email_change_token_ttl_seconds,
            rate_limit_disabled,
            login_lockout_threshold,
            login_lockout_window_seconds,
            api_prefix,
            enable_ui_router: true,
            ui_prefix,
            brand_logo_url,
            brand_tagline,
            static_prefix,
            theme_css_url,
            extra_static_dirs,
            ui: UiSection {
                template_dir,
                brand_color,
            },
            email_link_prefix,
            verify_url_template,
            password_reset_url_template,
            email_change_url_template,
            revert_email_change_url_template,
            extra_template_dirs,
            email: EmailSection::default(),
            password,
            http: HttpSettings::default(),
            sessions,
            sms_code_length,
            sms_code_ttl_seconds,
            sms_code_max_attempts,
            mfa_pending_token_ttl_seconds,
            enable_sms_2fa,
            sms: SmsSection::default(),
            enable_oauth: false,
            oauth: OAuthSection::default(),
            audit,
            notices,
            log_format: LogFormat::default(),
            metrics: MetricsSection::default(),
            tracing: TracingSection::default(),
            rate_limits: RateLimitsSection::default(),
            regstack_route_limits: Default::default(),
        }
    }
}

impl std::fmt::Debug for FileConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileConfig")
            .field("app_name", &self.app_name)
            .field("base_url", &self.base_url)
            .field("database_url", &"[redacted]")
            .field("jwt_secret", &"[redacted]")
            .field("jwt_algorithm", &self.jwt_algorithm)
            .field("jwt_ttl_seconds", &self.jwt_ttl_seconds)
            .field("api_prefix", &self.api_prefix)
            .field("email", &self.email)
            .field("password", &self.password)
            .field("http", &self.http)
            .field("sessions", &self.sessions)
            .finish_non_exhaustive()
    }
}

impl FileConfig {
    /// The parts: core's policy, the database, the mail transport, the HTTP
    /// settings. Fails only on what no part could hold (an SMTP backend
    /// without a host); [`Settings::validate`] checks the values.
    pub fn split(self) -> Result<Settings, ConfigError> {
        let Self {
            app_name,
            base_url,
            behind_proxy,
            database_url,
            mongodb_database,
            jwt_secret,
            jwt_previous_secrets,
            jwt_algorithm,
            jwt_keys_file,
            secrets_dir,
            jwt_ttl_seconds,
            jwt_audience,
            jwt_iat_leeway_seconds,
            require_verification,
            registration_mode,
            allow_registration,
            uniform_registration,
            enable_password_reset,
            enable_account_deletion,
            enable_admin_router,
            verification_token_ttl_seconds,
            password_reset_token_ttl_seconds,
            email_change_token_ttl_seconds,
            rate_limit_disabled,
            login_lockout_threshold,
            login_lockout_window_seconds,
            api_prefix,
            enable_ui_router,
            ui_prefix,
            brand_logo_url,
            brand_tagline,
            static_prefix,
            theme_css_url,
            extra_static_dirs,
            ui,
            email_link_prefix,
            verify_url_template,
            password_reset_url_template,
            email_change_url_template,
            revert_email_change_url_template,
            extra_template_dirs,
            email,
            password,
            http,
            sessions,
            sms_code_length,
            sms_code_ttl_seconds,
            sms_code_max_attempts,
            mfa_pending_token_ttl_seconds,
            enable_sms_2fa,
            sms,
            enable_oauth,
            oauth,
            audit,
            notices,
            log_format: _,
            metrics,
            tracing,
            rate_limits,
            regstack_route_limits,
        } = self;
        let registration_mode = registration_mode_of(registration_mode, allow_registration)?;
        let jwt_private_keys = if jwt_algorithm.is_asymmetric() {
            let path = crate::keys::keys_path(
                jwt_keys_file.as_deref(),
                secrets_dir.as_deref().unwrap_or(Path::new(".")),
            );
            crate::keys::read_keys(&path, jwt_algorithm, true)
                .map_err(|reason| ConfigError::new("jwt_keys_file", reason))?
        } else if jwt_keys_file.is_some() {
            return Err(ConfigError::new(
                "jwt_keys_file",
                format!(
                    "is set but jwt_algorithm is {}, which signs with jwt_secret: set jwt_algorithm = \"EdDSA\" or \"RS256\" to use it",
                    jwt_algorithm.as_str()
                ),
            ));
        } else {
            Vec::new()
        };
        metrics.listen_addr()?;
        tracing.traces_url()?;
        let (route_limits, rate_limit_store) = rate_limits.split(regstack_route_limits)?;
        let (email, mail) = email.split()?;
        let (oauth_policy, providers) = oauth.split()?;
        Ok(Settings {
            config: Config {
                app_name,
                base_url,
                jwt_secret,
                jwt_previous_secrets,
                jwt_algorithm,
                jwt_private_keys,
                jwt_ttl_seconds,
                jwt_audience,
                jwt_iat_leeway_seconds,
                require_verification,
                registration_mode,
                uniform_registration,
                enable_password_reset,
                enable_account_deletion,
                enable_admin_router,
                verification_token_ttl_seconds,
                password_reset_token_ttl_seconds,
                email_change_token_ttl_seconds,
                rate_limit_disabled,
                login_lockout_threshold,
                login_lockout_window_seconds,
                enable_ui_router,
                ui_prefix,
                email_link_prefix,
                verify_url_template,
                password_reset_url_template,
                email_change_url_template,
                revert_email_change_url_template,
                extra_template_dirs,
                email,
                password,
                sessions,
                mfa: MfaPolicy {
                    sms_code_length,
                    sms_code_ttl_seconds,
                    sms_code_max_attempts,
                    mfa_pending_token_ttl_seconds,
                    enable_sms_2fa,
                    sms_max_per_number_per_day: sms.max_per_number_per_day,
                    sms_max_per_account_per_day: sms.max_per_account_per_day,
                    sms_max_per_day: sms.max_per_day,
                },
                oauth: oauth_policy,
                audit,
                notices,
            },
            database: DatabaseSettings {
                url: database_url,
                mongodb_database,
            },
            mail,
            // Two top-level keys (regstack's places) that only the HTTP
            // layer reads.
            http: HttpSettings {
                api_prefix,
                behind_proxy,
                route_limits,
                pages: PageSettings {
                    brand_logo_url,
                    brand_tagline,
                    static_prefix,
                    theme_css_url,
                    extra_static_dirs,
                    template_dir: ui.template_dir,
                    brand_color: ui.brand_color,
                    // Read by the builder, which does the I/O.
                    template_overrides: Default::default(),
                },
                ..http
            },
            rate_limit_store,
            sms: sms.transport,
            oauth: OAuthSettings {
                enabled: enable_oauth,
                providers,
            },
        })
    }
}

/// A configuration ready to run, and how it came about.
#[derive(Debug)]
pub struct Loaded {
    /// The keys as read (not yet split or validated: see
    /// [`FileConfig::split`], [`Settings::validate`]).
    pub config: FileConfig,
    /// No file and no `REGSTACK_*` variable: the zero-config development
    /// mode (generated secret, mail bodies logged).
    pub development_mode: bool,
    /// The file read, if any.
    pub file: Option<PathBuf>,
    /// Keys accepted but not supported yet.
    pub warnings: Vec<String>,
}

/// Start-up stopped because of the configuration.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A value or key is invalid; the message names it.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// The file could not be read or parsed.
    #[error("configuration file {path}: {reason}")]
    File {
        /// Path.
        path: PathBuf,
        /// Parser or I/O message.
        reason: String,
    },
    /// The development secret could not be used or written (see
    /// [`crate::development`]).
    #[error("development secret {path}: {reason}")]
    Secret {
        /// Path.
        path: PathBuf,
        /// What is wrong with the file, and what to do.
        reason: String,
    },
}

fn regstack_env_vars(env: &[(String, String)]) -> bool {
    env.iter()
        .any(|(k, _)| k.starts_with("REGSTACK_") && k != "REGSTACK_CONFIG")
}

/// Loads configuration from the process environment and the file system.
pub fn load(explicit: Option<&Path>) -> Result<Loaded, LoadError> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let file = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("REGSTACK_CONFIG").map(PathBuf::from))
        .or_else(|| Some(PathBuf::from("regstack.toml")).filter(|p| p.exists()));
    if let Some(path) = &file {
        if !path.exists() {
            return Err(LoadError::File {
                path: path.clone(),
                reason: "no such file".into(),
            });
        }
    }
    let development_mode = file.is_none() && !regstack_env_vars(&env);
    let mut figment = Figment::new();
    // The secrets file beside the TOML sits between the file and the
    // process environment (as in regstack): a variable set by the operator
    // still wins.
    let mut overlay = Vec::new();
    if let Some(path) = &file {
        figment = figment.merge(Toml::file_exact(path));
        overlay = read_secrets_env(&secrets_env_path(path))?;
    }
    overlay.extend(env.iter().cloned());
    figment = figment.merge(figment::providers::Serialized::defaults(env_dict(&overlay)));
    let dict: Dict = figment.extract().map_err(|e| match &file {
        Some(path) => LoadError::File {
            path: path.clone(),
            reason: e.to_string(),
        },
        None => LoadError::Invalid(ConfigError::new("environment", e.to_string())),
    })?;
    let (mut config, warnings) = from_dict(dict)?;
    config.secrets_dir = file.as_ref().map(|f| match f.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    });
    Ok(Loaded {
        config,
        development_mode,
        file,
        warnings,
    })
}

/// The name of the secrets file `regstack init` writes beside
/// `regstack.toml` (regstack's name): `REGSTACK_*` lines, mode 0600, kept
/// out of version control while the TOML may be committed.
pub const SECRETS_FILE: &str = "regstack.secrets.env";

/// Where the secrets file of the configuration file `config` is: beside it.
pub fn secrets_env_path(config: &Path) -> PathBuf {
    config.with_file_name(SECRETS_FILE)
}

/// The `REGSTACK_*` assignments of the secrets file at `path` (none if
/// there is no file). Like the development secret, it must be a regular
/// file that neither group nor others can read or write: it holds the
/// signing key. Lines are `KEY=value` (an `export ` prefix and quotes
/// around the value are allowed); blank lines and `#` comments are
/// skipped, other keys ignored.
pub fn read_secrets_env(path: &Path) -> Result<Vec<(String, String)>, LoadError> {
    let refuse = |reason: String| LoadError::Secret {
        path: path.to_path_buf(),
        reason,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(refuse(e.to_string())),
    };
    crate::development::check_file(&meta).map_err(refuse)?;
    let text = std::fs::read_to_string(path).map_err(|e| refuse(e.to_string()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(refuse(format!("line {} is not KEY=value", n + 1)));
        };
        let key = key.trim();
        let value = value.trim();
        let value = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        if key.starts_with("REGSTACK_") && key != "REGSTACK_CONFIG" {
            out.push((key.to_owned(), value.to_owned()));
        }
    }
    Ok(out)
}

/// `REGSTACK_*` variables as a nested dictionary of *strings*
/// (`REGSTACK_EMAIL__SMTP_HOST` → `email.smtp_host`). Values stay strings
/// so a secret like `0123…` keeps its leading zero; numbers and booleans
/// are converted when the typed configuration is extracted.
fn env_dict(env: &[(String, String)]) -> Dict {
    let mut root = Dict::new();
    for (key, value) in env {
        let Some(rest) = key.strip_prefix("REGSTACK_") else {
            continue;
        };
        if rest == "CONFIG" || rest.is_empty() {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
        let mut dict = &mut root;
        for (i, part) in path.iter().enumerate() {
            if i + 1 == path.len() {
                dict.insert(part.clone(), Value::from(value.clone()));
            } else {
                let entry = dict
                    .entry(part.clone())
                    .or_insert_with(|| Value::from(Dict::new()));
                if !matches!(entry, Value::Dict(..)) {
                    *entry = Value::from(Dict::new());
                }
                let Value::Dict(_, inner) = entry else { break };
                dict = inner;
            }
        }
    }
    root
}

/// Turns raw key/values into a [`FileConfig`], applying the unknown-key
/// rules.
pub fn from_dict(mut dict: Dict) -> Result<(FileConfig, Vec<String>), ConfigError> {
    let mut warnings = Vec::new();
    if let Some(v) = dict.remove("transport") {
        // regstack allows only "bearer"; a host asking for cookies must not
        // believe it got them (security review I-7).
        if v.as_str() != Some("bearer") {
            return Err(ConfigError::new(
                "transport",
                "only \"bearer\" is supported",
            ));
        }
    }
    refuse_unsupported_protections(&dict)?;
    let mut regstack_route_limits = std::collections::BTreeMap::new();
    for key in regstack_http_axum::ratelimit::REGSTACK_KEYS {
        match dict.remove(*key) {
            None => {}
            Some(Value::String(_, limit)) => {
                regstack_route_limits.insert((*key).to_owned(), limit);
            }
            Some(_) => {
                return Err(ConfigError::new(
                    *key,
                    "must be a limit string such as \"5/minute\" (\"\" for none)",
                ))
            }
        }
    }
    let ignored = REGSTACK_ONLY_KEYS
        .iter()
        .chain(UNSUPPORTED_SECURITY_SWITCHES.iter().map(|(key, _)| key));
    for key in ignored {
        if dict.remove(*key).is_some() {
            warnings.push(format!("`{key}` is a regstack setting this version accepts but does not support yet; it is ignored"));
        }
    }
    let mut config: FileConfig = Figment::from(figment::providers::Serialized::defaults(dict))
        .extract_lossy()
        .map_err(|e| {
            let key = e.path.join(".");
            let key = if key.is_empty() {
                "config".to_owned()
            } else {
                key
            };
            ConfigError::new(key, e.kind.to_string())
        })?;
    config.regstack_route_limits = regstack_route_limits;
    Ok((config, warnings))
}

/// Stops start-up on a regstack key that promises a protection this build
/// does not give yet ([`UNSUPPORTED_SECURITY_SWITCHES`]); the same keys set
/// to their "off" value pass, to be warned about with the rest.
fn refuse_unsupported_protections(dict: &Dict) -> Result<(), ConfigError> {
    for (key, why) in UNSUPPORTED_SECURITY_SWITCHES {
        if let Some(value) = dict.get(*key) {
            // Anything but a clear "off" counts as on: a value we cannot
            // read must not pass as a protection turned off.
            if value.to_bool_lossy() != Some(false) {
                return Err(ConfigError::new(*key, *why));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use regstack_core::config::BreachCheck;

    fn dict(toml_src: &str) -> Dict {
        Figment::from(Toml::string(toml_src)).extract().unwrap()
    }

    #[test]
    fn regstack_keys_we_lack_warn_and_unknown_keys_fail_naming_the_key() {
        let (c, w) = from_dict(dict(
            "app_name = \"Acme\"\nuser_collection = \"people\"\n[email]\nses_region = \"us-east-1\"\n",
        ))
        .unwrap();
        assert_eq!(c.app_name, "Acme");
        // `user_collection` warns; `email.ses_region` is a key we implement.
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(c.email.ses_region, "us-east-1");
        let err = from_dict(dict("app_nam = \"Acme\"")).unwrap_err();
        assert!(err.reason.contains("app_nam"), "{err}");
        let err = from_dict(dict("[email]\nsmtp_hots = \"x\"")).unwrap_err();
        assert!(err.to_string().contains("smtp_hots"), "{err}");
    }

    fn env(pairs: &[(&str, &str)]) -> Dict {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        env_dict(&pairs)
    }

    #[track_caller]
    fn warned(d: Dict, key: &str) {
        let (_, warnings) = from_dict(d).unwrap();
        assert!(
            warnings.iter().any(|w| w.contains(&format!("`{key}`"))),
            "no warning naming {key}: {warnings:?}"
        );
    }

    #[test]
    fn enable_sms_2fa_from_the_environment_turns_sms_on() {
        let (c, _) = from_dict(env(&[("REGSTACK_ENABLE_SMS_2FA", "true")])).unwrap();
        assert!(c.split().unwrap().config.mfa.enable_sms_2fa);
    }

    /// regstack's per-route keys are enforced now: from the file or the
    /// environment, each one lands on its route's limit (no warning), and a
    /// bad string stops start-up naming the key.
    #[test]
    fn regstack_route_limit_keys_set_their_routes_limit() {
        use regstack_http_axum::ratelimit::{Rate, REGSTACK_KEYS, ROUTES};
        for key in REGSTACK_KEYS {
            let route = ROUTES
                .iter()
                .find(|r| r.regstack_key == Some(*key))
                .unwrap()
                .path;
            let var = format!("REGSTACK_{}", key.to_uppercase());
            for d in [
                dict(&format!("{key} = \"3/minute;7/hour\"")),
                env(&[(var.as_str(), "3/minute;7/hour")]),
            ] {
                let (c, warnings) = from_dict(d).unwrap();
                assert!(warnings.is_empty(), "{key}: {warnings:?}");
                let s = c.split().unwrap();
                s.http.validate().unwrap();
                let compiled = s.http.route_limits.compile().unwrap();
                let rates = &compiled.iter().find(|(r, _)| r.path == route).unwrap().1;
                assert_eq!(
                    rates,
                    &vec![
                        Rate {
                            count: 3,
                            window_seconds: 60
                        },
                        Rate {
                            count: 7,
                            window_seconds: 3600
                        }
                    ],
                    "{key}"
                );
            }
            let (c, _) = from_dict(dict(&format!("{key} = \"3/fortnight\""))).unwrap();
            assert_eq!(c.split().unwrap().http.validate().unwrap_err().key, *key);
            assert_eq!(
                from_dict(dict(&format!("{key} = 5"))).unwrap_err().key,
                *key
            );
        }
        // An empty one unlimits its route, as in regstack.
        let (c, _) = from_dict(dict("login_rate_limit = \"\"")).unwrap();
        let compiled = c.split().unwrap().http.route_limits.compile().unwrap();
        assert!(!compiled.iter().any(|(r, _)| r.path == "/login"));
        assert!(compiled.iter().any(|(r, _)| r.path == "/register"));
    }

    #[test]
    fn rate_limits_table_sets_groups_and_the_counter_store() {
        let s = split(
            "[rate_limits]\nlogin = \"2/second\"\nsms = \"\"\nbackend = \"redis\"\n\
             redis_url = \"redis://127.0.0.1:6379\"\n",
        );
        assert_eq!(s.http.route_limits.login, "2/second");
        assert_eq!(s.http.route_limits.sms, "");
        assert_eq!(s.http.route_limits.register, "5/minute", "the default");
        assert!(matches!(s.rate_limit_store, RateLimitStore::Redis { .. }));
        let (c, _) = from_dict(env(&[
            ("REGSTACK_RATE_LIMITS__BACKEND", "redis"),
            ("REGSTACK_RATE_LIMITS__REDIS_URL", "redis://r:6379/2"),
            ("REGSTACK_RATE_LIMITS__MFA", "4/minute"),
        ]))
        .unwrap();
        let s = c.split().unwrap();
        assert_eq!(s.http.route_limits.mfa, "4/minute");
        assert!(matches!(s.rate_limit_store, RateLimitStore::Redis { .. }));
        for (toml_src, key) in [
            (
                "[rate_limits]\nbackend = \"redis\"",
                "rate_limits.redis_url",
            ),
            (
                "[rate_limits]\nredis_url = \"redis://x\"",
                "rate_limits.redis_url",
            ),
        ] {
            let (c, _) = from_dict(dict(toml_src)).unwrap();
            assert_eq!(c.split().unwrap_err().key, key, "{toml_src}");
        }
        let (c, _) = from_dict(dict("[rate_limits]\nverify = \"lots\"")).unwrap();
        assert_eq!(
            c.split().unwrap().http.validate().unwrap_err().key,
            "rate_limits.verify"
        );
        let err = from_dict(dict("[rate_limits]\nlogni = \"5/minute\"")).unwrap_err();
        assert!(err.to_string().contains("logni"), "{err}");
        let err = from_dict(dict("[rate_limits]\nbackend = \"memcached\"")).unwrap_err();
        assert!(err.to_string().contains("rate_limits.backend"), "{err}");
    }

    #[test]
    fn regstack_keys_that_promise_no_protection_only_warn() {
        for key in REGSTACK_ONLY_KEYS {
            let value = match *key {
                "sms" => "{ backend = \"twilio\" }",
                k if k.starts_with("sms_") || k.ends_with("_seconds") => "6",
                _ => "\"x\"",
            };
            warned(dict(&format!("{key} = {value}")), key);
            let var = format!("REGSTACK_{}", key.to_uppercase());
            warned(env(&[(var.as_str(), "x")]), key);
        }
    }

    #[test]
    fn oauth_providers_come_from_tables_from_the_environment_and_from_regstacks_google_keys() {
        let s = split(
            r#"
enable_oauth = true
[oauth]
auto_link_verified_emails = true
enforce_mfa_on_oauth_signin = false
state_ttl_seconds = 600
completion_ttl_seconds = 20
google_client_id = "g-id"
google_client_secret = "g-secret"
google_redirect_uri = "https://acme.example/cb/google"
[oauth.providers.corp]
kind = "oidc"
issuer = "https://sso.corp.example"
client_id = "corp-id"
client_secret = "corp-secret"
scopes = ["openid", "email"]
[oauth.providers.ms]
kind = "microsoft"
tenant = "organizations"
client_id = "ms-id"
client_secret = "ms-secret"
"#,
        );
        assert!(s.oauth.enabled);
        let p = &s.config.oauth;
        assert!(p.auto_link_verified_emails && !p.enforce_mfa_on_oauth_signin);
        assert_eq!((p.state_ttl_seconds, p.completion_ttl_seconds), (600, 20));
        let names: Vec<&str> = s.oauth.providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["corp", "ms", "google"]);
        let google = &s.oauth.providers[2];
        assert_eq!(google.kind, ProviderKind::Google);
        assert_eq!(
            google.redirect_uri.as_deref(),
            Some("https://acme.example/cb/google")
        );
        assert_eq!(
            s.oauth.providers[1].tenant.as_deref(),
            Some("organizations")
        );
        assert!(!format!("{s:?}").contains("corp-secret"));
        s.oauth.validate().unwrap();

        let (c, _) = from_dict(env(&[
            ("REGSTACK_ENABLE_OAUTH", "true"),
            ("REGSTACK_OAUTH__PROVIDERS__CORP__KIND", "oidc"),
            (
                "REGSTACK_OAUTH__PROVIDERS__CORP__ISSUER",
                "https://sso.corp.example",
            ),
            ("REGSTACK_OAUTH__PROVIDERS__CORP__CLIENT_ID", "corp-id"),
            (
                "REGSTACK_OAUTH__PROVIDERS__CORP__CLIENT_SECRET",
                "corp-secret",
            ),
        ]))
        .unwrap();
        let s = c.split().unwrap();
        assert_eq!(s.oauth.providers[0].name, "corp");
        assert_eq!(s.oauth.providers[0].client_id, "corp-id");

        // Half of regstack's Google keys, a provider defined twice, an
        // unknown key in a provider's table: each names its key.
        let err = from_dict(dict("[oauth]\ngoogle_client_id = \"x\""))
            .unwrap()
            .0
            .split()
            .unwrap_err();
        assert_eq!(err.key, "oauth.google_client_secret");
        let err = from_dict(dict(
            "[oauth]\ngoogle_client_id = \"x\"\ngoogle_client_secret = \"y\"\n[oauth.providers.google]\nkind = \"google\"\nclient_id = \"a\"\nclient_secret = \"b\"\n",
        ))
        .unwrap()
        .0
        .split()
        .unwrap_err();
        assert_eq!(err.key, "oauth.google_client_id");
        let err = from_dict(dict(
            "[oauth.providers.corp]\nkind = \"oidc\"\nclient_id = \"a\"\nclient_secret = \"b\"\nissuer = \"https://x\"\ntennant = \"t\"\n",
        ))
        .unwrap_err();
        assert!(err.to_string().contains("tennant"), "{err}");
    }

    #[test]
    fn a_wrong_type_names_the_key() {
        let err = from_dict(dict("jwt_ttl_seconds = \"soon\"")).unwrap_err();
        assert_eq!(err.key, "jwt_ttl_seconds");
    }

    #[test]
    fn environment_values_keep_their_text_and_convert_where_typed() {
        let env = vec![
            ("REGSTACK_JWT_SECRET".to_owned(), "0123456789".repeat(4)),
            ("REGSTACK_JWT_TTL_SECONDS".to_owned(), "600".to_owned()),
            ("REGSTACK_EMAIL__SMTP_PORT".to_owned(), "2525".to_owned()),
            ("REGSTACK_EMAIL__SMTP_PASSWORD".to_owned(), "007".to_owned()),
            (
                "REGSTACK_REQUIRE_VERIFICATION".to_owned(),
                "false".to_owned(),
            ),
            ("REGSTACK_CONFIG".to_owned(), "ignored.toml".to_owned()),
            ("OTHER".to_owned(), "x".to_owned()),
        ];
        let (c, _) = from_dict(env_dict(&env)).unwrap();
        use secrecy::ExposeSecret;
        assert_eq!(c.jwt_secret.expose_secret(), "0123456789".repeat(4));
        assert_eq!(c.jwt_ttl_seconds, 600);
        assert_eq!(c.email.smtp_port, 2525);
        assert_eq!(
            c.email
                .smtp_password
                .as_ref()
                .map(|p| p.expose_secret().to_owned())
                .as_deref(),
            Some("007")
        );
        assert!(!c.require_verification);
        let err = from_dict(env_dict(&[("REGSTACK_NOPE".to_owned(), "1".to_owned())])).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn cookie_transport_is_refused() {
        assert_eq!(
            from_dict(dict("transport = \"cookie\"")).unwrap_err().key,
            "transport"
        );
        assert!(from_dict(dict("transport = \"bearer\"")).is_ok());
    }

    fn split(toml_src: &str) -> Settings {
        from_dict(dict(toml_src)).unwrap().0.split().unwrap()
    }

    #[test]
    fn registration_mode_and_regstacks_allow_registration_agree_or_fail() {
        let mode = |src: &str| {
            from_dict(dict(src))
                .unwrap()
                .0
                .split()
                .map(|s| s.config.registration_mode)
        };
        assert_eq!(mode("").unwrap(), RegistrationMode::Open);
        assert_eq!(
            mode("registration_mode = \"invite\"").unwrap(),
            RegistrationMode::Invite
        );
        assert_eq!(
            mode("registration_mode = \"closed\"").unwrap(),
            RegistrationMode::Closed
        );
        assert_eq!(
            mode("allow_registration = false").unwrap(),
            RegistrationMode::Closed
        );
        assert_eq!(
            mode("allow_registration = true").unwrap(),
            RegistrationMode::Open
        );
        assert_eq!(
            mode("allow_registration = true\nregistration_mode = \"invite\"").unwrap(),
            RegistrationMode::Invite
        );
        assert_eq!(
            mode("allow_registration = false\nregistration_mode = \"closed\"").unwrap(),
            RegistrationMode::Closed
        );
        for contradiction in [
            "allow_registration = false\nregistration_mode = \"open\"",
            "allow_registration = false\nregistration_mode = \"invite\"",
            "allow_registration = true\nregistration_mode = \"closed\"",
        ] {
            let err = mode(contradiction).unwrap_err();
            assert_eq!(err.key, "registration_mode", "{contradiction}");
            assert!(err.to_string().contains("allow_registration"), "{err}");
        }
        assert!(from_dict(dict("registration_mode = \"invitation\"")).is_err());
        let env = [("REGSTACK_REGISTRATION_MODE".to_owned(), "invite".to_owned())];
        let (c, _) = from_dict(env_dict(&env)).unwrap();
        assert_eq!(
            c.split().unwrap().config.registration_mode,
            RegistrationMode::Invite
        );
    }

    #[test]
    fn the_file_defaults_are_each_parts_defaults() {
        let s = FileConfig::default().split().unwrap();
        let core = Config::default();
        assert_eq!(s.config.app_name, core.app_name);
        assert_eq!(s.config.jwt_ttl_seconds, 7200);
        assert_eq!(s.config.jwt_iat_leeway_seconds, 5);
        assert_eq!(s.config.login_lockout_threshold, 5);
        assert_eq!(s.config.login_lockout_window_seconds, 900);
        assert_eq!(s.config.email.max_per_address_per_hour, 5);
        assert_eq!(s.config.email.from_address, "noreply@example.com");
        assert_eq!(s.config.password.argon2_memory_kib, 65536);
        assert_eq!(s.config.sessions.reuse_grace_seconds, 5);
        use secrecy::ExposeSecret;
        assert_eq!(s.database.url.expose_secret(), "sqlite:./regstack.db");
        assert_eq!(s.database.mongodb_database, "regstack");
        assert!(matches!(
            s.mail,
            MailTransport::Console { log_bodies: false }
        ));
        assert_eq!(s.http, HttpSettings::default());
        assert_eq!(s.http.body_limit_bytes, 65536);
        assert_eq!(s.http.request_timeout_seconds, 30);
        assert!(!s.http.hsts);
        assert_eq!(s.http.hsts_max_age_seconds, 31_536_000);
        // An empty table is the same as no table.
        let empty = from_dict(dict("[email]\n[http]\n[password]\n[sessions]\n"))
            .unwrap()
            .0;
        assert_eq!(format!("{empty:?}"), format!("{:?}", FileConfig::default()));
    }

    #[test]
    fn every_key_lands_in_the_part_that_uses_it() {
        let s = split(
            r#"
app_name = "Acme"
base_url = "https://acme.example"
behind_proxy = true
database_url = "postgres://u:pw@db/acme"
mongodb_database = "acme"
jwt_secret = "0123456789abcdef0123456789abcdef"
jwt_algorithm = "HS512"
jwt_ttl_seconds = 600
jwt_audience = "acme-api"
jwt_iat_leeway_seconds = 2
require_verification = false
allow_registration = false
enable_password_reset = false
enable_account_deletion = false
verification_token_ttl_seconds = 120
password_reset_token_ttl_seconds = 180
email_change_token_ttl_seconds = 240
rate_limit_disabled = true
login_lockout_threshold = 7
login_lockout_window_seconds = 60
api_prefix = "/auth"
ui_prefix = "/me"
email_link_prefix = "/links"
verify_url_template = "{base_url}/v/{token}"
password_reset_url_template = "{base_url}/r/{token}"
email_change_url_template = "{base_url}/c/{token}"
revert_email_change_url_template = "{base_url}/undo/{token}"
extra_template_dirs = ["/etc/acme/templates"]

[email]
backend = "smtp"
from_address = "accounts@acme.example"
from_name = "Acme"
smtp_host = "smtp.acme.example"
smtp_port = 465
smtp_starttls = false
smtp_security = "tls"
smtp_username = "acme"
smtp_password = "smtp-pw"
smtp_timeout_seconds = 7
log_bodies = true
max_per_address_per_hour = 9

[password]
argon2_memory_kib = 19456
argon2_iterations = 2
argon2_parallelism = 1
max_concurrent_hashes = 3

[http]
body_limit_bytes = 2048
cors_allowed_origins = ["https://spa.acme.example"]
request_timeout_seconds = 12
hsts = true
hsts_max_age_seconds = 600

[sessions]
refresh_idle_ttl_seconds = 3600
refresh_absolute_ttl_seconds = 7200
reuse_grace_seconds = 2
refresh_cookie = true

[notices]
new_device = false
password_changed = false
email_changed = false
mfa_disabled = false
refresh_reuse = false
email_revert_ttl_seconds = 7200
"#,
        );
        use secrecy::ExposeSecret;
        let c = &s.config;
        assert_eq!(c.app_name, "Acme");
        assert_eq!(c.base_url, "https://acme.example");
        assert!(s.http.behind_proxy);
        assert_eq!(
            c.jwt_secret.expose_secret(),
            "0123456789abcdef0123456789abcdef"
        );
        assert_eq!(c.jwt_algorithm, JwtAlgorithm::HS512);
        assert_eq!(c.jwt_ttl_seconds, 600);
        assert_eq!(c.jwt_audience.as_deref(), Some("acme-api"));
        assert_eq!(c.jwt_iat_leeway_seconds, 2);
        assert!(!c.require_verification);
        assert_eq!(c.registration_mode, RegistrationMode::Closed);
        assert!(!c.enable_password_reset);
        assert!(!c.enable_account_deletion);
        assert_eq!(c.verification_token_ttl_seconds, 120);
        assert_eq!(c.password_reset_token_ttl_seconds, 180);
        assert_eq!(c.email_change_token_ttl_seconds, 240);
        assert!(c.rate_limit_disabled);
        assert_eq!(c.login_lockout_threshold, 7);
        assert_eq!(c.login_lockout_window_seconds, 60);
        assert_eq!(s.http.api_prefix, "/auth");
        assert_eq!(c.ui_prefix, "/me");
        assert_eq!(c.email_link_prefix.as_deref(), Some("/links"));
        assert_eq!(
            c.verify_url_template.as_deref(),
            Some("{base_url}/v/{token}")
        );
        assert_eq!(
            c.password_reset_url_template.as_deref(),
            Some("{base_url}/r/{token}")
        );
        assert_eq!(
            c.email_change_url_template.as_deref(),
            Some("{base_url}/c/{token}")
        );
        assert_eq!(
            c.extra_template_dirs,
            vec!["/etc/acme/templates".to_owned()]
        );
        assert_eq!(c.email.from_address, "accounts@acme.example");
        assert_eq!(c.email.from_name.as_deref(), Some("Acme"));
        assert_eq!(c.email.max_per_address_per_hour, 9);
        assert_eq!(c.password.argon2_memory_kib, 19456);
        assert_eq!(c.password.argon2_iterations, 2);
        assert_eq!(c.password.argon2_parallelism, 1);
        assert_eq!(c.password.max_concurrent_hashes, Some(3));
        assert_eq!(c.sessions.refresh_idle_ttl_seconds, 3600);
        assert_eq!(c.sessions.refresh_absolute_ttl_seconds, 7200);
        assert_eq!(c.sessions.reuse_grace_seconds, 2);
        assert!(c.sessions.refresh_cookie);
        assert_eq!(
            c.revert_email_change_url_template.as_deref(),
            Some("{base_url}/undo/{token}")
        );
        let n = c.notices;
        assert!(
            !(n.new_device
                || n.password_changed
                || n.email_changed
                || n.mfa_disabled
                || n.refresh_reuse)
        );
        assert_eq!(n.email_revert_ttl_seconds, 7200);

        assert_eq!(s.database.url.expose_secret(), "postgres://u:pw@db/acme");
        assert_eq!(s.database.mongodb_database, "acme");

        let MailTransport::Smtp(smtp) = &s.mail else {
            panic!("{:?}", s.mail)
        };
        assert_eq!(smtp.host, "smtp.acme.example");
        assert_eq!(smtp.port, 465);
        assert_eq!(smtp.security, SmtpSecurity::Tls);
        assert_eq!(smtp.username.as_deref(), Some("acme"));
        assert_eq!(
            smtp.password.as_ref().map(|p| p.expose_secret().to_owned()),
            Some("smtp-pw".to_owned())
        );
        assert_eq!(smtp.timeout, Duration::from_secs(7));
        assert!(!smtp.accept_invalid_certs);

        assert_eq!(s.http.body_limit_bytes, 2048);
        assert_eq!(
            s.http.cors_allowed_origins,
            vec!["https://spa.acme.example".to_owned()]
        );
        assert_eq!(s.http.request_timeout_seconds, 12);
        assert!(s.http.hsts);
        assert_eq!(s.http.hsts_max_age_seconds, 600);
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn notices_are_on_by_default_and_their_link_lifetime_is_bounded() {
        let s = split("");
        let n = s.config.notices;
        assert!(
            n.new_device
                && n.password_changed
                && n.email_changed
                && n.mfa_disabled
                && n.refresh_reuse
        );
        assert_eq!(n.email_revert_ttl_seconds, 604_800);
        assert!(from_dict(dict(
            "[notices]
new_devices = true
"
        ))
        .is_err());
        let mut s = split(
            "[notices]
email_revert_ttl_seconds = 60
",
        );
        s.config.jwt_secret = "0123456789abcdef0123456789abcdef".into();
        let err = s.validate().unwrap_err();
        assert!(
            format!("{err:?}").contains("notices.email_revert_ttl_seconds"),
            "{err:?}"
        );
    }

    #[test]
    fn the_console_logs_bodies_only_when_asked() {
        let on = split("[email]\nlog_bodies = true\n");
        assert!(matches!(
            on.mail,
            MailTransport::Console { log_bodies: true }
        ));
        let unset = split("[email]\nfrom_address = \"a@b.example\"\n");
        assert!(matches!(
            unset.mail,
            MailTransport::Console { log_bodies: false }
        ));
    }

    #[test]
    fn an_smtp_backend_without_a_host_names_email_smtp_host() {
        let err = from_dict(dict("[email]\nbackend = \"smtp\"\n"))
            .unwrap()
            .0
            .split()
            .unwrap_err();
        assert_eq!(err.key, "email.smtp_host");
    }

    #[test]
    fn regstacks_ses_keys_become_the_ses_transport() {
        use regstack_adapters_notify::AwsCredentials;
        use secrecy::ExposeSecret;
        let s = split(
            "[email]\nbackend = \"ses\"\nses_region = \"us-east-1\"\n\
             ses_access_key_id = \"AKIDEXAMPLE\"\nses_secret_access_key = \"ses-secret\"\n",
        );
        let MailTransport::Ses(ses) = &s.mail else {
            panic!("{:?}", s.mail)
        };
        assert_eq!(ses.region, "us-east-1");
        let AwsCredentials::Static {
            access_key_id,
            secret_access_key,
            session_token: None,
        } = &ses.credentials
        else {
            panic!("{:?}", ses.credentials)
        };
        assert_eq!(access_key_id.expose_secret(), "AKIDEXAMPLE");
        assert_eq!(secret_access_key.expose_secret(), "ses-secret");
        assert!(!format!("{s:?}").contains("ses-secret"));

        // regstack's defaults: eu-west-1, the default credential chain.
        let s = split("[email]\nbackend = \"ses\"\n");
        let MailTransport::Ses(ses) = &s.mail else {
            panic!("{:?}", s.mail)
        };
        assert_eq!(ses.region, "eu-west-1");
        assert!(matches!(ses.credentials, AwsCredentials::Default));
        let s = split("[email]\nbackend = \"ses\"\nses_profile = \"mail\"\n");
        let MailTransport::Ses(ses) = &s.mail else {
            panic!("{:?}", s.mail)
        };
        assert!(matches!(&ses.credentials, AwsCredentials::Profile(p) if p == "mail"));
    }

    #[test]
    fn contradictory_ses_keys_name_the_key_as_regstack_does() {
        let split_err = |src: &str| from_dict(dict(src)).unwrap().0.split().unwrap_err();
        let err = split_err("[email]\nbackend = \"ses\"\nses_access_key_id = \"AKIDEXAMPLE\"\n");
        assert_eq!(err.key, "email.ses_access_key_id");
        let err = split_err(
            "[email]\nbackend = \"ses\"\nses_profile = \"p\"\n\
             ses_access_key_id = \"AKIDEXAMPLE\"\nses_secret_access_key = \"s3cret\"\n",
        );
        assert_eq!(err.key, "email.ses_profile");
        assert!(!err.to_string().contains("s3cret"), "{err}");
        // regstack checks the pair whatever the backend; so do we.
        let err = split_err("[email]\nses_secret_access_key = \"s3cret\"\n");
        assert_eq!(err.key, "email.ses_access_key_id");
        assert!(matches!(
            split("[email]\nses_region = \"us-east-1\"\n").mail,
            MailTransport::Console { .. }
        ));
    }

    #[test]
    fn regstack_smtp_switch_maps_to_a_security_mode() {
        let mut e = EmailSection::default();
        assert_eq!(e.effective_smtp_security(), SmtpSecurity::StartTls);
        e.smtp_starttls = false;
        assert_eq!(e.effective_smtp_security(), SmtpSecurity::Plain);
        e.smtp_security = Some(SmtpSecurityKey::Tls);
        assert_eq!(e.effective_smtp_security(), SmtpSecurity::Tls);
        // A zero timeout still leaves a send some time, as before.
        e.backend = EmailBackend::Smtp;
        e.smtp_host = Some("smtp.example.com".into());
        e.smtp_timeout_seconds = 0;
        let (_, MailTransport::Smtp(smtp)) = e.split().unwrap() else {
            panic!("smtp expected")
        };
        assert_eq!(smtp.timeout, Duration::from_secs(1));
        assert_eq!(smtp.port, 587);
    }

    #[test]
    fn regstacks_second_factor_keys_reach_the_policy_without_a_warning() {
        let (c, warnings) = from_dict(dict(concat!(
            "sms_code_length = 8\n",
            "sms_code_ttl_seconds = 120\n",
            "sms_code_max_attempts = 3\n",
            "mfa_pending_token_ttl_seconds = 900\n",
            "enable_sms_2fa = true\n",
            "[sms]\n",
            "backend = \"null\"\n",
            "from_number = \"+15555550100\"\n",
            "log_bodies = true\n",
            "max_per_number_per_day = 2\n",
            "max_per_account_per_day = 3\n",
            "max_per_day = 40\n",
        )))
        .unwrap();
        assert_eq!(warnings, Vec::<String>::new());
        let settings = c.split().unwrap();
        assert_eq!(
            settings.config.mfa,
            MfaPolicy {
                sms_code_length: 8,
                sms_code_ttl_seconds: 120,
                sms_code_max_attempts: 3,
                mfa_pending_token_ttl_seconds: 900,
                enable_sms_2fa: true,
                sms_max_per_number_per_day: 2,
                sms_max_per_account_per_day: 3,
                sms_max_per_day: 40,
            }
        );
        assert!(matches!(
            settings.sms,
            SmsTransport::Null {
                log_bodies: true,
                ..
            }
        ));
        // A misspelt key in `[sms]` still stops start-up.
        let err = from_dict(dict("[sms]\nmax_per_days = 1\n")).unwrap_err();
        assert!(err.to_string().contains("max_per_days"), "{err}");
    }

    #[test]
    fn the_password_policy_keys_load_with_safe_defaults() {
        let d = split("");
        let p = &d.config.password;
        assert!(p.blocklist && p.context_words);
        assert_eq!(
            p.breach_check,
            BreachCheck::Off,
            "no outbound call by default"
        );
        assert_eq!(p.breach_range_url, "https://api.pwnedpasswords.com");
        assert_eq!(p.breach_timeout_ms, 1500);
        assert!(!p.breach_fail_closed);
        assert_eq!(p.breach_file, None);

        let s = split(
            "[password]\nblocklist = false\ncontext_words = false\n\
             breach_check = \"range\"\nbreach_range_url = \"https://ranges.acme.example\"\n\
             breach_timeout_ms = 800\nbreach_fail_closed = true\n\
             breach_file = \"/srv/ranges\"\n",
        );
        let p = &s.config.password;
        assert!(!p.blocklist && !p.context_words && p.breach_fail_closed);
        assert_eq!(p.breach_check, BreachCheck::Range);
        assert_eq!(p.breach_range_url, "https://ranges.acme.example");
        assert_eq!(p.breach_timeout_ms, 800);
        assert_eq!(p.breach_file.as_deref(), Some(Path::new("/srv/ranges")));

        // A mode that does not exist names the key; so do bad values.
        let err = from_dict(dict("[password]\nbreach_check = \"online\"\n")).unwrap_err();
        assert!(err.to_string().contains("breach_check"), "{err}");
        for (src, key) in [
            (
                "[password]\nbreach_check = \"range\"\nbreach_range_url = \"ftp://x\"\n",
                "password.breach_range_url",
            ),
            (
                "[password]\nbreach_check = \"range\"\nbreach_timeout_ms = 0\n",
                "password.breach_timeout_ms",
            ),
            (
                "[password]\nbreach_check = \"file\"\n",
                "password.breach_file",
            ),
        ] {
            let s = split(&format!("jwt_secret = \"{}\"\n{src}", "k".repeat(32)));
            assert_eq!(s.validate().unwrap_err().key, key, "{src}");
        }
    }

    #[test]
    fn an_unknown_key_in_any_table_fails_naming_it_and_listing_the_table() {
        for (src, key) in [
            ("[http]\nbody_limit = 1", "body_limit"),
            ("[http]\nhsts_max_age = 1", "hsts_max_age"),
            ("[password]\nargon2_memory = 1", "argon2_memory"),
            ("[password]\nbreach_url = \"https://x\"", "breach_url"),
            ("[sessions]\nrefresh_ttl = 1", "refresh_ttl"),
            ("[email]\nsmtp_hots = \"x\"", "smtp_hots"),
            ("database_ur = \"sqlite:x.db\"", "database_ur"),
        ] {
            let err = from_dict(dict(src)).unwrap_err().to_string();
            assert!(err.contains(key), "{src}: {err}");
        }
        // The list of keys in the message covers the whole table, both
        // halves of `[email]` alike.
        let err = from_dict(dict("[email]\nsmtp_hots = \"x\""))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("smtp_host") && err.contains("from_address"),
            "{err}"
        );
        let err = from_dict(dict("app_nam = \"x\"")).unwrap_err().to_string();
        assert!(
            err.contains("database_url") && err.contains("jwt_secret"),
            "{err}"
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let (c, _) = from_dict(dict(
            "jwt_secret = \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"\n\
             database_url = \"postgres://u:dbpass@h/db\"\n\
             [email]\nsmtp_password = \"hunter2-smtp\"\n",
        ))
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("xxxxxxxx"));
        assert!(!shown.contains("hunter2-smtp"));
        assert!(!shown.contains("dbpass"));
        let parts = format!("{:?}", c.split().unwrap());
        assert!(!parts.contains("xxxxxxxx"));
        assert!(!parts.contains("dbpass"));
    }

    #[test]
    fn the_secrets_file_beside_the_config_is_read_and_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("regstack.toml");
        let path = secrets_env_path(&config);
        assert_eq!(path, dir.path().join(SECRETS_FILE));
        assert!(
            read_secrets_env(&path).unwrap().is_empty(),
            "no file, no lines"
        );
        let text = "# comment\n\nREGSTACK_JWT_SECRET=abc=def\nexport REGSTACK_EMAIL__SMTP_PASSWORD=\"p w\"\nOTHER=1\nREGSTACK_CONFIG=elsewhere.toml\n";
        crate::development::write_private_file(&path, text.as_bytes()).unwrap();
        assert_eq!(
            read_secrets_env(&path).unwrap(),
            vec![
                ("REGSTACK_JWT_SECRET".to_owned(), "abc=def".to_owned()),
                ("REGSTACK_EMAIL__SMTP_PASSWORD".to_owned(), "p w".to_owned()),
            ]
        );
        crate::development::write_private_file(&path, b"REGSTACK_JWT_SECRET\n").unwrap();
        assert!(read_secrets_env(&path)
            .unwrap_err()
            .to_string()
            .contains("line 1"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = read_secrets_env(&path).unwrap_err().to_string();
            assert!(err.contains("group or others"), "{err}");
        }
    }

    #[test]
    fn an_asymmetric_algorithm_reads_or_makes_its_key_file_and_hmac_refuses_one() {
        let dir = tempfile::tempdir().unwrap();
        let secret = "jwt_secret = \"0123456789abcdef0123456789abcdef\"\n";
        let (mut c, _) = from_dict(dict(&format!("{secret}jwt_algorithm = \"EdDSA\""))).unwrap();
        c.secrets_dir = Some(dir.path().to_path_buf());
        let s = c.clone().split().unwrap();
        assert_eq!(s.config.jwt_private_keys.len(), 1);
        assert!(dir.path().join(crate::keys::KEYS_FILE).exists());
        s.validate().unwrap();
        // The same key on the next start.
        let again = c.split().unwrap();
        use secrecy::ExposeSecret as _;
        assert_eq!(
            again.config.jwt_private_keys[0].expose_secret(),
            s.config.jwt_private_keys[0].expose_secret()
        );
        // RS256 keys are the operator's to make.
        let missing = dir.path().join("rsa.pem");
        let (c, _) = from_dict(dict(&format!(
            "{secret}jwt_algorithm = \"RS256\"\njwt_keys_file = {:?}",
            missing.display().to_string()
        )))
        .unwrap();
        let err = c.split().unwrap_err();
        assert_eq!(err.key, "jwt_keys_file");
        assert!(err.reason.contains("openssl genpkey"), "{err}");
        // A key file with an HMAC algorithm would sign nothing.
        let (c, _) = from_dict(dict(&format!("{secret}jwt_keys_file = \"k.pem\""))).unwrap();
        assert_eq!(c.split().unwrap_err().key, "jwt_keys_file");
        assert!(from_dict(dict("jwt_algorithm = \"ES256\"")).is_err());
    }

    #[test]
    fn the_otlp_endpoint_is_checked_and_needs_the_otel_build() {
        let (c, _) = from_dict(dict(
            "[tracing]\notlp_endpoint = \"http://127.0.0.1:4318/\"",
        ))
        .unwrap();
        let got = c.tracing.traces_url();
        if cfg!(feature = "otel") {
            assert_eq!(
                got.unwrap().as_deref(),
                Some("http://127.0.0.1:4318/v1/traces")
            );
            for bad in ["ftp://x", "127.0.0.1:4318", "not a url"] {
                let (c, _) =
                    from_dict(dict(&format!("[tracing]\notlp_endpoint = {bad:?}"))).unwrap();
                assert_eq!(
                    c.tracing.traces_url().unwrap_err().key,
                    "tracing.otlp_endpoint"
                );
            }
        } else {
            assert!(got.unwrap_err().reason.contains("--features otel"));
        }
        assert_eq!(TracingSection::default().traces_url(), Ok(None));
        assert!(from_dict(dict("[tracing]\nendpoint = \"x\"")).is_err());
    }

    #[test]
    fn observability_keys_are_checked() {
        let (c, _) = from_dict(dict(
            "log_format = \"json\"\n[metrics]\nenabled = true\nlisten = \"127.0.0.1:9464\"\n",
        ))
        .unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(
            c.metrics.listen_addr().unwrap(),
            Some("127.0.0.1:9464".parse().unwrap())
        );
        let (c, _) = from_dict(dict("")).unwrap();
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.metrics, MetricsSection::default(), "off by default");
        for (src, key) in [
            ("log_format = \"xml\"", "log_format"),
            ("[metrics]\nenable = true", "enable"),
            (
                "[metrics]\nenabled = true\nlisten = \"localhost\"",
                "metrics.listen",
            ),
            ("[metrics]\nlisten = \"127.0.0.1:9464\"", "metrics.enabled"),
        ] {
            let err = from_dict(dict(src))
                .and_then(|(c, _)| c.split().map(|_| ()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{src}: {err}");
        }
    }
}
