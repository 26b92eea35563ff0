//! [`Settings`]: everything a regstack instance is built from, in the parts
//! each ring reads — `core`'s policy [`Config`], the storage location
//! ([`DatabaseSettings`], this crate's), the mail transport
//! ([`MailTransport`], the notify adapter's) and the HTTP layer's
//! [`HttpSettings`].
//!
//! Each part validates itself, next to the code that uses it; this module
//! only holds them together. The binary gets them by splitting the
//! file-level shape of `regstack.toml` ([`crate::config::FileConfig`]); a
//! host builds them in code, usually starting from a `Config`
//! (`Settings::from(config)` takes every other part's defaults).

use std::sync::Arc;
use std::time::Duration;

use regstack_adapters_notify::{MailTransport, RangeApiScreen, RangeFileScreen, SmsTransport};
use regstack_core::config::BreachCheck;
use regstack_core::{Config, ConfigError};
use regstack_http_axum::HttpSettings;
use regstack_oauth::ProviderConfig;
use regstack_ports::BreachedPasswords;
use secrecy::{ExposeSecret, SecretString};

use crate::parse_database_url;

/// Where accounts are stored: the server's own settings (`database_url`,
/// `mongodb_database` in `regstack.toml`).
#[derive(Clone)]
pub struct DatabaseSettings {
    /// Storage location; the scheme picks the backend (`sqlite:`,
    /// `postgres:`/`postgresql:`, `mongodb:`; regstack's
    /// `sqlite+aiosqlite:` and `postgresql+asyncpg:` spellings too). A
    /// secret: it may carry a password.
    pub url: SecretString,
    /// MongoDB database used when the URL names none (regstack's key).
    pub mongodb_database: String,
}

impl Default for DatabaseSettings {
    /// `sqlite:./regstack.db`, MongoDB database `regstack` (regstack's).
    fn default() -> Self {
        Self {
            url: SecretString::from("sqlite:./regstack.db"),
            mongodb_database: "regstack".into(),
        }
    }
}

impl DatabaseSettings {
    /// Settings for `url`, with the default MongoDB database name.
    pub fn from_url(url: impl Into<String>) -> Self {
        Self {
            url: SecretString::from(url.into()),
            ..Self::default()
        }
    }

    /// Checks that `database_url` names a backend this build has.
    pub fn validate(&self) -> Result<(), ConfigError> {
        parse_database_url(self.url.expose_secret()).map(|_| ())
    }
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &"[redacted]")
            .field("mongodb_database", &self.mongodb_database)
            .finish()
    }
}

/// Everything [`RegStack::builder`](crate::RegStack::builder) needs, by
/// part. `RegStack::builder(config)` takes a bare [`Config`] too: it becomes
/// `Settings::from(config)`.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// What the engine decides with (core).
    pub config: Config,
    /// Where accounts are stored.
    pub database: DatabaseSettings,
    /// How mail leaves; the sender is `config.email`'s.
    pub mail: MailTransport,
    /// Body limit, CORS, request deadline, HSTS.
    pub http: HttpSettings,
    /// How text messages leave (SMS second factors).
    pub sms: SmsTransport,
    /// OAuth sign-in providers.
    pub oauth: OAuthSettings,
    /// Where rate-limit counters live (`rate_limits.backend`).
    pub rate_limit_store: RateLimitStore,
}

/// Where the rate-limit counters — route limits, mail quota, SMS caps —
/// are kept: the accounts database (default), or Redis
/// (`rate_limits.backend = "redis"`, the `regstack-adapters-redis` crate),
/// which takes that write traffic off the database. Either way every
/// instance shares them.
#[derive(Clone, Default)]
pub enum RateLimitStore {
    /// The stores' own `RateLimitStore`.
    #[default]
    Database,
    /// A Redis server.
    Redis {
        /// `redis://…`: a secret, it may carry a password.
        url: SecretString,
    },
}

impl std::fmt::Debug for RateLimitStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Database => f.write_str("Database"),
            Self::Redis { .. } => f.write_str("Redis { url: [redacted] }"),
        }
    }
}

/// OAuth sign-in: whether its routes exist and which providers they offer
/// (the `regstack-oauth` adapter's settings; core's half is
/// `config.oauth`).
#[derive(Debug, Clone, Default)]
pub struct OAuthSettings {
    /// regstack's `enable_oauth`: mount the `/oauth/*` routes (when at
    /// least one provider is configured).
    pub enabled: bool,
    /// The providers, each with its name.
    pub providers: Vec<ProviderConfig>,
}

