//! The policy a regstack instance decides with: token lifetimes and keys,
//! lockout, links and templates, the mail sender and per-address quota,
//! password hashing, sessions.
//!
//! Only what core's flows read lives here. Transport settings belong to the
//! ring that uses them: the database URL to the server
//! (`regstack::DatabaseSettings`), SMTP and the console's `log_bodies` to
//! `regstack-adapters-notify` (`MailTransport`), body limit, CORS and the
//! request deadline to `regstack-http-axum` (`HttpSettings`). The server
//! reads `regstack.toml` and `REGSTACK_*` in one file-level shape and splits
//! it into these parts.
//!
//! Key names and defaults are regstack 0.9.3's where regstack has the
//! setting, so a regstack `regstack.toml` loads unchanged.
//! This module only describes and validates; reading files and environment
//! variables is the server crate's job (core does no I/O).

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The smallest `jwt_secret` accepted, in bytes (RFC 8725 §3.5: an HS256
/// key needs at least as much entropy as the hash output).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// The largest `jwt_iat_leeway_seconds` accepted. The leeway exists for
/// clocks that disagree by a few seconds; a minute is already generous,
/// and more would let a token minted by a badly wrong clock live on.
pub const MAX_JWT_IAT_LEEWAY_SECONDS: u64 = 60;

/// A configuration value that cannot be used. The message names the key so
/// an operator can fix it without reading code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: `{key}`: {reason}")]
pub struct ConfigError {
    /// Dotted key name, as written in `regstack.toml`.
    pub key: String,
    /// What is wrong and what would be accepted.
    pub reason: String,
}

impl ConfigError {
    /// Builds an error for `key`.
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Who may create an account (`registration_mode`): by `POST /register`
/// and by a first OAuth sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationMode {
    /// Anyone (regstack's `allow_registration = true`).
    #[default]
    Open,
    /// Only with an invitation code an administrator made; a first OAuth
    /// sign-in cannot present one, so it creates no account (linking and
    /// existing accounts are unaffected).
    Invite,
    /// Nobody (regstack's `allow_registration = false`).
    Closed,
}

impl RegistrationMode {
    /// The key's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Invite => "invite",
            Self::Closed => "closed",
        }
    }
}

/// How access tokens are signed: regstack's HMAC set (keyed by
/// `jwt_secret`), or an asymmetric key from [`Config::jwt_private_keys`]
/// whose public half is published as a JWKS, so that other services can
/// verify tokens without holding anything that could mint them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 (default, regstack's).
    #[default]
    HS256,
    /// HMAC-SHA384.
    HS384,
    /// HMAC-SHA512.
    HS512,
    /// Ed25519 signatures (RFC 8037), PKCS#8 private keys.
    EdDSA,
    /// RSASSA-PKCS1-v1_5 with SHA-256, RSA keys of at least 2048 bits.
    RS256,
}

impl JwtAlgorithm {
    /// Signs with a key pair rather than `jwt_secret`.
    pub fn is_asymmetric(self) -> bool {
        matches!(self, Self::EdDSA | Self::RS256)
    }

    /// The name as written in the configuration and the token's `alg`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HS256 => "HS256",
            Self::HS384 => "HS384",
            Self::HS512 => "HS512",
            Self::EdDSA => "EdDSA",
            Self::RS256 => "RS256",
        }
    }
}

/// `[email]`, the policy half: who mail comes from and how much of it one
/// address may receive. How it is delivered (`backend`, `smtp_*`,
/// `log_bodies`) is the notify adapter's `MailTransport`.
#[derive(Debug, Clone)]
pub struct EmailPolicy {
    /// Sender address.
    pub from_address: String,
    /// Sender display name; `app_name` when unset (regstack).
    pub from_name: Option<String>,
    /// At most this many mails to one address per hour: past it the
    /// mail-sending routes answer the same and send nothing.
    pub max_per_address_per_hour: u32,
}

impl Default for EmailPolicy {
    fn default() -> Self {
        Self {
            from_address: "noreply@example.com".into(),
            from_name: None,
            max_per_address_per_hour: 5,
        }
    }
}

