//! Loading `regstack.toml` and `REGSTACK_*` variables into a validated
//! [`Config`], with regstack's key names (DECISIONS.md §4–§6).
//!
//! Order, lowest first: built-in defaults, the TOML file (`--config`, else
//! `$REGSTACK_CONFIG`, else `./regstack.toml` when present), then
//! environment variables (`REGSTACK_EMAIL__SMTP_HOST` → `email.smtp_host`).
//! A key regstack 0.9.3 knows but we do not implement yet is accepted with
//! a warning; a key neither knows stops start-up naming the key.

use std::path::{Path, PathBuf};

use figment::providers::{Format, Toml};
use figment::value::{Dict, Value};
use figment::Figment;
use regstack_core::{Config, ConfigError};

/// Top-level keys regstack 0.9.3 defines that this build does not
/// implement yet: accepted, warned about, ignored.
const REGSTACK_ONLY_KEYS: &[&str] = &[
    "user_collection",
    "pending_collection",
    "blacklist_collection",
    "login_attempt_collection",
    "mfa_code_collection",
    "oauth_identity_collection",
    "oauth_state_collection",
    "sms_code_length",
    "sms_code_ttl_seconds",
    "sms_code_max_attempts",
    "mfa_pending_token_ttl_seconds",
    "enable_admin_router",
    "enable_ui_router",
    "enable_sms_2fa",
    "enable_oauth",
    "login_rate_limit",
    "login_mfa_confirm_rate_limit",
    "register_rate_limit",
    "forgot_password_rate_limit",
    "reset_password_rate_limit",
    "verify_rate_limit",
    "resend_verification_rate_limit",
    "change_password_rate_limit",
    "change_email_rate_limit",
    "confirm_email_change_rate_limit",
    "delete_account_rate_limit",
    "oauth_exchange_rate_limit",
    "phone_start_rate_limit",
    "phone_confirm_rate_limit",
    "phone_disable_rate_limit",
    "sms",
    "oauth",
    "brand_logo_url",
    "brand_tagline",
    "extra_static_dirs",
    "static_prefix",
    "theme_css_url",
];

/// `[email]` keys regstack defines for its SES backend.
const REGSTACK_ONLY_EMAIL_KEYS: &[&str] = &[
    "ses_region",
    "ses_profile",
    "ses_access_key_id",
    "ses_secret_access_key",
];

/// A configuration ready to run, and how it came about.
#[derive(Debug)]
pub struct Loaded {
    /// The settings (not yet validated: the facade validates).
    pub config: Config,
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
    /// Writing the development secret failed.
    #[error("development secret {path}: {reason}")]
    Secret {
        /// Path.
        path: PathBuf,
        /// I/O message.
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
    if let Some(path) = &file {
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(figment::providers::Serialized::defaults(env_dict(&env)));
    let dict: Dict = figment.extract().map_err(|e| match &file {
        Some(path) => LoadError::File {
            path: path.clone(),
            reason: e.to_string(),
        },
        None => LoadError::Invalid(ConfigError::new("environment", e.to_string())),
    })?;
    let (config, warnings) = from_dict(dict)?;
    Ok(Loaded {
        config,
        development_mode,
        file,
        warnings,
    })
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

/// Turns raw key/values into a [`Config`], applying the unknown-key rules.
pub fn from_dict(mut dict: Dict) -> Result<(Config, Vec<String>), ConfigError> {
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
    for key in REGSTACK_ONLY_KEYS {
        if dict.remove(*key).is_some() {
            warnings.push(format!("`{key}` is a regstack setting this version accepts but does not support yet; it is ignored"));
        }
    }
    if let Some(Value::Dict(_, email)) = dict.get_mut("email") {
        if let Some(Value::String(_, backend)) = email.get("backend") {
            if backend == "ses" {
                return Err(ConfigError::new(
                    "email.backend",
                    "\"ses\" is not supported yet; use \"smtp\" or \"console\"",
                ));
            }
        }
        for key in REGSTACK_ONLY_EMAIL_KEYS {
            if email.remove(*key).is_some() {
                warnings.push(format!("`email.{key}` is a regstack setting this version accepts but does not support yet; it is ignored"));
            }
        }
    }
    let config: Config = Figment::from(figment::providers::Serialized::defaults(dict))
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
    Ok((config, warnings))
}

/// Where the development secret lives: beside the SQLite file.
pub fn secret_path(database_file: &Path) -> PathBuf {
    database_file.with_file_name(".regstack-secret")
}

/// Reads the development secret, generating it (0600) on first use.
pub fn development_secret(path: &Path) -> Result<String, LoadError> {
    let fail = |e: std::io::Error| LoadError::Secret {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    if let Ok(existing) = std::fs::read_to_string(path) {
        let s = existing.trim().to_owned();
        if s.len() >= regstack_core::config::MIN_JWT_SECRET_BYTES {
            return Ok(s);
        }
    }
    use base64::Engine as _;
    use rand::RngCore;
    let mut bytes = [0u8; 48];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    let mut f = opts.open(path).map_err(fail)?;
    f.write_all(secret.as_bytes()).map_err(fail)?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict(toml_src: &str) -> Dict {
        Figment::from(Toml::string(toml_src)).extract().unwrap()
    }

    #[test]
    fn regstack_keys_we_lack_warn_and_unknown_keys_fail_naming_the_key() {
        let (c, w) = from_dict(dict(
            "app_name = \"Acme\"\nenable_oauth = true\n[email]\nses_region = \"x\"\n",
        ))
        .unwrap();
        assert_eq!(c.app_name, "Acme");
        assert_eq!(w.len(), 2);
        let err = from_dict(dict("app_nam = \"Acme\"")).unwrap_err();
        assert!(err.reason.contains("app_nam"), "{err}");
        let err = from_dict(dict("[email]\nsmtp_hots = \"x\"")).unwrap_err();
        assert!(err.to_string().contains("smtp_hots"), "{err}");
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

    #[test]
    fn the_development_secret_is_generated_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = secret_path(&dir.path().join("regstack.db"));
        let a = development_secret(&path).unwrap();
        let b = development_secret(&path).unwrap();
        assert_eq!(a, b);
        assert!(a.len() >= 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }
}
