//! What a host configures for one provider — the `[oauth.providers.<name>]`
//! table — and the checks that run before anything is built, so a typo
//! fails at start-up and not at a user's first sign-in.
//!
//! One flat type serves every kind because the server reads one table
//! shape; each key is accepted only by the kinds it means something to
//! (see [`ProviderConfig`]), so a `tenant` under a Google provider is an
//! error, not silently ignored.

use std::fmt;

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::http;

/// Which protocol dialect a provider speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Any OpenID Connect issuer, configured by its discovery document.
    Oidc,
    /// Google's OpenID Connect, with its fixed endpoints (no discovery
    /// call needed to start a flow) and both of its `iss` spellings.
    Google,
    /// Microsoft identity platform v2.0, tenant-aware.
    Microsoft,
    /// GitHub, which speaks plain OAuth 2.0 and has no ID token: identity
    /// comes from its REST API.
    Github,
}

impl ProviderKind {
    fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Oidc => "oidc",
            ProviderKind::Google => "google",
            ProviderKind::Microsoft => "microsoft",
            ProviderKind::Github => "github",
        }
    }

    /// Whether the kind is OpenID Connect (an ID token, scope `openid`).
    fn is_oidc(self) -> bool {
        !matches!(self, ProviderKind::Github)
    }
}

/// One provider as configured. The server fills [`name`](Self::name)
/// from the table's key; everything else comes from the table.
///
/// Keys and the kinds that accept them (any other combination is refused
/// by [`validate`](Self::validate)):
///
/// | key | kinds | default |
/// |---|---|---|
/// | `kind`, `client_id`, `client_secret` | all | required |
/// | `scopes` | all | `openid email profile`; GitHub `read:user user:email` |
/// | `redirect_uri` | all | none (informative for the server) |
/// | `issuer` | `oidc` (required), `github` (the identity's issuer) | GitHub: `https://github.com` |
/// | `allow_hs256` | `oidc` | `false` |
/// | `tenant` | `microsoft` | `common` |
/// | `authority` | `microsoft` | `https://login.microsoftonline.com` |
/// | `authorization_endpoint`, `token_endpoint` | `google`, `github` | the provider's |
/// | `jwks_uri` | `google` | Google's |
/// | `api_url` | `github` | `https://api.github.com` |
///
/// The endpoint overrides exist for tests against stand-ins and for GitHub
/// Enterprise; they never change which issuer a Google or Microsoft token
/// must name.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The provider's name in routes and in linked identities (`google`,
    /// `corp-sso`): the `<name>` of `[oauth.providers.<name>]`.
    #[serde(skip)]
    pub name: String,
    /// The dialect.
    pub kind: ProviderKind,
    /// `oidc`: the issuer identifier, exactly as the provider's ID tokens
    /// name it (discovery is read from `<issuer>/.well-known/openid-configuration`).
    /// `github`: the issuer recorded for identities (GitHub Enterprise).
    pub issuer: Option<String>,
    /// The client id registered with the provider.
    pub client_id: String,
    /// The client secret: sent to the token endpoint only, never logged.
    pub client_secret: SecretString,
    /// The scopes to ask for; OpenID Connect kinds must include `openid`.
    pub scopes: Option<Vec<String>>,
    /// The callback URL registered with the provider. The flows pass the
    /// redirect URI on every call; this value is for the server to derive
    /// it from.
    pub redirect_uri: Option<String>,
    /// Microsoft only: `common`, `organizations`, `consumers`, or one
    /// tenant's id or domain. Decides which tenants' users may sign in.
    pub tenant: Option<String>,
    /// `oidc` only: accept ID tokens MACed (HS256) with the client secret,
    /// if discovery advertises HS256. Off by default because anyone who
    /// holds the secret (every instance of this app, the provider's
    /// admins) could then mint identities.
    #[serde(default)]
    pub allow_hs256: bool,
    /// Microsoft only: the login host the tenant path is appended to.
    pub authority: Option<String>,
    /// Google and GitHub: where the browser is sent to sign in.
    pub authorization_endpoint: Option<String>,
    /// Google and GitHub: where codes are redeemed.
    pub token_endpoint: Option<String>,
    /// Google only: where the signing keys are published.
    pub jwks_uri: Option<String>,
    /// GitHub only: the REST API base (`https://ghe.example.com/api/v3`).
    pub api_url: Option<String>,
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("scopes", &self.scopes)
            .field("redirect_uri", &self.redirect_uri)
            .field("tenant", &self.tenant)
            .field("allow_hs256", &self.allow_hs256)
            .finish_non_exhaustive()
    }
}