/// `[password]`: Argon2id parameters and the hashing concurrency bound.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordConfig {
    /// Memory cost in KiB (regstack/argon2-cffi default 65536).
    pub argon2_memory_kib: u32,
    /// Passes (default 3).
    pub argon2_iterations: u32,
    /// Lanes (default 4).
    pub argon2_parallelism: u32,
    /// Hashes allowed to run at once; `None` = number of cores. Bounds the
    /// memory a login flood can claim: this × `argon2_memory_kib`.
    pub max_concurrent_hashes: Option<usize>,
    /// Refuse a new password found in the bundled list of the most common
    /// passwords (NIST SP 800-63B §5.1.1.2). Default on.
    pub blocklist: bool,
    /// Refuse a new password made of the site's name or the account's
    /// email address (its local part, its domain's name). Default on.
    pub context_words: bool,
    /// Screen new passwords against breach corpora: `"off"` (default, no
    /// outbound call), `"range"` (a k-anonymity range API at
    /// `breach_range_url`) or `"file"` (a local range directory at
    /// `breach_file`).
    pub breach_check: BreachCheck,
    /// Base URL of the range API (`GET <base>/range/<5 hex digits>`).
    pub breach_range_url: String,
    /// How long one range query may take before it counts as unavailable.
    pub breach_timeout_ms: u64,
    /// When the breach screen is unavailable: refuse the request with a 503
    /// (`true`) or let the password through, logging a warning (`false`,
    /// default — an outage of a third-party service does not stop sign-ups).
    pub breach_fail_closed: bool,
    /// The range directory of `breach_check = "file"`.
    pub breach_file: Option<std::path::PathBuf>,
}

/// Where new passwords are screened for breaches (`password.breach_check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BreachCheck {
    /// No breach screen.
    #[default]
    Off,
    /// A k-anonymity range API over HTTP(S).
    Range,
    /// A local directory of range files.
    File,
}

impl Default for PasswordConfig {
    fn default() -> Self {
        Self {
            argon2_memory_kib: 65536,
            argon2_iterations: 3,
            argon2_parallelism: 4,
            max_concurrent_hashes: None,
            blocklist: true,
            context_words: true,
            breach_check: BreachCheck::Off,
            breach_range_url: "https://api.pwnedpasswords.com".into(),
            breach_timeout_ms: 1500,
            breach_fail_closed: false,
            breach_file: None,
        }
    }
}

/// `[sessions]`: refresh-token families — their lifetimes, the retry grace
/// and the cookie transport.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionsConfig {
    /// A session dies if not refreshed for this long.
    pub refresh_idle_ttl_seconds: u64,
    /// A session dies this long after sign-in, however often refreshed.
    pub refresh_absolute_ttl_seconds: u64,
    /// How long a spent refresh token may be replayed (a client whose
    /// response was lost) and receive the same successor.
    pub reuse_grace_seconds: u64,
    /// Deliver the refresh token in an `HttpOnly` cookie instead of JSON.
    pub refresh_cookie: bool,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self {
            refresh_idle_ttl_seconds: 1_209_600,
            refresh_absolute_ttl_seconds: 2_592_000,
            reuse_grace_seconds: 5,
            refresh_cookie: false,
        }
    }
}

/// OAuth / OpenID Connect sign-in (regstack's `oauth.*` keys). Which
/// providers exist is not policy: the host hands them to the engine
/// ([`crate::engine::OAuthProviders`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OAuthPolicy {
    /// How long the round trip through the provider may take (`start` to
    /// `callback`); 60–3600, default 300.
    pub state_ttl_seconds: u64,
    /// How long the browser has to exchange a completed flow; 5–120,
    /// default 30 (the exchange id is a bearer secret in a URL: it must
    /// not outlive the page that redeems it).
    pub completion_ttl_seconds: u64,
    /// Link a first sign-in to the existing account holding the provider's
    /// address — only when the provider asserted it verified (the JSON
    /// boolean `true`) and the account's own address is verified. Off by
    /// default: it trusts the provider's word about an address for ever,
    /// and address recycling at a provider then becomes a takeover here.
    pub auto_link_verified_emails: bool,
    /// An account with a second factor is asked for it after an OAuth
    /// sign-in too. On by default (regstack defaults it off); turning it
    /// off lets the provider's sign-in stand in for the second factor.
    pub enforce_mfa_on_oauth_signin: bool,
}

impl Default for OAuthPolicy {
    fn default() -> Self {
        Self {
            state_ttl_seconds: 300,
            completion_ttl_seconds: 30,
            auto_link_verified_emails: false,
            enforce_mfa_on_oauth_signin: true,
        }
    }
}

/// The audit log (`[audit]`): what happened to accounts, kept in the
/// database for the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditPolicy {
    /// Security events are written to the audit log. On by default: it is
    /// the record an operator needs the day something went wrong, and the
    /// day is not known in advance.
    pub enabled: bool,
    /// Entries older than this many days are purged by housekeeping
    /// (1–3650, default 90); 0 keeps them for ever.
    pub retention_days: u32,
    /// Entries waiting to be written, at most (100–1 000 000, default
    /// 10 000); past it new entries are dropped and counted rather than
    /// slowing requests down.
    pub queue_capacity: usize,
}

