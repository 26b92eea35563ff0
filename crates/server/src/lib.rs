//! regstack-rs for hosts: build a [`RegStack`] from a [`Config`], mount
//! [`RegStack::router`] in your axum app, protect your own handlers with
//! [`CurrentUser`]. Also the `regstack` binary's wiring.
//!
//! This is the only crate that knows every ring of the hexagon: it turns
//! [`Settings`] — core's policy [`Config`], the [`DatabaseSettings`], the
//! notify adapter's [`MailTransport`], the HTTP layer's [`HttpSettings`] —
//! into adapters (stores, console, SMTP or SES mail), hands them to `core`'s
//! engine through the ports, and puts the HTTP layer in front. Hosts may
//! pass their own stores, mailer, clock or hasher instead. `config.rs` reads
//! `regstack.toml` and `REGSTACK_*` and splits them into those parts;
//! `development.rs` guards the binary's zero-config development mode (its
//! generated secret file, loopback only unless `serve --dev`).
//!
//! ```no_run
//! # async fn host() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{routing::get, Router};
//! use regstack::{Config, CurrentUser, RegStack};
//!
//! let rs = RegStack::builder(Config { jwt_secret: "…at least 32 bytes of secret…".into(), ..Config::default() })
//!     .database_url("sqlite:./app.db")
//!     .build()
//!     .await?;
//! let app = Router::new()
//!     .route("/hello", get(|u: CurrentUser| async move { format!("hi {}", u.user.email) }))
//!     .layer(rs.auth_layer())
//!     .merge(rs.router());
//! # let _ = app; Ok(()) }
//! ```

pub mod config;
pub mod development;
pub mod keys;
pub mod metrics;
#[cfg(feature = "otel")]
pub mod otel;
pub mod settings;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Json, Router};
use regstack_adapters_notify::{MailConfigError, SmsTransport, SmtpConfigError};
use regstack_core::engine::{OAuthProvider, OAuthProviders};
use regstack_core::password::Argon2Hasher;
use regstack_core::{ConfigError, Deps, Engine, EngineError, EventBus};
use regstack_ports::{
    BreachedPasswords, Clock, Mailer, PasswordHasher, SmsSender, Stores, SystemClock,
};
use secrecy::ExposeSecret;
use serde_json::json;

pub use metrics::Metrics;
pub use regstack_adapters_notify::{
    AwsCredentials, MailTransport, SesSettings, SmtpSecurity, SmtpSettings,
};
pub use regstack_core::{Config, Event, EventKind};
pub use regstack_http_axum::{CurrentUser, HttpSettings, RouteLimits};
pub use regstack_oauth::{ProviderConfig, ProviderKind};
pub use settings::{DatabaseSettings, OAuthSettings, RateLimitStore, Settings};

/// Building a [`RegStack`] failed; the message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Configuration or templates.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A configuration value (also database URL and mail settings).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Database(#[from] regstack_ports::StoreError),
    /// The Redis server of `rate_limits.redis_url` could not be reached.
    #[error("rate_limits.redis_url: {0}")]
    RateLimitStore(#[source] regstack_ports::StoreError),
    /// A template directory could not be read.
    #[error("template directory {path}: {reason}")]
    Templates {
        /// Directory.
        path: String,
        /// I/O message.
        reason: String,
    },
}

/// The storage backend a `database_url` selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// SQLite; `file` is `None` for in-memory databases.
    Sqlite {
        /// The URL as given.
        url: String,
        /// The database file.
        file: Option<PathBuf>,
    },
    /// PostgreSQL.
    Postgres {
        /// The URL as given.
        url: String,
    },
    /// MongoDB.
    Mongo {
        /// The URL as given.
        url: String,
    },
}