/// Why a provider cannot be built. `key` is the dotted configuration key
/// to change, `reason` what is wrong with it; neither ever holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {reason}")]
pub struct ConfigError {
    /// E.g. `oauth.providers.google.tenant`.
    pub key: String,
    /// What is wrong and what would be accepted.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// The default OpenID Connect scopes: who, and the address and name the
/// account is created with.
const OIDC_SCOPES: &[&str] = &["openid", "email", "profile"];
/// GitHub's: the profile, and the address list with its verified flags.
const GITHUB_SCOPES: &[&str] = &["read:user", "user:email"];

/// Microsoft's `tenant` as it decides who may sign in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Tenancy {
    /// Work, school and personal accounts.
    Common,
    /// Work and school accounts only.
    Organizations,
    /// Personal accounts only.
    Consumers,
    /// One tenant, by id or domain.
    Single(String),
}

impl Tenancy {
    pub(crate) fn path(&self) -> &str {
        match self {
            Tenancy::Common => "common",
            Tenancy::Organizations => "organizations",
            Tenancy::Consumers => "consumers",
            Tenancy::Single(t) => t,
        }
    }
}

/// A configuration that passed [`ProviderConfig::validate`], with its URLs
/// parsed and defaults filled in.
pub(crate) struct Checked {
    pub name: String,
    pub kind: ProviderKind,
    /// `oidc`: the issuer exactly as configured (tokens must name it so),
    /// and where its discovery document is.
    pub issuer: Option<(String, Url)>,
    /// GitHub's identity issuer (not necessarily a URL we call).
    pub identity_issuer: Option<String>,
    pub client_id: String,
    pub client_secret: SecretString,
    /// Space-separated, as sent.
    pub scope: String,
    pub tenancy: Tenancy,
    pub allow_hs256: bool,
    pub authority: Option<Url>,
    pub authorization_endpoint: Option<Url>,
    pub token_endpoint: Option<Url>,
    pub jwks_uri: Option<Url>,
    pub api_url: Option<Url>,
}

impl ProviderConfig {
    /// A configuration with the required keys and every other one unset,
    /// for hosts that build providers in code.
    pub fn new(
        name: impl Into<String>,
        kind: ProviderKind,
        client_id: impl Into<String>,
        client_secret: SecretString,
    ) -> Self {
        Self {
            name: name.into(),
            kind,
            issuer: None,
            client_id: client_id.into(),
            client_secret,
            scopes: None,
            redirect_uri: None,
            tenant: None,
            allow_hs256: false,
            authority: None,
            authorization_endpoint: None,
            token_endpoint: None,
            jwks_uri: None,
            api_url: None,
        }
    }