impl Default for AuditPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            retention_days: 90,
            queue_capacity: 10_000,
        }
    }
}

/// Security notices (`[notices]`): mail to an account's owner when
/// something happens to it that an intruder would do, each behind its own
/// switch. Every notice counts against the address's mail quota
/// (`email.max_per_address_per_hour`) like any other mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoticesPolicy {
    /// A password sign-in from a device the account has not used recently
    /// ([`crate::engine`]'s `login`: no device cookie minted for the
    /// address, and no live session with the same browser and network).
    /// On by default: it is the one notice that tells an owner someone
    /// else knows the password. Never sent for an account's first sign-in.
    pub new_device: bool,
    /// The password was changed from a session. On by default: a thief
    /// with a session and the password changes it to keep the owner out;
    /// this mail is often the owner's only warning.
    pub password_changed: bool,
    /// An address change was requested: the *old* address is told, with a
    /// link that revokes every session and blocks the change (or undoes
    /// it). On by default: taking over the address is taking over the
    /// account (every later reset link goes to the new one), so the old
    /// address must hear of it while it still can act.
    pub email_changed: bool,
    /// A second factor was removed (TOTP disabled, SMS phone removed). On
    /// by default: removing it is what an intruder does first, and the
    /// owner would otherwise only notice at the next sign-in.
    pub mfa_disabled: bool,
    /// A spent refresh token was presented again, so the session was
    /// revoked as stolen. On by default: the owner should change the
    /// password, since whoever copied the token may have had more.
    pub refresh_reuse: bool,
    /// Lifetime of the "this wasn't me" link mailed to the old address
    /// (3600–2 592 000, default 604 800: a week). It outlives the
    /// confirmation link on purpose: an owner away for a few days can
    /// still undo a change that was confirmed meanwhile.
    pub email_revert_ttl_seconds: u64,
}

impl Default for NoticesPolicy {
    fn default() -> Self {
        Self {
            new_device: true,
            password_changed: true,
            email_changed: true,
            mfa_disabled: true,
            refresh_reuse: true,
            email_revert_ttl_seconds: 604_800,
        }
    }
}

/// The second-factor step: regstack's top-level keys of the same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MfaPolicy {
    /// Digits of an SMS code (6–9; regstack's default 6).
    pub sms_code_length: usize,
    /// How long an SMS code lives.
    pub sms_code_ttl_seconds: u64,
    /// Wrong codes a challenge allows before it is gone (1–10): SMS and
    /// TOTP alike, and the setup of a factor.
    pub sms_code_max_attempts: u32,
    /// How long a pending second-factor step (`mfa_pending_token`, a
    /// factor's setup) lives.
    pub mfa_pending_token_ttl_seconds: u64,
    /// SMS codes as a second factor (regstack's `enable_sms_2fa`): the
    /// phone routes exist and accounts with a phone get their code by SMS.
    pub enable_sms_2fa: bool,
    /// Texts to one number per day, at most (toll fraud: `sms.max_per_number_per_day`).
    pub sms_max_per_number_per_day: u32,
    /// Texts for one account per day, at most (`sms.max_per_account_per_day`).
    pub sms_max_per_account_per_day: u32,
    /// Texts in all per day, across every instance (`sms.max_per_day`).
    pub sms_max_per_day: u32,
}

impl Default for MfaPolicy {
    fn default() -> Self {
        Self {
            sms_code_length: 6,
            sms_code_ttl_seconds: 300,
            sms_code_max_attempts: 5,
            mfa_pending_token_ttl_seconds: 600,
            enable_sms_2fa: false,
            sms_max_per_number_per_day: 5,
            sms_max_per_account_per_day: 10,
            sms_max_per_day: 1000,
        }
    }
}