/// Chooses the backend by URL scheme (regstack's SQLAlchemy spellings
/// accepted).
pub fn parse_database_url(url: &str) -> Result<Backend, regstack_core::ConfigError> {
    let err = |why: &str| regstack_core::ConfigError::new("database_url", why);
    if url.trim_start().starts_with("sqlite") {
        // The adapter's parser, so the file placed beside the database is
        // the file the adapter opens.
        let file = regstack_adapters_sql::sqlite::database_file(url)
            .map_err(|e| regstack_core::ConfigError::new("database_url", e.to_string()))?;
        return Ok(Backend::Sqlite {
            url: url.to_owned(),
            file,
        });
    }
    let scheme = url.split(':').next().unwrap_or("");
    match scheme {
        "postgres" | "postgresql" | "postgresql+asyncpg" => Ok(Backend::Postgres {
            url: url.to_owned(),
        }),
        "mongodb" | "mongodb+srv" => Ok(Backend::Mongo {
            url: url.to_owned(),
        }),
        _ => Err(err(
            "unsupported scheme: use sqlite:PATH, postgres://… or mongodb://…",
        )),
    }
}

/// Assembles a [`RegStack`]; every part has a default built from the
/// settings.
pub struct RegStackBuilder {
    settings: Settings,
    stores: Option<Stores>,
    mailer: Option<Arc<dyn Mailer>>,
    sms: Option<Arc<dyn SmsSender>>,
    clock: Option<Arc<dyn Clock>>,
    hasher: Option<Arc<dyn PasswordHasher>>,
    breach: Option<Arc<dyn BreachedPasswords>>,
    events: EventBus,
}

impl RegStackBuilder {
    /// Store accounts here (default `sqlite:./regstack.db`); ignored when
    /// [`stores`](Self::stores) are given.
    pub fn database(mut self, database: DatabaseSettings) -> Self {
        self.settings.database = database;
        self
    }
    /// Store accounts at `url` (`sqlite:…`, `postgres://…`, `mongodb://…`).
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.settings.database.url = url.into().into();
        self
    }
    /// Deliver mail this way (default: the console, bodies not logged);
    /// ignored when a [`mailer`](Self::mailer) is given.
    pub fn mail_transport(mut self, transport: MailTransport) -> Self {
        self.settings.mail = transport;
        self
    }
    /// Body limit, CORS origins, request deadline and HSTS of
    /// [`RegStack::router`] (default [`HttpSettings::default`]).
    pub fn http(mut self, http: HttpSettings) -> Self {
        self.settings.http = http;
        self
    }
    /// Use these stores instead of opening `database_url` (a host's own
    /// pool: `regstack_adapters_sql::sqlite::stores(pool)`).
    pub fn stores(mut self, stores: Stores) -> Self {
        self.stores = Some(stores);
        self
    }
    /// Use this mail transport instead of the configured one.
    pub fn mailer(mut self, mailer: Arc<dyn Mailer>) -> Self {
        self.mailer = Some(mailer);
        self
    }
    /// Send texts this way instead of the configured transport.
    pub fn sms(mut self, sms: Arc<dyn SmsSender>) -> Self {
        self.sms = Some(sms);
        self
    }
    /// Send texts through this transport (default: the null transport,
    /// which logs the recipient only); ignored when [`sms`](Self::sms) is
    /// given.
    pub fn sms_transport(mut self, transport: SmsTransport) -> Self {
        self.settings.sms = transport;
        self
    }
    /// Use this clock (tests freeze time with it).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }
    /// Use this password hasher (tests count verifications with it).
    pub fn hasher(mut self, hasher: Arc<dyn PasswordHasher>) -> Self {
        self.hasher = Some(hasher);
        self
    }
    /// Screen new passwords with this breach corpus instead of the one
    /// `password.breach_check` configures.
    pub fn breach_screen(mut self, screen: Arc<dyn BreachedPasswords>) -> Self {
        self.breach = Some(screen);
        self
    }
    /// Use this event bus (subscribe before building, or after through
    /// [`RegStack::events`]).
    pub fn events(mut self, events: EventBus) -> Self {
        self.events = events;
        self
    }

    /// Checks every part of the settings, builds the mailer, opens storage
    /// (migrating it) and builds the engine. A bad setting, SMTP or SES included,
    /// fails before the database is touched.
    pub async fn build(self) -> Result<RegStack, BuildError> {
        self.settings.validate()?;
        let breach = match self.breach {
            Some(b) => Some(b),
            None => self.settings.breach_screen()?,
        };
        let Settings {
            config,
            database,
            mail,
            http,
            sms,
            oauth,
            rate_limit_store,
        } = self.settings;
        // The pages' template overrides are read and checked before
        // anything is opened: a broken one stops start-up naming it.
        let mut http = http;
        if config.enable_ui_router {
            let read = http.pages.read_template_overrides()?;
            http.pages.template_overrides.extend(read);
            regstack_http_axum::pages::check_templates(&config, &http.pages)?;
        }
        let sms = match self.sms {
            Some(s) => s,
            None => sms
                .sender()
                .map_err(|e| ConfigError::new(e.key, e.reason))?,
        };
        let mailer = match self.mailer {
            Some(m) => m,
            None => mail
                .mailer(&config.from_header())
                .map_err(mail_config_error)?,
        };
        let (stores, opened) = match self.stores {
            Some(s) => (s, None),
            None => {
                let (stores, opened) =
                    open_database(database.url.expose_secret(), &database.mongodb_database).await?;
                (stores, Some(opened))
            }
        };
        let metrics = Metrics::new();
        let mut stores = stores;
        if let RateLimitStore::Redis { url } = &rate_limit_store {
            stores.rate_limits = Arc::new(
                regstack_adapters_redis::RedisRateLimits::connect(url.expose_secret(), "regstack")
                    .await
                    .map_err(BuildError::RateLimitStore)?,
            );
        }
        let hasher: Arc<dyn PasswordHasher> = match self.hasher {
            Some(h) => h,
            None => {
                let argon2 = Arc::new(
                    Argon2Hasher::new(&config.password)
                        .map_err(|e| ConfigError::new("password", e.to_string()))?,
                );
                metrics.watch_hasher(argon2.clone());
                argon2
            }
        };
        let (hasher, mailer, sms) = (
            metrics.hasher(hasher),
            metrics.mailer(mailer),
            metrics.sms(sms),
        );
        metrics.subscribe(&self.events);
        let template_overrides = read_template_overrides(&config.extra_template_dirs)?;
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let providers = oauth_providers(&oauth, &config, &http, &clock)?;
        let engine = Engine::new(
            config,
            Deps {
                stores,
                hasher,
                clock,
                mailer,
                sms,
                events: self.events,
                template_overrides,
            },
        )?
        .with_oauth_providers(providers);
        let engine = match breach {
            Some(b) => engine.with_breach_screen(b),
            None => engine,
        };
        Ok(RegStack {
            engine: Arc::new(engine),
            http: Arc::new(http),
            opened,
            metrics,
        })
    }
}

