//! An OpenID Provider's metadata: read from its discovery document
//! (OpenID Connect Discovery 1.0) or, for presets, written down here, and
//! reduced to the few facts a code flow needs.
//!
//! The document decides which algorithms an ID token may be signed with
//! (`id_token_signing_alg_values_supported`): a token in any other
//! algorithm is refused even if a key would verify it. `none` is never
//! accepted, and HS256 only when the configuration opts in.

use jsonwebtoken::Algorithm;
use reqwest::Url;
use serde::Deserialize;

use crate::http::{self, HttpClient};

/// The most of a discovery document we read (real ones are 2–6 KiB).
const MAX_DOCUMENT: usize = 256 * 1024;

/// How the client proves itself at the token endpoint (RFC 6749 §2.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClientAuth {
    /// HTTP Basic with the form-encoded id and secret: the default.
    Basic,
    /// `client_id` and `client_secret` in the form body: used only when
    /// the provider advertises it and not Basic.
    Post,
}

/// What a flow needs to know about an OpenID Provider.
#[derive(Clone, Debug)]
pub(crate) struct Metadata {
    /// The `issuer` as the provider states it; for Microsoft's multi-tenant
    /// endpoints a template containing `{tenantid}`.
    pub issuer: String,
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    pub jwks_uri: Url,
    /// The algorithms an ID token may use: what the provider advertises,
    /// less what we never accept.
    pub algorithms: Vec<Algorithm>,
    pub client_auth: ClientAuth,
    /// The provider puts `iss` on its redirects back (RFC 9207 §3): a
    /// callback without one is then refused.
    pub sends_response_issuer: bool,
}

#[derive(Deserialize)]
struct Document {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    id_token_signing_alg_values_supported: Option<Vec<String>>,
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    authorization_response_iss_parameter_supported: Option<bool>,
}

/// The discovery document URL of `issuer`: `/.well-known/openid-configuration`
/// appended after removing any trailing `/` (Discovery §4).
pub(crate) fn document_url(issuer: &Url) -> Url {
    http::join(issuer, "/.well-known/openid-configuration")
}

/// Fetches and reads the document at `url`. The caller checks `issuer`
/// against what it expects; everything else is checked here. The error is
/// for the log and names no secret.
pub(crate) async fn fetch(
    http: &HttpClient,
    url: &Url,
    allow_hs256: bool,
) -> Result<Metadata, String> {
    let value = http
        .send_json(
            http.get(url).header("accept", "application/json"),
            MAX_DOCUMENT,
        )
        .await
        .map_err(|f| format!("discovery document: {f}"))?;
    let doc: Document = serde_json::from_value(value).map_err(|e| {
        format!(
            "discovery document is not usable: {}",
            http::printable(&e.to_string(), 200)
        )
    })?;
    let endpoint = |what: &str, raw: &str, query: bool| {
        http::endpoint(raw, query).map_err(|e| format!("discovery document: {what}: {e}"))
    };
    let algorithms = match &doc.id_token_signing_alg_values_supported {
        Some(names) => accepted_algorithms(names, allow_hs256),
        // The field is required; RS256 is the one every provider must
        // support (Core §15.1), so its absence means that.
        None => vec![Algorithm::RS256],
    };
    if algorithms.is_empty() {
        return Err(
            "discovery document advertises no ID token signing algorithm we accept".to_owned(),
        );
    }
    let client_auth = match &doc.token_endpoint_auth_methods_supported {
        None => ClientAuth::Basic,
        Some(methods) if methods.iter().any(|m| m == "client_secret_basic") => ClientAuth::Basic,
        Some(methods) if methods.iter().any(|m| m == "client_secret_post") => ClientAuth::Post,
        Some(_) => {
            return Err(
                "the token endpoint accepts neither client_secret_basic nor client_secret_post"
                    .to_owned(),
            )
        }
    };
    Ok(Metadata {
        authorization_endpoint: endpoint(
            "authorization_endpoint",
            &doc.authorization_endpoint,
            true,
        )?,
        token_endpoint: endpoint("token_endpoint", &doc.token_endpoint, false)?,
        jwks_uri: endpoint("jwks_uri", &doc.jwks_uri, true)?,
        issuer: doc.issuer,
        algorithms,
        client_auth,
        sends_response_issuer: doc.authorization_response_iss_parameter_supported == Some(true),
    })
}

/// The advertised algorithms we accept, in the provider's order: the
/// asymmetric ones, and HS256 only if the configuration allows it.
pub(crate) fn accepted_algorithms(names: &[String], allow_hs256: bool) -> Vec<Algorithm> {
    let mut out = Vec::new();
    for name in names {
        let alg = match name.as_str() {
            "RS256" => Algorithm::RS256,
            "RS384" => Algorithm::RS384,
            "RS512" => Algorithm::RS512,
            "PS256" => Algorithm::PS256,
            "PS384" => Algorithm::PS384,
            "PS512" => Algorithm::PS512,
            "ES256" => Algorithm::ES256,
            "ES384" => Algorithm::ES384,
            "EdDSA" => Algorithm::EdDSA,
            "HS256" if allow_hs256 => Algorithm::HS256,
            // `none`, the other HS* (keyed with the client secret too), and
            // anything we cannot verify.
            _ => continue,
        };
        if !out.contains(&alg) {
            out.push(alg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_and_hmac_are_dropped_unless_allowed() {
        let names: Vec<String> = ["none", "HS256", "HS512", "RS256", "ES256", "XX"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            accepted_algorithms(&names, false),
            vec![Algorithm::RS256, Algorithm::ES256]
        );
        assert_eq!(
            accepted_algorithms(&names, true),
            vec![Algorithm::HS256, Algorithm::RS256, Algorithm::ES256]
        );
    }

    #[test]
    fn the_document_url_drops_a_trailing_slash() {
        let with = Url::parse("https://id.example.com/realms/x/").unwrap();
        let without = Url::parse("https://id.example.com/realms/x").unwrap();
        let expected = "https://id.example.com/realms/x/.well-known/openid-configuration";
        assert_eq!(document_url(&with).as_str(), expected);
        assert_eq!(document_url(&without).as_str(), expected);
    }
}