/// Every policy setting of a regstack instance: what the engine decides
/// with. Build it in code (`Config { jwt_secret, ..Config::default() }`) or
/// let the server read it from `regstack.toml`.
#[derive(Clone)]
pub struct Config {
    /// Product name shown in mail.
    pub app_name: String,
    /// Public origin of the service; every link in mail is built from it,
    /// never from a request's `Host` header.
    pub base_url: String,
    /// Key material for every token the service signs. At least 32 bytes.
    pub jwt_secret: SecretString,
    /// Secrets whose tokens, refresh tokens and device cookies are still
    /// accepted but never made (JW-5). Rotating `jwt_secret`: first add the
    /// new secret here on every instance, then swap it with the old one
    /// (which moves here), and drop the old one once its last token has
    /// expired (the refresh tokens' absolute lifetime; device cookies then
    /// count as none and only fall back to the address's lockout bucket).
    pub jwt_previous_secrets: Vec<SecretString>,
    /// Signing algorithm for access tokens.
    pub jwt_algorithm: JwtAlgorithm,
    /// With an asymmetric [`JwtAlgorithm`]: the private keys as PEM, the
    /// first signing every new access token, the others (rotated out)
    /// only verifying tokens they signed until those expire. All are
    /// published at `/.well-known/jwks.json`. Must be empty with an HMAC
    /// algorithm (keys that sign nothing would be dead configuration).
    /// The server reads them from `jwt_keys_file`.
    pub jwt_private_keys: Vec<SecretString>,
    /// Access-token lifetime.
    pub jwt_ttl_seconds: u64,
    /// When set, tokens carry and must present this `aud`.
    pub jwt_audience: Option<String>,
    /// How far in the future an access token's `iat` may lie and still be
    /// accepted: the clock skew tolerated between instances that share
    /// `jwt_secret` (0–60, default 5). `exp` has no leeway.
    pub jwt_iat_leeway_seconds: u64,
    /// Registration waits for the address to be proven.
    pub require_verification: bool,
    /// Who may create an account: open, by invitation only, or nobody
    /// (regstack's `allow_registration = false` is `Closed`).
    pub registration_mode: RegistrationMode,
    /// Registering a taken address answers exactly like registering a new
    /// one (201, pending verification) and mails the address's owner a
    /// notice instead of answering 409, so registration cannot tell who
    /// has an account. Off by default:
    /// regstack's clients expect the 409. Needs `require_verification`.
    pub uniform_registration: bool,
    /// The forgot/reset routes exist.
    pub enable_password_reset: bool,
    /// `DELETE /account` exists.
    pub enable_account_deletion: bool,
    /// The `/admin/*` routes exist (regstack's key). Off by default: they
    /// answer only administrators, but an API that is not mounted cannot
    /// be probed at all.
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
    /// The account pages are served at `ui_prefix` (regstack's
    /// `enable_ui_router`), and mailed links lead to them unless
    /// `email_link_prefix` or a `*_url_template` says otherwise. Off in a
    /// bare `Config` (regstack's default: a host with its own UI owns the
    /// bare `/verify` paths); the ready-made server's `regstack.toml`
    /// turns it on, so its mails never lead nowhere.
    pub enable_ui_router: bool,
    /// Mount point of the account pages.
    pub ui_prefix: String,
    /// Path prefix for the links in mail; see [`Config::link_prefix`].
    pub email_link_prefix: Option<String>,
    /// Full URL template of the verification link (`{base_url}`, `{token}`).
    pub verify_url_template: Option<String>,
    /// Full URL template of the reset link.
    pub password_reset_url_template: Option<String>,
    /// Full URL template of the email-change link.
    pub email_change_url_template: Option<String>,
    /// Full URL template of the "this wasn't me" link mailed to the old
    /// address of an email change (`{base_url}`, `{token}`); by default it
    /// follows the other links: `{base_url}{link prefix}/revert-email-change?token=…`,
    /// the account page (with `enable_ui_router`) that posts it to the
    /// API's `revert-email-change`.
    pub revert_email_change_url_template: Option<String>,
    /// Directories whose templates override the built-in ones.
    pub extra_template_dirs: Vec<String>,
    /// Mail sender and quota.
    pub email: EmailPolicy,
    /// Hashing.
    pub password: PasswordConfig,
    /// Sessions and refresh tokens.
    pub sessions: SessionsConfig,
    /// The second-factor step.
    pub mfa: MfaPolicy,
    /// OAuth sign-in.
    pub oauth: OAuthPolicy,
    /// The audit log.
    pub audit: AuditPolicy,
    /// Security notices by mail.
    pub notices: NoticesPolicy,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            app_name: "RegStack".into(),
            base_url: "http://localhost:8000".into(),
            jwt_secret: SecretString::from(""),
            jwt_previous_secrets: Vec::new(),
            jwt_algorithm: JwtAlgorithm::HS256,
            jwt_private_keys: Vec::new(),
            jwt_ttl_seconds: 7200,
            jwt_audience: None,
            jwt_iat_leeway_seconds: 5,
            require_verification: true,
            registration_mode: RegistrationMode::Open,
            uniform_registration: false,
            enable_password_reset: true,
            enable_account_deletion: true,
            enable_admin_router: false,
            verification_token_ttl_seconds: 86_400,
            password_reset_token_ttl_seconds: 1800,
            email_change_token_ttl_seconds: 3600,
            rate_limit_disabled: false,
            login_lockout_threshold: 5,
            login_lockout_window_seconds: 900,
            enable_ui_router: false,
            ui_prefix: "/account".into(),
            email_link_prefix: None,
            verify_url_template: None,
            password_reset_url_template: None,
            email_change_url_template: None,
            revert_email_change_url_template: None,
            extra_template_dirs: Vec::new(),
            email: EmailPolicy::default(),
            password: PasswordConfig::default(),
            sessions: SessionsConfig::default(),
            mfa: MfaPolicy::default(),
            oauth: OAuthPolicy::default(),
            audit: AuditPolicy::default(),
            notices: NoticesPolicy::default(),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("app_name", &self.app_name)
            .field("base_url", &self.base_url)
            .field("jwt_secret", &"[redacted]")
            .field("jwt_algorithm", &self.jwt_algorithm)
            .field("jwt_ttl_seconds", &self.jwt_ttl_seconds)
            .field("email", &self.email)
            .field("password", &self.password)
            .finish_non_exhaustive()
    }
}