    /// Checks every key against the kind's rules (see the table on
    /// [`ProviderConfig`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map(|_| ())
    }

    fn key(&self, field: &str) -> String {
        format!("oauth.providers.{}.{field}", self.name)
    }

    pub(crate) fn check(&self) -> Result<Checked, ConfigError> {
        let kind = self.kind;
        let err = |field: &str, reason: String| ConfigError::new(self.key(field), reason);
        if self.name.trim().is_empty() {
            return Err(ConfigError::new(
                "oauth.providers",
                "a provider needs a name",
            ));
        }
        if self.client_id.trim().is_empty() || self.client_id.chars().any(char::is_control) {
            return Err(err(
                "client_id",
                "must be the non-empty client id the provider issued".to_owned(),
            ));
        }
        if self.client_secret.expose_secret().is_empty() {
            return Err(err("client_secret", "must not be empty".to_owned()));
        }

        // Keys that only some kinds read.
        let only = |field: &str, set: bool, kinds: &[ProviderKind]| {
            if set && !kinds.contains(&kind) {
                let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
                Err(err(
                    field,
                    format!(
                        "not used by kind `{}` (only by {})",
                        kind.as_str(),
                        names.join(", ")
                    ),
                ))
            } else {
                Ok(())
            }
        };
        use ProviderKind::*;
        only("issuer", self.issuer.is_some(), &[Oidc, Github])?;
        only("tenant", self.tenant.is_some(), &[Microsoft])?;
        only("allow_hs256", self.allow_hs256, &[Oidc])?;
        only("authority", self.authority.is_some(), &[Microsoft])?;
        only(
            "authorization_endpoint",
            self.authorization_endpoint.is_some(),
            &[Google, Github],
        )?;
        only(
            "token_endpoint",
            self.token_endpoint.is_some(),
            &[Google, Github],
        )?;
        only("jwks_uri", self.jwks_uri.is_some(), &[Google])?;
        only("api_url", self.api_url.is_some(), &[Github])?;

        let scope = match &self.scopes {
            None if kind.is_oidc() => OIDC_SCOPES.join(" "),
            None => GITHUB_SCOPES.join(" "),
            Some(list) => {
                if list.is_empty() {
                    return Err(err("scopes", "must name at least one scope".to_owned()));
                }
                for s in list {
                    // RFC 6749 §3.3 scope-token: printable ASCII, no space,
                    // `"` or `\`.
                    let ok = !s.is_empty()
                        && s.chars()
                            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\');
                    if !ok {
                        return Err(err(
                            "scopes",
                            format!("{:?} is not a scope token", http::printable(s, 64)),
                        ));
                    }
                }
                if kind.is_oidc() && !list.iter().any(|s| s == "openid") {
                    return Err(err(
                        "scopes",
                        "must include `openid` for an OpenID Connect provider".to_owned(),
                    ));
                }
                list.join(" ")
            }
        };

        if let Some(uri) = &self.redirect_uri {
            let ok = Url::parse(uri).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https") && u.has_host() && u.fragment().is_none()
            });
            if !ok {
                return Err(err(
                    "redirect_uri",
                    "must be an absolute http(s) URL without a fragment".to_owned(),
                ));
            }
        }

        let url = |field: &str, value: &Option<String>, query: bool| {
            value
                .as_deref()
                .map(|raw| http::endpoint(raw, query).map_err(|reason| err(field, reason)))
                .transpose()
        };

        let mut issuer = None;
        let mut identity_issuer = None;
        match kind {
            Oidc => {
                let Some(raw) = &self.issuer else {
                    return Err(err(
                        "issuer",
                        "kind `oidc` needs the issuer URL its discovery document lives under"
                            .to_owned(),
                    ));
                };
                let parsed = url("issuer", &Some(raw.clone()), false)?;
                // Tokens name the issuer verbatim; a stray space here would
                // reject every sign-in, so say so now.
                if raw.trim() != raw {
                    return Err(err("issuer", "must not have surrounding spaces".to_owned()));
                }
                issuer = parsed.map(|u| (raw.clone(), u));
            }
            Github => {
                if let Some(raw) = &self.issuer {
                    let ok = Url::parse(raw).is_ok_and(|u| u.has_host()) && raw.trim() == raw;
                    if !ok {
                        return Err(err(
                            "issuer",
                            "must be the URL naming this GitHub (e.g. https://ghe.example.com)"
                                .to_owned(),
                        ));
                    }
                    identity_issuer = Some(raw.clone());
                } else if self.api_url.is_some()
                    || self.authorization_endpoint.is_some()
                    || self.token_endpoint.is_some()
                {
                    // Another GitHub (Enterprise) numbers its accounts from
                    // 1 as github.com does: under github.com's issuer, its
                    // account N would sign in as whoever linked
                    // github.com's account N.
                    return Err(err(
                        "issuer",
                        "is required when GitHub's endpoints are overridden: the URL naming that \
                         GitHub (e.g. https://ghe.example.com), so its accounts are never taken \
                         for github.com's"
                            .to_owned(),
                    ));
                }
            }
            Google | Microsoft => {}
        }

        let tenancy = match self.tenant.as_deref() {
            None => Tenancy::Common,
            Some(t) => {
                let ok = !t.is_empty()
                    && t.len() <= 128
                    && t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
                if !ok {
                    return Err(err(
                        "tenant",
                        "must be `common`, `organizations`, `consumers`, a tenant id or a domain"
                            .to_owned(),
                    ));
                }
                match t.to_ascii_lowercase().as_str() {
                    "common" => Tenancy::Common,
                    "organizations" => Tenancy::Organizations,
                    "consumers" => Tenancy::Consumers,
                    _ => Tenancy::Single(t.to_owned()),
                }
            }
        };

        Ok(Checked {
            name: self.name.clone(),
            kind,
            issuer,
            identity_issuer,
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            scope,
            tenancy,
            allow_hs256: self.allow_hs256,
            authority: url("authority", &self.authority, false)?,
            authorization_endpoint: url(
                "authorization_endpoint",
                &self.authorization_endpoint,
                true,
            )?,
            token_endpoint: url("token_endpoint", &self.token_endpoint, false)?,
            jwks_uri: url("jwks_uri", &self.jwks_uri, false)?,
            api_url: url("api_url", &self.api_url, false)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(toml_text: &str) -> Result<ProviderConfig, String> {
        let value: serde_json::Value =
            serde_json::from_str(toml_text).map_err(|e| e.to_string())?;
        let mut c: ProviderConfig = serde_json::from_value(value).map_err(|e| e.to_string())?;
        c.name = "p".to_owned();
        Ok(c)
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = table(r#"{"kind":"google","client_id":"a","client_secret":"b","colour":"red"}"#)
            .unwrap_err();
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn oidc_needs_an_issuer_and_microsoft_defaults_to_common() {
        let c = table(r#"{"kind":"oidc","client_id":"a","client_secret":"b"}"#).unwrap();
        assert_eq!(c.validate().unwrap_err().key, "oauth.providers.p.issuer");
        let c = table(r#"{"kind":"microsoft","client_id":"a","client_secret":"b"}"#).unwrap();
        assert_eq!(c.check().unwrap().tenancy, Tenancy::Common);
        let c = table(
            r#"{"kind":"microsoft","client_id":"a","client_secret":"b","tenant":"Consumers"}"#,
        )
        .unwrap();
        assert_eq!(c.check().unwrap().tenancy, Tenancy::Consumers);
    }

    #[test]
    fn keys_of_another_kind_are_refused() {
        let c = table(r#"{"kind":"google","client_id":"a","client_secret":"b","tenant":"common"}"#)
            .unwrap();
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "oauth.providers.p.tenant");
        assert!(e.reason.contains("microsoft"), "{e}");
        let c =
            table(r#"{"kind":"microsoft","client_id":"a","client_secret":"b","allow_hs256":true}"#)
                .unwrap();
        assert_eq!(
            c.validate().unwrap_err().key,
            "oauth.providers.p.allow_hs256"
        );
    }

    #[test]
    fn scopes_and_urls_are_checked() {
        let c = table(
            r#"{"kind":"oidc","issuer":"https://id.example.com","client_id":"a","client_secret":"b","scopes":["email"]}"#,
        )
        .unwrap();
        assert!(c.validate().unwrap_err().reason.contains("openid"));
        let c = table(
            r#"{"kind":"oidc","issuer":"http://id.example.com","client_id":"a","client_secret":"b"}"#,
        )
        .unwrap();
        assert!(c.validate().unwrap_err().reason.contains("https"));
        let c = table(
            r#"{"kind":"github","client_id":"a","client_secret":"b","api_url":"https://ghe.example.com/api/v3"}"#,
        )
        .unwrap();
        assert!(
            c.validate().unwrap_err().key.ends_with(".issuer"),
            "an overridden GitHub must name its issuer"
        );
        let c = table(
            r#"{"kind":"github","client_id":"a","client_secret":"b","api_url":"https://ghe.example.com/api/v3","issuer":"https://ghe.example.com"}"#,
        )
        .unwrap();
        let checked = c.check().unwrap();
        assert_eq!(checked.scope, "read:user user:email");
        let c =
            table(r#"{"kind":"microsoft","client_id":"a","client_secret":"b","tenant":"../evil"}"#)
                .unwrap();
        assert!(c.validate().is_err());
    }

    #[test]
    fn debug_hides_the_secret() {
        let c = table(r#"{"kind":"google","client_id":"a","client_secret":"hunter2"}"#).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        let e = table(r#"{"kind":"google","client_id":"a","client_secret":""}"#)
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(!e.to_string().contains("hunter2"));
    }
}
