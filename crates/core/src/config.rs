//! The settings a regstack instance runs with.
//!
//! Key names and defaults are regstack 0.9.3's where regstack has the
//! setting (DECISIONS.md §5), so a regstack `regstack.toml` loads unchanged.
//! This module only describes and validates; reading files and environment
//! variables is the server crate's job (core does no I/O).

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The smallest `jwt_secret` accepted, in bytes (RFC 8725 §3.5: an HS256
/// key needs at least as much entropy as the hash output).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

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

/// HMAC algorithms accepted for access tokens (regstack's set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 (default).
    #[default]
    HS256,
    /// HMAC-SHA384.
    HS384,
    /// HMAC-SHA512.
    HS512,
}

/// Which mail transport to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EmailBackend {
    /// Log mail instead of sending it (development).
    #[default]
    Console,
    /// Send through an SMTP relay.
    Smtp,
}

/// How to secure the SMTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Upgrade a plain connection with STARTTLS (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS at all: only for a relay on the same host.
    Plain,
}

/// `[email]`: outgoing mail.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    /// Transport.
    pub backend: EmailBackend,
    /// Sender address.
    pub from_address: String,
    /// Sender display name; `app_name` when unset (regstack).
    pub from_name: Option<String>,
    /// SMTP relay host.
    pub smtp_host: Option<String>,
    /// SMTP relay port.
    pub smtp_port: u16,
    /// regstack's switch: STARTTLS on (true) or plain (false). Overridden by
    /// `smtp_security` when that is set.
    pub smtp_starttls: bool,
    /// `starttls`, `tls` or `plain`; takes precedence over `smtp_starttls`.
    pub smtp_security: Option<SmtpSecurity>,
    /// SMTP user.
    pub smtp_username: Option<String>,
    /// SMTP password.
    pub smtp_password: Option<SecretString>,
    /// Seconds before an SMTP exchange is abandoned.
    pub smtp_timeout_seconds: u64,
    /// Console transport only: log the text body (it holds live links).
    /// `None` means "not set": on in zero-config development mode, off
    /// otherwise (DECISIONS.md §6).
    pub log_bodies: Option<bool>,
    /// At most this many mails to one address per hour (DECISIONS.md §20).
    pub max_per_address_per_hour: u32,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            backend: EmailBackend::Console,
            from_address: "noreply@example.com".into(),
            from_name: None,
            smtp_host: None,
            smtp_port: 587,
            smtp_starttls: true,
            smtp_security: None,
            smtp_username: None,
            smtp_password: None,
            smtp_timeout_seconds: 10,
            log_bodies: None,
            max_per_address_per_hour: 5,
        }
    }
}

impl std::fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailConfig")
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
            .field("log_bodies", &self.log_bodies)
            .finish_non_exhaustive()
    }
}

impl EmailConfig {
    /// The security mode after applying regstack's `smtp_starttls` switch.
    pub fn effective_smtp_security(&self) -> SmtpSecurity {
        match self.smtp_security {
            Some(s) => s,
            None if self.smtp_starttls => SmtpSecurity::Starttls,
            None => SmtpSecurity::Plain,
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
}

impl Default for PasswordConfig {
    fn default() -> Self {
        Self {
            argon2_memory_kib: 65536,
            argon2_iterations: 3,
            argon2_parallelism: 4,
            max_concurrent_hashes: None,
        }
    }
}

/// `[http]`: transport limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest request body accepted; larger gets 413.
    pub body_limit_bytes: usize,
    /// Origins allowed by CORS; empty sends no CORS headers at all.
    pub cors_allowed_origins: Vec<String>,
    /// A request without an answer after this long gets 503 with
    /// `Retry-After` instead of waiting on: a database that accepts
    /// connections but stops answering must not hold clients (and their
    /// connections to us) forever. Sign-ins queued behind the hashing bound
    /// count too, so this also sheds a flood.
    pub request_timeout_seconds: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit_bytes: 65536,
            cors_allowed_origins: Vec::new(),
            request_timeout_seconds: 30,
        }
    }
}

/// `[sessions]`: refresh-token families (DECISIONS.md §5, §7, §8).
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