impl OAuthSettings {
    /// Checks each provider's keys; the error names the key as written.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.providers {
            if !seen.insert(p.name.as_str()) {
                return Err(ConfigError::new(
                    format!("oauth.providers.{}", p.name),
                    "is configured twice (regstack's oauth.google_* keys define `google` too)",
                ));
            }
            let valid_name = !p.name.is_empty()
                && p.name.len() <= 64
                && p.name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                });
            if !valid_name {
                return Err(ConfigError::new(
                    format!("oauth.providers.{}", p.name),
                    "a provider's name is its path segment: 1-64 of a-z, 0-9, `-`, `_`",
                ));
            }
            p.validate()
                .map_err(|e| ConfigError::new(e.key, e.reason))?;
        }
        Ok(())
    }
}

impl From<Config> for Settings {
    fn from(config: Config) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }
}

impl Settings {
    /// Checks every part; the error names the key as written in
    /// `regstack.toml`. (SMTP and SES settings are checked when the mailer is
    /// built, by the adapter.)
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.config.validate()?;
        self.database.validate()?;
        self.oauth.validate()?;
        if let RateLimitStore::Redis { url } = &self.rate_limit_store {
            regstack_adapters_redis::check_url(url.expose_secret())
                .map_err(|reason| ConfigError::new("rate_limits.redis_url", reason))?;
        }
        self.http.validate()?;
        self.breach_screen().map(|_| ())
    }

    /// The breached-password screen `password.breach_check` asks for: none
    /// (`"off"`), the range API at `breach_range_url` (`"range"`), or the
    /// range directory at `breach_file` (`"file"`, which must be readable
    /// now).
    pub fn breach_screen(&self) -> Result<Option<Arc<dyn BreachedPasswords>>, ConfigError> {
        let p = &self.config.password;
        let adapter_error =
            |e: regstack_adapters_notify::TransportConfigError| ConfigError::new(e.key, e.reason);
        Ok(match p.breach_check {
            BreachCheck::Off => None,
            BreachCheck::Range => Some(Arc::new(
                RangeApiScreen::new(
                    &p.breach_range_url,
                    Duration::from_millis(p.breach_timeout_ms),
                )
                .map_err(adapter_error)?,
            )),
            BreachCheck::File => {
                let Some(dir) = &p.breach_file else {
                    return Err(ConfigError::new(
                        "password.breach_file",
                        "must name the range directory when breach_check = \"file\"",
                    ));
                };
                Some(Arc::new(RangeFileScreen::new(dir).map_err(adapter_error)?))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_is_never_shown() {
        let d = DatabaseSettings::from_url("postgres://u:dbpass@h/db");
        assert!(!format!("{d:?}").contains("dbpass"));
    }

    #[test]
    fn the_database_part_names_its_key() {
        assert_eq!(DatabaseSettings::default().validate(), Ok(()));
        assert_eq!(
            DatabaseSettings::from_url("mysql://x")
                .validate()
                .unwrap_err()
                .key,
            "database_url"
        );
    }

    #[test]
    fn every_part_is_validated() {
        let valid = Settings::from(Config {
            jwt_secret: "x".repeat(32).into(),
            ..Config::default()
        });
        assert_eq!(valid.validate(), Ok(()));
        let mut s = valid.clone();
        s.http.body_limit_bytes = 10;
        assert_eq!(s.validate().unwrap_err().key, "http.body_limit_bytes");
        let mut s = valid.clone();
        s.database = DatabaseSettings::from_url("ftp://x");
        assert_eq!(s.validate().unwrap_err().key, "database_url");
        let mut s = valid;
        s.config.jwt_secret = "short".into();
        assert_eq!(s.validate().unwrap_err().key, "jwt_secret");
    }

    #[test]
    fn the_breach_screen_is_built_from_its_keys_and_checked_up_front() {
        let valid = Settings::from(Config {
            jwt_secret: "x".repeat(32).into(),
            ..Config::default()
        });
        assert!(valid.breach_screen().unwrap().is_none(), "off by default");
        let mut s = valid.clone();
        s.config.password.breach_check = BreachCheck::Range;
        assert!(s.breach_screen().unwrap().is_some());
        s.config.password.breach_range_url = "ftp://ranges.test".into();
        assert_eq!(s.validate().unwrap_err().key, "password.breach_range_url");
        let mut s = valid.clone();
        s.config.password.breach_check = BreachCheck::File;
        assert_eq!(s.validate().unwrap_err().key, "password.breach_file");
        s.config.password.breach_file = Some("/nonexistent/ranges".into());
        let e = s.validate().unwrap_err();
        assert_eq!(e.key, "password.breach_file");
        assert!(e.to_string().contains("/nonexistent/ranges"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        s.config.password.breach_file = Some(dir.path().to_owned());
        assert_eq!(s.validate(), Ok(()));
    }
}