/// The OAuth providers the engine signs in with: none unless
/// `enable_oauth`. Each one's callback URL is the one registered with the
/// provider — its `redirect_uri`, else built from `base_url` and the API's
/// mount point — never anything a request says: a `Host` header an attacker
/// chose must not change where the provider sends the user's code.
fn oauth_providers(
    oauth: &OAuthSettings,
    config: &Config,
    http: &HttpSettings,
    clock: &Arc<dyn Clock>,
) -> Result<OAuthProviders, ConfigError> {
    let mut out = OAuthProviders::new();
    if !oauth.enabled {
        if !oauth.providers.is_empty() {
            tracing::warn!(
                "OAuth providers are configured but enable_oauth is off: no /oauth routes"
            );
        }
        return Ok(out);
    }
    if oauth.providers.is_empty() {
        tracing::warn!("enable_oauth is on but no provider is configured: no /oauth routes");
        return Ok(out);
    }
    let client = regstack_oauth::HttpClient::new(regstack_oauth::DEFAULT_TIMEOUT)
        .map_err(|e| ConfigError::new(e.key, e.reason))?;
    for p in &oauth.providers {
        let provider = regstack_oauth::build(p, clock.clone(), client.clone())
            .map_err(|e| ConfigError::new(e.key, e.reason))?;
        let redirect_uri = p.redirect_uri.clone().unwrap_or_else(|| {
            format!(
                "{}{}/oauth/{}/callback",
                config.base(),
                http.api_prefix.trim_end_matches('/'),
                p.name
            )
        });
        out.insert(
            p.name.clone(),
            OAuthProvider {
                provider,
                redirect_uri,
            },
        );
    }
    Ok(out)
}

