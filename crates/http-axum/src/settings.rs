//! The HTTP layer's own settings — where the API is mounted, whether to
//! trust a proxy's client-IP headers, the route limits, and `[http]`: body
//! limit, CORS origins, the per-request deadline, HSTS and the trusted
//! proxy hops — and their validation.
//!
//! They live here, next to [`router`](crate::router) which applies them,
//! rather than in `core`'s policy `Config`: the engine decides nothing with
//! them. The server reads them from `regstack.toml`'s `[http]` table (this
//! type is that table: same keys, same defaults) and hands them to the
//! router; a host building in code passes [`HttpSettings::default`] or its
//! own.

use regstack_core::ConfigError;
use serde::Deserialize;

/// `[http]`: transport limits and CORS; plus two top-level keys of
/// `regstack.toml` that only the HTTP layer reads (`api_prefix`,
/// `behind_proxy`: regstack's names and places, so they are not part of the
/// `[http]` table — the server fills them in).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Mount point of the JSON API (top-level `api_prefix`).
    #[serde(skip)]
    pub api_prefix: String,
    /// Take the client IP from `Forwarded` / `X-Forwarded-For` (top-level
    /// `behind_proxy`); otherwise the socket address.
    #[serde(skip)]
    pub behind_proxy: bool,
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
    /// Send `Strict-Transport-Security: max-age=…` on every response, so
    /// browsers use only HTTPS for this host from then on. Off by default:
    /// the server itself speaks plain HTTP, and
    /// only the operator knows that it is reached over HTTPS alone (behind
    /// a TLS-terminating proxy); a browser that got the header cannot reach
    /// the host over HTTP until `max-age` has passed.
    pub hsts: bool,
    /// The header's `max-age` in seconds (default 31536000, one year);
    /// only sent with `hsts = true`. 0 tells browsers to forget an earlier
    /// header.
    pub hsts_max_age_seconds: u64,
    /// With `behind_proxy`: how many reverse proxies of ours stand in
    /// front of the service, each appending to `X-Forwarded-For`. The
    /// client IP is that many entries from the right; entries further left
    /// are what the client (or anyone before our proxies) claimed, and are
    /// never read (see [`TrustProxy`](crate::TrustProxy)). Default 1.
    /// Ignored without `behind_proxy`, when the headers are not read at all.
    pub trusted_proxy_hops: usize,
    /// Per-route request limits (`[rate_limits]` and regstack's
    /// `*_rate_limit` keys, which the server fills in); applied unless
    /// `rate_limit_disabled`.
    #[serde(skip)]
    pub route_limits: crate::RouteLimits,
    /// The account pages' looks (regstack's top-level `brand_*`,
    /// `static_prefix`, `theme_css_url`, `extra_static_dirs` and our
    /// `[ui]`, which the server fills in).
    #[serde(skip)]
    pub pages: crate::PageSettings,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            api_prefix: "/api/auth".into(),
            behind_proxy: false,
            body_limit_bytes: 65536,
            cors_allowed_origins: Vec::new(),
            request_timeout_seconds: 30,
            hsts: false,
            hsts_max_age_seconds: 31_536_000,
            trusted_proxy_hops: 1,
            route_limits: crate::RouteLimits::default(),
            pages: crate::PageSettings::default(),
        }
    }
}