/// Every setting of a regstack instance.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Product name shown in mail.
    pub app_name: String,
    /// Public origin of the service; every link in mail is built from it,
    /// never from a request's `Host` header.
    pub base_url: String,
    /// Take the client IP from `Forwarded` / `X-Forwarded-For`.
    pub behind_proxy: bool,
    /// Storage location; the scheme picks the backend (`sqlite:`,
    /// `postgres:`/`postgresql:`, `mongodb:`; regstack's
    /// `sqlite+aiosqlite:` and `postgresql+asyncpg:` spellings too).
    pub database_url: SecretString,
    /// MongoDB database used when the URL names none (regstack's key).
    pub mongodb_database: String,
    /// Key material for every token the service signs. At least 32 bytes.
    pub jwt_secret: SecretString,
    /// Signing algorithm for access tokens.
    pub jwt_algorithm: JwtAlgorithm,
    /// Access-token lifetime.
    pub jwt_ttl_seconds: u64,
    /// When set, tokens carry and must present this `aud`.
    pub jwt_audience: Option<String>,
    /// Registration waits for the address to be proven.
    pub require_verification: bool,
    /// Registration is open.
    pub allow_registration: bool,
    /// The forgot/reset routes exist.
    pub enable_password_reset: bool,
    /// `DELETE /account` exists.
    pub enable_account_deletion: bool,
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
    /// Mount point of the account pages (a later issue).
    pub ui_prefix: String,
    /// Path prefix for the links in mail; see [`Config::link_prefix`].
    pub email_link_prefix: Option<String>,
    /// Full URL template of the verification link (`{base_url}`, `{token}`).
    pub verify_url_template: Option<String>,
    /// Full URL template of the reset link.
    pub password_reset_url_template: Option<String>,
    /// Full URL template of the email-change link.
    pub email_change_url_template: Option<String>,
    /// Directories whose templates override the built-in ones.
    pub extra_template_dirs: Vec<String>,
    /// Mail.
    pub email: EmailConfig,
    /// Hashing.
    pub password: PasswordConfig,
    /// Transport limits.
    pub http: HttpConfig,
    /// Sessions and refresh tokens.
    pub sessions: SessionsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            app_name: "RegStack".into(),
            base_url: "http://localhost:8000".into(),
            behind_proxy: false,
            database_url: SecretString::from("sqlite:./regstack.db"),
            mongodb_database: "regstack".into(),
            jwt_secret: SecretString::from(""),
            jwt_algorithm: JwtAlgorithm::HS256,
            jwt_ttl_seconds: 7200,
            jwt_audience: None,
            require_verification: true,
            allow_registration: true,
            enable_password_reset: true,
            enable_account_deletion: true,
            verification_token_ttl_seconds: 86_400,
            password_reset_token_ttl_seconds: 1800,
            email_change_token_ttl_seconds: 3600,
            rate_limit_disabled: false,
            login_lockout_threshold: 5,
            login_lockout_window_seconds: 900,
            api_prefix: "/api/auth".into(),
            ui_prefix: "/account".into(),
            email_link_prefix: None,
            verify_url_template: None,
            password_reset_url_template: None,
            email_change_url_template: None,
            extra_template_dirs: Vec::new(),
            email: EmailConfig::default(),
            password: PasswordConfig::default(),
            http: HttpConfig::default(),
            sessions: SessionsConfig::default(),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("app_name", &self.app_name)
            .field("base_url", &self.base_url)
            .field("database_url", &"[redacted]")
            .field("jwt_secret", &"[redacted]")
            .field("jwt_algorithm", &self.jwt_algorithm)
            .field("jwt_ttl_seconds", &self.jwt_ttl_seconds)
            .field("api_prefix", &self.api_prefix)
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
        if !(60..=60 * 60 * 24 * 30).contains(&self.jwt_ttl_seconds) {
            return Err(ConfigError::new(
                "jwt_ttl_seconds",
                "must be between 60 and 2592000",
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
        for (key, prefix) in [
            ("api_prefix", &self.api_prefix),
            ("ui_prefix", &self.ui_prefix),
        ] {
            if !prefix.starts_with('/') || prefix.ends_with('/') && prefix.len() > 1 {
                return Err(ConfigError::new(
                    key,
                    "must start with `/` and not end with `/` (e.g. /api/auth)",
                ));
            }
        }
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
        if self.http.body_limit_bytes < 1024 {
            return Err(ConfigError::new(
                "http.body_limit_bytes",
                "must be at least 1024",
            ));
        }
        if !(1..=3600).contains(&self.http.request_timeout_seconds) {
            return Err(ConfigError::new(
                "http.request_timeout_seconds",
                "must be between 1 and 3600",
            ));
        }
        for origin in &self.http.cors_allowed_origins {
            check_cors_origin(origin)?;
        }
        if self.email.max_per_address_per_hour < 1 {
            return Err(ConfigError::new(
                "email.max_per_address_per_hour",
                "must be at least 1",
            ));
        }
        if self.email.backend == EmailBackend::Smtp && self.email.smtp_host.is_none() {
            return Err(ConfigError::new(
                "email.smtp_host",
                "is required when email.backend = \"smtp\"",
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

    /// `base_url` without a trailing slash.
    pub fn base(&self) -> &str {
        self.base_url.trim().trim_end_matches('/')
    }

    /// The path prefix for mailed links (regstack's rule): explicit
    /// `email_link_prefix`, else empty so the host routes `/verify` itself.
    pub fn link_prefix(&self) -> &str {
        self.email_link_prefix
            .as_deref()
            .map(|p| p.trim_end_matches('/'))
            .unwrap_or("")
    }

    /// The `From:` header: display name (or `app_name`) and address.
    pub fn from_header(&self) -> String {
        let name = self.email.from_name.as_deref().unwrap_or(&self.app_name);
        format!("{name} <{}>", self.email.from_address)
    }
}

/// A CORS origin must be one exact origin, `scheme://host[:port]`, as a
/// browser sends it in `Origin`. A wildcard would let any site read the
/// API's answers with its users' credentials, and an entry with a path or a
/// trailing slash would never match a real `Origin` and silently allow
/// nothing.
fn check_cors_origin(origin: &str) -> Result<(), ConfigError> {
    let err = |why: &str| {
        Err(ConfigError::new(
            "http.cors_allowed_origins",
            format!("{origin:?}: {why}"),
        ))
    };
    if origin.contains('*') {
        return err(
            "wildcards are not allowed: list each origin that may call the API \
             (e.g. \"https://app.example.com\")",
        );
    }
    let Some((scheme, rest)) = origin.split_once("://") else {
        return err("expected scheme://host[:port], e.g. \"https://app.example.com\"");
    };
    if !(scheme == "https" || scheme == "http") {
        return err("the scheme must be http or https");
    }
    if rest.is_empty()
        || rest.contains('/')
        || rest.contains('?')
        || rest.contains('#')
        || !origin.is_ascii()
        || origin.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return err(
            "an origin is scheme://host[:port] only — no path, no trailing slash, \
             ASCII (punycode for international names)",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_origins_must_be_exact_origins() {
        for good in ["https://app.example.com", "http://localhost:5173"] {
            let mut c = valid();
            c.http.cors_allowed_origins = vec![good.into()];
            assert_eq!(c.validate(), Ok(()), "{good}");
        }
        for bad in [
            "*",
            "https://*.example.com",
            "app.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "ftp://app.example.com",
            "https://",
            "https://bücher.example",
        ] {
            let mut c = valid();
            c.http.cors_allowed_origins = vec![bad.into()];
            let e = c.validate().unwrap_err();
            assert_eq!(e.key, "http.cors_allowed_origins", "{bad}");
            assert!(
                e.reason.contains(bad),
                "the message names the entry: {}",
                e.reason
            );
        }
    }

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
    fn a_short_secret_names_jwt_secret() {
        let c = Config {
            jwt_secret: SecretString::from("x".repeat(31)),
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "jwt_secret");
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
        let mut c = valid();
        c.email.smtp_password = Some(SecretString::from("hunter2-smtp"));
        c.database_url = SecretString::from("postgres://u:dbpass@h/db");
        let shown = format!("{c:?}");
        assert!(!shown.contains("xxxxxxxx"));
        assert!(!shown.contains("hunter2-smtp"));
        assert!(!shown.contains("dbpass"));
    }

    #[test]
    fn regstack_smtp_switch_maps_to_a_security_mode() {
        let mut e = EmailConfig::default();
        assert_eq!(e.effective_smtp_security(), SmtpSecurity::Starttls);
        e.smtp_starttls = false;
        assert_eq!(e.effective_smtp_security(), SmtpSecurity::Plain);
        e.smtp_security = Some(SmtpSecurity::Tls);
        assert_eq!(e.effective_smtp_security(), SmtpSecurity::Tls);
    }
}