/// The OWASP Password Storage Cheat Sheet's equivalent Argon2id settings:
/// (minimum memory KiB, minimum iterations). A configuration must meet one.
const ARGON2_FLOOR: [(u32, u32); 5] = [(47104, 1), (19456, 2), (12288, 3), (9216, 4), (7168, 5)];

impl Config {
    /// Checks every rule a value must satisfy before the service starts.
    /// Security settings never fall back to a silent default.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let secret = self.jwt_secret.expose_secret();
        if secret.len() < MIN_JWT_SECRET_BYTES {
            return Err(ConfigError::new(
                "jwt_secret",
                format!(
                    "must be at least {MIN_JWT_SECRET_BYTES} bytes (got {}); generate one with `openssl rand -base64 48`",
                    secret.len()
                ),
            ));
        }
        for previous in &self.jwt_previous_secrets {
            if previous.expose_secret().len() < MIN_JWT_SECRET_BYTES {
                return Err(ConfigError::new(
                    "jwt_previous_secrets",
                    format!("every secret must be at least {MIN_JWT_SECRET_BYTES} bytes"),
                ));
            }
            if previous.expose_secret() == secret {
                return Err(ConfigError::new(
                    "jwt_previous_secrets",
                    "holds the current jwt_secret; list only secrets being rotated in or out",
                ));
            }
        }
        if self.jwt_algorithm.is_asymmetric() {
            crate::jwt::SigningKeys::parse(self.jwt_algorithm, &self.jwt_private_keys)
                .map_err(|reason| ConfigError::new("jwt_private_keys", reason))?;
        } else if !self.jwt_private_keys.is_empty() {
            return Err(ConfigError::new(
                "jwt_private_keys",
                format!(
                    "are set but jwt_algorithm is {}, which signs with jwt_secret: set jwt_algorithm = \"EdDSA\" or \"RS256\", or remove the keys",
                    self.jwt_algorithm.as_str()
                ),
            ));
        }
        let mfa = &self.mfa;
        if !(6..=9).contains(&mfa.sms_code_length) {
            return Err(ConfigError::new(
                "sms_code_length",
                "must be between 6 and 9",
            ));
        }
        if !(1..=10).contains(&mfa.sms_code_max_attempts) {
            return Err(ConfigError::new(
                "sms_code_max_attempts",
                "must be between 1 and 10",
            ));
        }
        for (key, value) in [
            ("sms_code_ttl_seconds", mfa.sms_code_ttl_seconds),
            (
                "mfa_pending_token_ttl_seconds",
                mfa.mfa_pending_token_ttl_seconds,
            ),
        ] {
            if !(60..=3600).contains(&value) {
                return Err(ConfigError::new(key, "must be between 60 and 3600"));
            }
        }
        if !(60..=3600).contains(&self.oauth.state_ttl_seconds) {
            return Err(ConfigError::new(
                "oauth.state_ttl_seconds",
                "must be between 60 and 3600",
            ));
        }
        if !(5..=120).contains(&self.oauth.completion_ttl_seconds) {
            return Err(ConfigError::new(
                "oauth.completion_ttl_seconds",
                "must be between 5 and 120: only the browser's own redirect needs it",
            ));
        }
        if self.audit.retention_days > 3650 {
            return Err(ConfigError::new(
                "audit.retention_days",
                "must be at most 3650 (0 keeps entries for ever)",
            ));
        }
        if !(3600..=2_592_000).contains(&self.notices.email_revert_ttl_seconds) {
            return Err(ConfigError::new(
                "notices.email_revert_ttl_seconds",
                "must be between 3600 (an hour) and 2592000 (30 days)",
            ));
        }
        if !(100..=1_000_000).contains(&self.audit.queue_capacity) {
            return Err(ConfigError::new(
                "audit.queue_capacity",
                "must be between 100 and 1000000",
            ));
        }
        if self.uniform_registration && !self.require_verification {
            // Without verification a registration answers with the new
            // account itself, which a taken address cannot imitate.
            return Err(ConfigError::new(
                "uniform_registration",
                "needs require_verification = true: without verification the answer is the created account, which cannot be imitated for a taken address",
            ));
        }
        if !(60..=60 * 60 * 24 * 30).contains(&self.jwt_ttl_seconds) {
            return Err(ConfigError::new(
                "jwt_ttl_seconds",
                "must be between 60 and 2592000",
            ));
        }
        if self.jwt_iat_leeway_seconds > MAX_JWT_IAT_LEEWAY_SECONDS {
            return Err(ConfigError::new(
                "jwt_iat_leeway_seconds",
                format!(
                    "must be between 0 and {MAX_JWT_IAT_LEEWAY_SECONDS}: it only absorbs clock skew between instances"
                ),
            ));
        }
        if let Some(aud) = &self.jwt_audience {
            if aud.trim().is_empty() {
                return Err(ConfigError::new(
                    "jwt_audience",
                    "must not be empty when set",
                ));
            }
        }
        let base = self.base_url.trim();
        if !(base.starts_with("http://") || base.starts_with("https://"))
            || base.len() <= "https://".len()
            || base.contains(char::is_whitespace)
        {
            return Err(ConfigError::new(
                "base_url",
                "must be an absolute http(s) URL such as https://app.example.com",
            ));
        }
        check_prefix("ui_prefix", &self.ui_prefix)?;
        for (key, ttl) in [
            (
                "verification_token_ttl_seconds",
                self.verification_token_ttl_seconds,
            ),
            (
                "password_reset_token_ttl_seconds",
                self.password_reset_token_ttl_seconds,
            ),
            (
                "email_change_token_ttl_seconds",
                self.email_change_token_ttl_seconds,
            ),
        ] {
            if ttl < 60 {
                return Err(ConfigError::new(key, "must be at least 60 seconds"));
            }
        }
        if self.login_lockout_threshold < 1 {
            return Err(ConfigError::new(
                "login_lockout_threshold",
                "must be at least 1",
            ));
        }
        if self.login_lockout_window_seconds < 10 {
            return Err(ConfigError::new(
                "login_lockout_window_seconds",
                "must be at least 10 seconds",
            ));
        }
        let p = &self.password;
        if !ARGON2_FLOOR
            .iter()
            .any(|&(m, t)| p.argon2_memory_kib >= m && p.argon2_iterations >= t)
        {
            return Err(ConfigError::new(
                "password.argon2_memory_kib",
                format!(
                    "Argon2id m={} KiB, t={} is below the OWASP floor (m=19456 KiB with t=2, or m=47104 KiB with t=1, …)",
                    p.argon2_memory_kib, p.argon2_iterations
                ),
            ));
        }
        if !(1..=64).contains(&p.argon2_parallelism) {
            return Err(ConfigError::new(
                "password.argon2_parallelism",
                "must be between 1 and 64",
            ));
        }
        if p.max_concurrent_hashes == Some(0) {
            return Err(ConfigError::new(
                "password.max_concurrent_hashes",
                "must be at least 1",
            ));
        }
        if p.breach_check == BreachCheck::Range {
            let url = p.breach_range_url.to_ascii_lowercase();
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            if !rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/')) {
                return Err(ConfigError::new(
                    "password.breach_range_url",
                    "must be an http:// or https:// URL",
                ));
            }
        }
        if p.breach_check != BreachCheck::Off && !(1..=60_000).contains(&p.breach_timeout_ms) {
            return Err(ConfigError::new(
                "password.breach_timeout_ms",
                "must be between 1 and 60000",
            ));
        }
        if p.breach_check == BreachCheck::File && p.breach_file.is_none() {
            return Err(ConfigError::new(
                "password.breach_file",
                "must name the range directory when breach_check = \"file\"",
            ));
        }
        let s = &self.sessions;
        if s.refresh_absolute_ttl_seconds < self.jwt_ttl_seconds {
            return Err(ConfigError::new(
                "sessions.refresh_absolute_ttl_seconds",
                "must be at least jwt_ttl_seconds (a session outlives its access tokens)",
            ));
        }
        if !(60..=s.refresh_absolute_ttl_seconds).contains(&s.refresh_idle_ttl_seconds) {
            return Err(ConfigError::new(
                "sessions.refresh_idle_ttl_seconds",
                "must be between 60 and sessions.refresh_absolute_ttl_seconds",
            ));
        }
        if s.reuse_grace_seconds > 60 {
            return Err(ConfigError::new(
                "sessions.reuse_grace_seconds",
                "must be at most 60: past that a replay is theft, not a retry",
            ));
        }
        if self.email.max_per_address_per_hour < 1 {
            return Err(ConfigError::new(
                "email.max_per_address_per_hour",
                "must be at least 1",
            ));
        }
        if regstack_ports::Email::parse(&self.email.from_address).is_err() {
            return Err(ConfigError::new(
                "email.from_address",
                "must be a valid email address",
            ));
        }
        Ok(())
    }

    /// Valid settings that switch a protection off, one sentence each
    /// saying what is off: the engine logs them as warnings when it starts,
    /// so an instance never runs unprotected without saying so.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.rate_limit_disabled {
            out.push(
                "rate_limit_disabled = true: the sign-in lockout is OFF — any number of \
                 password guesses per address, at login and at the current-password checks \
                 (change-password, change-email, delete-account); login_lockout_threshold and \
                 login_lockout_window_seconds are ignored; and the per-route request limits \
                 ([rate_limits], *_rate_limit) are OFF too. Meant for benchmarks and tests, not \
                 production"
                    .to_owned(),
            );
        }
        if !self.oauth.enforce_mfa_on_oauth_signin {
            out.push(
                "oauth.enforce_mfa_on_oauth_signin = false: an account with a second factor \
                 signs in through an OAuth provider WITHOUT it — the provider's sign-in stands \
                 in for the factor the account enrolled"
                    .to_owned(),
            );
        }
        out
    }

    /// `base_url` without a trailing slash.
    pub fn base(&self) -> &str {
        self.base_url.trim().trim_end_matches('/')
    }

    /// The path prefix for mailed links (regstack's rule): explicit
    /// `email_link_prefix`; else `ui_prefix` when the account pages are
    /// served (`enable_ui_router`), so the links open them; else empty so
    /// the host routes `/verify` itself.
    pub fn link_prefix(&self) -> &str {
        match self.email_link_prefix.as_deref() {
            Some(p) => p.trim_end_matches('/'),
            None if self.enable_ui_router => self.ui_prefix.trim_end_matches('/'),
            None => "",
        }
    }

    /// The `From:` header: display name (or `app_name`) and address.
    pub fn from_header(&self) -> String {
        let name = self.email.from_name.as_deref().unwrap_or(&self.app_name);
        format!("{name} <{}>", self.email.from_address)
    }
}