impl HttpSettings {
    /// Checks every value before the service starts; the error names the
    /// key as written in `regstack.toml` (`http.…`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        regstack_core::config::check_prefix("api_prefix", &self.api_prefix)?;
        if self.body_limit_bytes < 1024 {
            return Err(ConfigError::new(
                "http.body_limit_bytes",
                "must be at least 1024",
            ));
        }
        if !(1..=3600).contains(&self.request_timeout_seconds) {
            return Err(ConfigError::new(
                "http.request_timeout_seconds",
                "must be between 1 and 3600",
            ));
        }
        for origin in &self.cors_allowed_origins {
            check_cors_origin(origin)?;
        }
        if !(1..=16).contains(&self.trusted_proxy_hops) {
            return Err(ConfigError::new(
                "http.trusted_proxy_hops",
                "must be between 1 and 16 (the reverse proxies in front of the service; \
                 set behind_proxy = false when there is none)",
            ));
        }
        self.pages.validate()?;
        self.route_limits.validate()
    }

    /// The `Strict-Transport-Security` value to send, if any.
    pub fn hsts_header(&self) -> Option<String> {
        self.hsts
            .then(|| format!("max-age={}", self.hsts_max_age_seconds))
    }

    /// Whether `origin` (a request's `Origin`) is one of the CORS origins.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.cors_allowed_origins
            .iter()
            .any(|a| a.eq_ignore_ascii_case(origin))
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
    fn the_defaults_are_valid() {
        assert_eq!(HttpSettings::default().validate(), Ok(()));
    }

    #[test]
    fn cors_origins_must_be_exact_origins() {
        for good in ["https://app.example.com", "http://localhost:5173"] {
            let h = HttpSettings {
                cors_allowed_origins: vec![good.into()],
                ..HttpSettings::default()
            };
            assert_eq!(h.validate(), Ok(()), "{good}");
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
            let h = HttpSettings {
                cors_allowed_origins: vec![bad.into()],
                ..HttpSettings::default()
            };
            let e = h.validate().unwrap_err();
            assert_eq!(e.key, "http.cors_allowed_origins", "{bad}");
            assert!(
                e.reason.contains(bad),
                "the message names the entry: {}",
                e.reason
            );
        }
    }

    #[test]
    fn a_tiny_body_limit_or_an_unbounded_deadline_names_its_key() {
        let h = HttpSettings {
            body_limit_bytes: 1023,
            ..HttpSettings::default()
        };
        assert_eq!(h.validate().unwrap_err().key, "http.body_limit_bytes");
        for seconds in [0, 3601] {
            let h = HttpSettings {
                request_timeout_seconds: seconds,
                ..HttpSettings::default()
            };
            assert_eq!(
                h.validate().unwrap_err().key,
                "http.request_timeout_seconds",
                "{seconds}"
            );
        }
    }

    #[test]
    fn the_api_prefix_is_a_mount_point() {
        for bad in ["api/auth", "/api/auth/", ""] {
            let h = HttpSettings {
                api_prefix: bad.into(),
                ..HttpSettings::default()
            };
            let err = h.validate().expect_err(bad);
            assert_eq!(err.key, "api_prefix", "{bad:?}");
        }
        for good in ["/", "/auth", "/api/v2/auth"] {
            let h = HttpSettings {
                api_prefix: good.into(),
                ..HttpSettings::default()
            };
            assert_eq!(h.validate(), Ok(()), "{good:?}");
        }
    }

    /// `api_prefix` and `behind_proxy` are top-level keys (regstack's
    /// places): inside `[http]` they are unknown keys.
    #[test]
    fn the_top_level_keys_are_not_http_table_keys() {
        let parsed: Result<HttpSettings, _> = serde_json::from_str(r#"{"behind_proxy": true}"#);
        assert!(parsed.is_err());
    }

    #[test]
    fn hsts_is_off_by_default_and_names_its_max_age_when_on() {
        let mut h = HttpSettings::default();
        assert_eq!(h.hsts_header(), None);
        h.hsts = true;
        assert_eq!(h.hsts_header().as_deref(), Some("max-age=31536000"));
        h.hsts_max_age_seconds = 0;
        assert_eq!(h.hsts_header().as_deref(), Some("max-age=0"));
        assert_eq!(h.validate(), Ok(()));
    }

    #[test]
    fn allowed_origins_match_without_regard_to_case() {
        let h = HttpSettings {
            cors_allowed_origins: vec!["https://SPA.example".into()],
            ..HttpSettings::default()
        };
        assert!(h.allows_origin("https://spa.example"));
        assert!(!h.allows_origin("https://evil.example"));
    }
}