/// Opens and migrates the stores a `database_url` names (`mongo_db`: the
/// MongoDB database when the URL names none). The connections stay open
/// until the stores are dropped; [`RegStack::builder`] keeps hold of them
/// instead, so that [`RegStack::shutdown`] can close them.
pub async fn open_stores(url: &str, mongo_db: &str) -> Result<Stores, BuildError> {
    Ok(open_database(url, mongo_db).await?.0)
}

/// A database connection the builder opened itself (rather than stores a
/// host passed in), kept so that [`RegStack::shutdown`] can close it.
#[derive(Clone)]
enum OpenedDatabase {
    Sqlite(regstack_adapters_sql::sqlite::SqlitePool),
    Postgres(regstack_adapters_sql::postgres::PgPool),
    Mongo(regstack_adapters_mongo::Database),
}

impl OpenedDatabase {
    async fn close(&self) {
        match self {
            OpenedDatabase::Sqlite(pool) => regstack_adapters_sql::sqlite::close(pool).await,
            OpenedDatabase::Postgres(pool) => regstack_adapters_sql::postgres::close(pool).await,
            OpenedDatabase::Mongo(db) => regstack_adapters_mongo::close(db).await,
        }
    }
}

/// [`open_stores`], also handing back the connection to close at shutdown.
async fn open_database(url: &str, mongo_db: &str) -> Result<(Stores, OpenedDatabase), BuildError> {
    match parse_database_url(url)? {
        Backend::Sqlite { url, .. } => {
            let pool = regstack_adapters_sql::sqlite::connect(&url).await?;
            regstack_adapters_sql::sqlite::migrate(&pool).await?;
            Ok((
                regstack_adapters_sql::sqlite::stores(pool.clone()),
                OpenedDatabase::Sqlite(pool),
            ))
        }
        Backend::Postgres { url } => {
            let pool = regstack_adapters_sql::postgres::connect(&url).await?;
            regstack_adapters_sql::postgres::migrate(&pool).await?;
            Ok((
                regstack_adapters_sql::postgres::stores(pool.clone()),
                OpenedDatabase::Postgres(pool),
            ))
        }
        Backend::Mongo { url } => {
            let db = regstack_adapters_mongo::connect(&url, mongo_db).await?;
            regstack_adapters_mongo::migrate(&db).await?;
            Ok((
                regstack_adapters_mongo::stores(db.clone()),
                OpenedDatabase::Mongo(db),
            ))
        }
    }
}

/// Resolves when the process is asked to stop — Ctrl-C (SIGINT) or, on
/// Unix, SIGTERM (what service managers and `docker stop` send) — and logs
/// that requests in flight are being finished. Hand it to
/// `axum::serve(…).with_graceful_shutdown`, then await
/// [`RegStack::shutdown`]: the `regstack` binary and the host example stop
/// this way.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            // No SIGTERM handler: Ctrl-C still stops the server gracefully.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing requests in flight");
}

/// The adapter's refusal of the mail settings or the sender, named by the
/// `regstack.toml` key an operator would change (SES names its own).
fn mail_config_error(e: MailConfigError) -> ConfigError {
    let e = match e {
        MailConfigError::Smtp(e) => e,
        MailConfigError::Ses(e) => return ConfigError::new(e.key, e.reason),
    };
    let key = match e {
        SmtpConfigError::MissingHost => "email.smtp_host",
        SmtpConfigError::ZeroPort => "email.smtp_port",
        SmtpConfigError::ZeroTimeout => "email.smtp_timeout_seconds",
        SmtpConfigError::IncompleteCredentials => "email.smtp_username",
        SmtpConfigError::CredentialsWithoutTls { .. } => "email.smtp_security",
        SmtpConfigError::InvalidFrom { .. } | SmtpConfigError::Tls(_) => "email",
    };
    ConfigError::new(key, e.to_string())
}