/// A mount point as the routers take it: starts with `/`, no trailing `/`
/// (`/` alone is the root). Shared with the HTTP layer, which checks
/// `api_prefix` with it.
pub fn check_prefix(key: &str, prefix: &str) -> Result<(), ConfigError> {
    if !prefix.starts_with('/') || prefix.ends_with('/') && prefix.len() > 1 {
        return Err(ConfigError::new(
            key,
            "must start with `/` and not end with `/` (e.g. /api/auth)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Config {
        Config {
            jwt_secret: SecretString::from("x".repeat(32)),
            ..Config::default()
        }
    }

    #[test]
    fn defaults_with_a_secret_are_valid() {
        assert_eq!(valid().validate(), Ok(()));
    }

    #[test]
    fn private_keys_go_with_an_asymmetric_algorithm_only() {
        let mut c = Config {
            jwt_secret: SecretString::from("x".repeat(32)),
            ..Config::default()
        };
        c.jwt_private_keys = vec![SecretString::from(include_str!("testdata/ed25519.pem"))];
        assert_eq!(c.validate().unwrap_err().key, "jwt_private_keys");
        c.jwt_algorithm = JwtAlgorithm::EdDSA;
        assert!(c.validate().is_ok());
        c.jwt_algorithm = JwtAlgorithm::RS256;
        assert_eq!(c.validate().unwrap_err().key, "jwt_private_keys");
        c.jwt_algorithm = JwtAlgorithm::EdDSA;
        c.jwt_private_keys.clear();
        assert_eq!(c.validate().unwrap_err().key, "jwt_private_keys");
    }

    #[test]
    fn a_short_secret_names_jwt_secret() {
        let c = Config {
            jwt_secret: SecretString::from("x".repeat(31)),
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "jwt_secret");
    }

    #[test]
    fn previous_secrets_must_be_long_and_not_the_current_one() {
        let mut c = valid();
        c.jwt_previous_secrets = vec![SecretString::from("p".repeat(32))];
        assert_eq!(c.validate(), Ok(()));
        c.jwt_previous_secrets
            .push(SecretString::from("p".repeat(31)));
        assert_eq!(c.validate().unwrap_err().key, "jwt_previous_secrets");
        c.jwt_previous_secrets = vec![c.jwt_secret.clone()];
        assert_eq!(c.validate().unwrap_err().key, "jwt_previous_secrets");
    }

    #[test]
    fn second_factor_settings_have_regstacks_defaults_and_bounds() {
        let c = valid();
        assert_eq!(c.mfa, MfaPolicy::default());
        assert_eq!(
            (
                c.mfa.sms_code_length,
                c.mfa.sms_code_ttl_seconds,
                c.mfa.sms_code_max_attempts,
                c.mfa.mfa_pending_token_ttl_seconds
            ),
            (6, 300, 5, 600)
        );
        let bad = |f: fn(&mut MfaPolicy)| {
            let mut c = valid();
            f(&mut c.mfa);
            c.validate().unwrap_err().key
        };
        assert_eq!(bad(|m| m.sms_code_length = 5), "sms_code_length");
        assert_eq!(
            bad(|m| m.sms_code_max_attempts = 0),
            "sms_code_max_attempts"
        );
        assert_eq!(bad(|m| m.sms_code_ttl_seconds = 10), "sms_code_ttl_seconds");
        assert_eq!(
            bad(|m| m.mfa_pending_token_ttl_seconds = 86_400),
            "mfa_pending_token_ttl_seconds"
        );
    }

    #[test]
    fn uniform_registration_is_off_by_default_and_needs_verification() {
        assert!(!Config::default().uniform_registration);
        let mut c = valid();
        c.uniform_registration = true;
        assert_eq!(c.validate(), Ok(()));
        c.require_verification = false;
        assert_eq!(c.validate().unwrap_err().key, "uniform_registration");
    }

    #[test]
    fn the_iat_leeway_is_five_seconds_and_at_most_sixty() {
        assert_eq!(Config::default().jwt_iat_leeway_seconds, 5);
        let mut c = valid();
        for ok in [0, 60] {
            c.jwt_iat_leeway_seconds = ok;
            assert_eq!(c.validate(), Ok(()), "{ok}");
        }
        c.jwt_iat_leeway_seconds = 61;
        assert_eq!(c.validate().unwrap_err().key, "jwt_iat_leeway_seconds");
    }

    #[test]
    fn turning_the_lockout_off_is_a_warning_that_says_what_is_off() {
        assert_eq!(valid().warnings(), Vec::<String>::new());
        let mut c = valid();
        c.rate_limit_disabled = true;
        let w = c.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("rate_limit_disabled") && w[0].contains("lockout is OFF"),
            "{w:?}"
        );
    }

    #[test]
    fn argon2_below_the_owasp_floor_is_refused() {
        let mut c = valid();
        c.password.argon2_memory_kib = 8192;
        c.password.argon2_iterations = 3;
        assert_eq!(c.validate().unwrap_err().key, "password.argon2_memory_kib");
        c.password.argon2_memory_kib = 19456;
        c.password.argon2_iterations = 2;
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let shown = format!("{:?}", valid());
        assert!(!shown.contains("xxxxxxxx"));
    }

    #[test]
    fn the_mail_policy_is_checked_here_naming_its_keys() {
        let mut c = valid();
        c.email.max_per_address_per_hour = 0;
        assert_eq!(
            c.validate().unwrap_err().key,
            "email.max_per_address_per_hour"
        );
        let mut c = valid();
        c.email.from_address = "not an address".into();
        assert_eq!(c.validate().unwrap_err().key, "email.from_address");
    }

    #[test]
    fn the_sender_is_the_display_name_or_app_name_and_the_address() {
        let mut c = valid();
        assert_eq!(c.from_header(), "RegStack <noreply@example.com>");
        c.email.from_name = Some("Acme Accounts".into());
        assert_eq!(c.from_header(), "Acme Accounts <noreply@example.com>");
    }
}
