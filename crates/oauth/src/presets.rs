//! The kinds built on `OidcProvider`: generic
//! discovery, Google and Microsoft — each a [`Parts`] value, nothing more.
//!
//! Google: the endpoints are written down (they have not moved in years,
//! and starting a flow then needs no network); its tokens name the issuer
//! with or without `https://`; the authorization URL carries
//! `prompt=select_account&access_type=online` as regstack 0.9.3 sends it.
//!
//! Microsoft: discovery per tenant path; the multi-tenant endpoints state
//! an issuer template that each token's `tid` fills in; its `email` claim
//! is whatever the tenant's admin typed, so it is never taken as verified.

use reqwest::Url;

use crate::config::{Checked, ConfigError};
use crate::discovery::{self, ClientAuth, Metadata};
use crate::id_token::{IssuerRule, GOOGLE_ISSUER};
use crate::oidc::{ExpectedIssuer, Parts, Source};

/// Google's endpoints, as its discovery document states them.
pub(crate) const GOOGLE_AUTHORIZATION: &str = "https://accounts.google.com/o/oauth2/v2/auth";
pub(crate) const GOOGLE_TOKEN: &str = "https://oauth2.googleapis.com/token";
pub(crate) const GOOGLE_JWKS: &str = "https://www.googleapis.com/oauth2/v3/certs";

/// Microsoft's login host.
pub(crate) const MICROSOFT_AUTHORITY: &str = "https://login.microsoftonline.com";

fn fixed(raw: &str, key: &str) -> Result<Url, ConfigError> {
    Url::parse(raw).map_err(|e| ConfigError::new(key, e.to_string()))
}

/// Generic OpenID Connect: everything from the issuer's discovery document.
pub(crate) fn oidc(c: Checked) -> Result<Parts, ConfigError> {
    let Some((issuer, issuer_url)) = c.issuer else {
        return Err(ConfigError::new(
            format!("oauth.providers.{}.issuer", c.name),
            "kind `oidc` needs an issuer",
        ));
    };
    Ok(Parts {
        name: c.name,
        client_id: c.client_id,
        client_secret: c.client_secret,
        scope: c.scope,
        source: Source::Discover {
            url: discovery::document_url(&issuer_url),
            expect: ExpectedIssuer::Exact(issuer.clone()),
        },
        issuer_rule: IssuerRule::Exact(issuer),
        trust_email_verified: true,
        allow_hs256: c.allow_hs256,
        extra_authorization_params: &[],
    })
}

/// Google, with its fixed endpoints (each overridable).
pub(crate) fn google(c: Checked) -> Result<Parts, ConfigError> {
    let meta = Metadata {
        issuer: GOOGLE_ISSUER.to_owned(),
        authorization_endpoint: match c.authorization_endpoint {
            Some(u) => u,
            None => fixed(GOOGLE_AUTHORIZATION, "authorization_endpoint")?,
        },
        token_endpoint: match c.token_endpoint {
            Some(u) => u,
            None => fixed(GOOGLE_TOKEN, "token_endpoint")?,
        },
        jwks_uri: match c.jwks_uri {
            Some(u) => u,
            None => fixed(GOOGLE_JWKS, "jwks_uri")?,
        },
        // Google's discovery advertises RS256 only.
        algorithms: vec![jsonwebtoken::Algorithm::RS256],
        client_auth: ClientAuth::Basic,
        // Google's discovery does not advertise RFC 9207.
        sends_response_issuer: false,
    };
    Ok(Parts {
        name: c.name,
        client_id: c.client_id,
        client_secret: c.client_secret,
        scope: c.scope,
        source: Source::Fixed(meta),
        issuer_rule: IssuerRule::Google,
        trust_email_verified: true,
        allow_hs256: false,
        extra_authorization_params: &[("prompt", "select_account"), ("access_type", "online")],
    })
}

/// Microsoft identity platform v2.0 for the configured tenancy.
pub(crate) fn microsoft(c: Checked) -> Result<Parts, ConfigError> {
    let authority = match c.authority {
        Some(u) => u,
        None => fixed(MICROSOFT_AUTHORITY, "authority")?,
    };
    let base = crate::http::join(&authority, &format!("/{}/v2.0", c.tenancy.path()));
    Ok(Parts {
        name: c.name,
        client_id: c.client_id,
        client_secret: c.client_secret,
        scope: c.scope,
        source: Source::Discover {
            url: discovery::document_url(&base),
            expect: ExpectedIssuer::Microsoft(c.tenancy.clone()),
        },
        issuer_rule: IssuerRule::Microsoft(c.tenancy),
        trust_email_verified: false,
        allow_hs256: false,
        extra_authorization_params: &[],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Tenancy;

    #[test]
    fn googles_written_down_metadata_is_what_its_discovery_document_states() {
        let recorded: serde_json::Value = serde_json::from_str(include_str!(
            "../tests/providers/fixtures/google-openid-configuration.json"
        ))
        .unwrap();
        assert_eq!(recorded["issuer"], GOOGLE_ISSUER);
        assert_eq!(recorded["authorization_endpoint"], GOOGLE_AUTHORIZATION);
        assert_eq!(recorded["token_endpoint"], GOOGLE_TOKEN);
        assert_eq!(recorded["jwks_uri"], GOOGLE_JWKS);
        assert_eq!(
            recorded["id_token_signing_alg_values_supported"],
            serde_json::json!(["RS256"])
        );
        let methods = recorded["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap();
        assert!(methods.contains(&serde_json::json!("client_secret_basic")));
        let parts = google(
            crate::ProviderConfig::new(
                "google",
                crate::ProviderKind::Google,
                "id",
                "s".to_owned().into(),
            )
            .check()
            .unwrap(),
        )
        .unwrap();
        let Source::Fixed(meta) = parts.source else {
            panic!("Google's metadata is written down")
        };
        assert_eq!(meta.authorization_endpoint.as_str(), GOOGLE_AUTHORIZATION);
        assert_eq!(meta.token_endpoint.as_str(), GOOGLE_TOKEN);
        assert_eq!(meta.jwks_uri.as_str(), GOOGLE_JWKS);
        assert_eq!(meta.client_auth, ClientAuth::Basic);
    }

    #[test]
    fn microsoft_discovery_lives_under_the_tenant_path() {
        for (tenant, expected) in [
            (Tenancy::Common, "https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration"),
            (
                Tenancy::Single("contoso.onmicrosoft.com".into()),
                "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration",
            ),
        ] {
            let authority = Url::parse(MICROSOFT_AUTHORITY).unwrap();
            let base = crate::http::join(&authority, &format!("/{}/v2.0", tenant.path()));
            assert_eq!(discovery::document_url(&base).as_str(), expected);
        }
    }
}