fn read_template_overrides(dirs: &[String]) -> Result<HashMap<String, String>, BuildError> {
    let mut out = HashMap::new();
    for dir in dirs {
        let meta = std::fs::metadata(dir).map_err(|e| BuildError::Templates {
            path: dir.clone(),
            reason: e.to_string(),
        })?;
        if !meta.is_dir() {
            return Err(BuildError::Templates {
                path: dir.clone(),
                reason: "not a directory".into(),
            });
        }
        // Later directories win over earlier ones, as in regstack.
        for name in regstack_core::mail::template_names() {
            let path = std::path::Path::new(dir).join(name);
            if path.exists() {
                let src = std::fs::read_to_string(&path).map_err(|e| BuildError::Templates {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                out.insert(name.to_owned(), src);
            }
        }
    }
    Ok(out)
}

/// A running regstack: the engine plus ways to mount it.
#[derive(Clone)]
pub struct RegStack {
    engine: Arc<Engine>,
    http: Arc<HttpSettings>,
    /// The connection [`RegStack::shutdown`] closes: `None` when the host
    /// handed in its own stores, whose pool is the host's to close.
    opened: Option<OpenedDatabase>,
    metrics: Metrics,
}

impl std::fmt::Debug for RegStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegStack")
            .field("engine", &self.engine)
            .field("http", &self.http)
            .finish()
    }
}

impl RegStack {
    /// Starts assembling an instance from its settings: a bare policy
    /// [`Config`] (every other part at its default, changed with the
    /// builder's methods) or whole [`Settings`] (as the binary reads them).
    pub fn builder(settings: impl Into<Settings>) -> RegStackBuilder {
        RegStackBuilder {
            settings: settings.into(),
            stores: None,
            mailer: None,
            sms: None,
            clock: None,
            hasher: None,
            breach: None,
            events: EventBus::default(),
        }
    }

    /// Writes the audit entries still queued, then closes the database
    /// connection the builder opened, once the HTTP
    /// server has finished its graceful shutdown (requests after this get
    /// 503). For SQLite this leaves the database as one file: the
    /// write-ahead log is checkpointed into it and `…-wal` and `…-shm` are
    /// removed, so a stopped server can be copied or backed up as
    /// `regstack.db` alone. PostgreSQL and MongoDB connections are closed
    /// rather than dropped with the process. Stores a host passed to
    /// [`RegStackBuilder::stores`] are left open: their pool is the host's.
    pub async fn shutdown(&self) {
        // The audit entries of the last requests first, while the database
        // is still open.
        if let Some(audit) = self.engine.audit_log() {
            audit.flush(Duration::from_secs(5)).await;
        }
        if let Some(db) = &self.opened {
            db.close().await;
        }
    }

    /// The JSON API at `api_prefix`; merge it into your router. Its
    /// requests are timed into `regstack_http_request_duration_seconds`.
    pub fn router(&self) -> Router {
        self.metrics
            .instrument(regstack_http_axum::router(self.engine.clone(), &self.http))
    }

    /// `GET /metrics`: this instance's Prometheus metrics (see the README's
    /// Observability section). Mount it where the public cannot reach it —
    /// a listener of its own, or behind the host's own guard — since it
    /// tells how many sign-ins fail and why.
    pub fn metrics_router(&self) -> Router {
        self.metrics.router()
    }

    /// This instance's metrics: to render them elsewhere, or to time a
    /// host's own routes with [`Metrics::instrument`].
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Makes [`CurrentUser`] work on your own routes.
    pub fn auth_layer(&self) -> Extension<Arc<Engine>> {
        regstack_http_axum::auth_layer(self.engine.clone())
    }

    /// `GET /.well-known/jwks.json` alone, for a host that nests
    /// [`Self::router`] under a path of its own: mount this at the host's
    /// root (`router()` already includes it). Empty with an HMAC
    /// `jwt_algorithm`. See [`regstack_http_axum::jwks_router`].
    pub fn jwks_router(&self) -> Router {
        regstack_http_axum::jwks_router(&self.engine)
    }

    /// `GET /healthz` (alive, no I/O) and `GET /readyz` (storage reachable
    /// and migrated), for the standalone server or a host's probes.
    pub fn health_router(&self) -> Router {
        let engine = self.engine.clone();
        Router::new()
            .route(
                "/healthz",
                get(|| async { Json(json!({ "status": "ok" })) }),
            )
            .route(
                "/readyz",
                get(move || {
                    let engine = engine.clone();
                    async move {
                        let health = &engine.stores().health;
                        let ready = health.ping().await.is_ok()
                            && health.schema_is_current().await.unwrap_or(false);
                        if ready {
                            (StatusCode::OK, Json(json!({ "status": "ready" }))).into_response()
                        } else {
                            (
                                StatusCode::SERVICE_UNAVAILABLE,
                                Json(json!({ "status": "unavailable" })),
                            )
                                .into_response()
                        }
                    }
                }),
            )
    }

    /// The engine, for hosts that call flows directly.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Subscribe to events here.
    pub fn events(&self) -> &EventBus {
        self.engine.events()
    }

    /// Purges expired rows every `every` until the runtime stops. Only
    /// housekeeping: reads never trust a row past its expiry anyway, so a
    /// late purge keeps rows longer but never lets an expired one work.
    pub fn spawn_housekeeping(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let engine = self.engine.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match engine.purge_expired().await {
                    Ok(r) => tracing::debug!(?r, "expired rows purged"),
                    Err(e) => tracing::warn!(error = %e, "purge of expired rows failed"),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Config {
        Config {
            jwt_secret: "x".repeat(32).into(),
            ..Config::default()
        }
    }

    fn config_key(r: Result<RegStack, BuildError>) -> String {
        match r {
            Err(BuildError::Config(e)) => e.key,
            Err(other) => panic!("not a configuration error: {other}"),
            Ok(_) => panic!("built"),
        }
    }

    #[tokio::test]
    async fn every_part_is_checked_before_the_database_is_touched() {
        // Each of these would open `sqlite:./regstack.db` if it got that far.
        let http = HttpSettings {
            request_timeout_seconds: 0,
            ..HttpSettings::default()
        };
        let r = RegStack::builder(valid()).http(http).build().await;
        assert_eq!(config_key(r), "http.request_timeout_seconds");
        let r = RegStack::builder(valid())
            .database_url("mysql://db/x")
            .build()
            .await;
        assert_eq!(config_key(r), "database_url");
        let r = RegStack::builder(valid())
            .mail_transport(MailTransport::Smtp(SmtpSettings::new(" ")))
            .build()
            .await;
        assert_eq!(config_key(r), "email.smtp_host");
        let r = RegStack::builder(valid())
            .mail_transport(MailTransport::Ses(SesSettings {
                credentials: AwsCredentials::Profile("regstack-no-such-profile".into()),
                ..SesSettings::new()
            }))
            .build()
            .await;
        assert_eq!(config_key(r), "email.ses_profile");
        let r = RegStack::builder(Config::default()).build().await;
        assert_eq!(config_key(r), "jwt_secret");
    }

    #[test]
    fn smtp_refusals_name_the_key_to_change() {
        let key = |e| mail_config_error(MailConfigError::Smtp(e)).key;
        assert_eq!(key(SmtpConfigError::MissingHost), "email.smtp_host");
        assert_eq!(key(SmtpConfigError::ZeroPort), "email.smtp_port");
        assert_eq!(
            key(SmtpConfigError::IncompleteCredentials),
            "email.smtp_username"
        );
        assert_eq!(
            key(SmtpConfigError::CredentialsWithoutTls { host: "h".into() }),
            "email.smtp_security"
        );
    }

    #[test]
    fn database_urls_pick_the_backend_and_file() {
        let file = |u: &str| match parse_database_url(u).unwrap() {
            Backend::Sqlite { file, .. } => file,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            file("sqlite:./regstack.db"),
            Some(PathBuf::from("./regstack.db"))
        );
        assert_eq!(
            file("sqlite+aiosqlite:///./regstack.db"),
            Some(PathBuf::from("./regstack.db"))
        );
        assert_eq!(
            file("sqlite+aiosqlite:////var/lib/rs.db"),
            Some(PathBuf::from("/var/lib/rs.db"))
        );
        // sqlx's reading: three slashes are an absolute path (the parser
        // here once read it as relative).
        assert_eq!(
            file("sqlite:///var/lib/rs.db"),
            Some(PathBuf::from("/var/lib/rs.db"))
        );
        assert_eq!(file("sqlite::memory:"), None);
        assert!(parse_database_url("sqlite:").is_err(), "no file named");
        assert_eq!(
            parse_database_url("mysql://x").unwrap_err().key,
            "database_url"
        );
    }
}
