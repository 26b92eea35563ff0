//! The identity providers: this crate implements the port
//! [`regstack_ports::IdentityProvider`] for OpenID Connect issuers found by
//! discovery (kind `oidc`), the Google and Microsoft presets, and GitHub's
//! plain OAuth 2.0.
//!
//! In the hexagon it is an adapter like the stores: it depends on
//! `regstack-ports` and on I/O crates (reqwest, jsonwebtoken), never on
//! `regstack-core`. `core` drives a flow through the port — "give me the
//! authorization URL", "who does this code belong to" — and decides what
//! to do with the [`ExternalIdentity`](regstack_ports::ExternalIdentity) it
//! gets back; everything protocol-shaped (discovery, PKCE, client
//! authentication, ID token checks, GitHub's REST API) stays here. The
//! server reads `[oauth.providers.<name>]` tables into [`ProviderConfig`]
//! and calls [`build`] once per provider at start-up.
//!
//! Every check an ID token must pass, and why it fails, is in
//! `id_token.rs`; what every HTTP call is allowed to do (no redirects, a
//! timeout, bounded answers, no secret in an error) is in `http.rs`.
//!
//! # Why `jsonwebtoken` and not `openidconnect`
//!
//! The `openidconnect` crate covers the generic case, but not cleanly all
//! of what we need: its discovery insists that the document's `issuer`
//! equals the URL it was fetched from, which Microsoft's multi-tenant
//! documents (`…/{tenantid}/v2.0`) never do; its claims types reject a
//! whole token whose `email_verified` is the string `"true"`, where we
//! want to read it as "not verified"; and its verifier holds a fixed key
//! set, so the rate-limited refetch on an unknown `kid` would be a wrapper
//! around its errors anyway. What remains — a discovery document, a JWK
//! Set, a form POST — is a few hundred lines here, with `jsonwebtoken`
//! (already the workspace's JWT library, on `ring`) checking signatures
//! and every claim checked by our own code against the injected
//! [`Clock`].
//!
//! # Adding a provider kind
//!
//! 1. Add the variant to [`ProviderKind`] and decide which configuration
//!    keys it accepts (the `only(…)` table in `ProviderConfig::check`).
//! 2. An OpenID Connect provider is an `oidc::Parts` value, built by a
//!    function in `presets.rs`: where its metadata comes from (discovery
//!    or written down), an `id_token::IssuerRule` if `iss` is not simply
//!    the issuer, whether its `email_verified` is believed, and any extra
//!    authorization parameters. A plain OAuth 2.0 provider gets a module of its own, as
//!    `github.rs` is.
//! 3. Route the kind in [`build`], and test it against a stand-in served
//!    on 127.0.0.1 (`tests/`): the happy path, and every way its identity
//!    can be refused.
#![warn(missing_docs)]

use std::sync::Arc;

use regstack_ports::{Clock, IdentityProvider, ProviderError};

mod config;
mod discovery;
mod github;
mod http;
mod id_token;
mod jwks;
mod oidc;
mod presets;

pub use config::{ConfigError, ProviderConfig, ProviderKind};
pub use http::{HttpClient, DEFAULT_TIMEOUT};
pub use jwks::REFETCH_INTERVAL_SECONDS;

/// Builds the provider `config` describes, after checking it. Nothing is
/// fetched here: an issuer's metadata and keys are read on first use, so a
/// provider that is down at start-up fails its sign-ins, not the server.
///
/// `clock` decides token expiry and the key refetch interval; `http` is
/// shared by every provider.
pub fn build(
    config: &ProviderConfig,
    clock: Arc<dyn Clock>,
    http: HttpClient,
) -> Result<Arc<dyn IdentityProvider>, ConfigError> {
    let checked = config.check()?;
    Ok(match checked.kind {
        ProviderKind::Oidc => Arc::new(oidc::OidcProvider::new(
            presets::oidc(checked)?,
            clock,
            http,
        )),
        ProviderKind::Google => Arc::new(oidc::OidcProvider::new(
            presets::google(checked)?,
            clock,
            http,
        )),
        ProviderKind::Microsoft => Arc::new(oidc::OidcProvider::new(
            presets::microsoft(checked)?,
            clock,
            http,
        )),
        ProviderKind::Github => Arc::new(github::GitHubProvider::new(checked, http)?),
    })
}

/// Reads the discovery document of a provider that has one (kinds `oidc`
/// and `microsoft`) and checks it as a first sign-in would, so an operator
/// learns of a wrong issuer or an unreachable provider before a user does
/// (`regstack doctor`). `Ok(Some(url))`: the document at `url` is usable;
/// `Ok(None)`: the kind has written-down endpoints and nothing to fetch.
/// The error names no secret.
pub async fn probe(config: &ProviderConfig, http: &HttpClient) -> Result<Option<String>, String> {
    let checked = config.check().map_err(|e| e.to_string())?;
    let parts = match checked.kind {
        ProviderKind::Oidc => presets::oidc(checked),
        ProviderKind::Microsoft => presets::microsoft(checked),
        ProviderKind::Google | ProviderKind::Github => return Ok(None),
    }
    .map_err(|e| e.to_string())?;
    let oidc::Source::Discover { url, expect } = &parts.source else {
        return Ok(None);
    };
    let meta = discovery::fetch(http, url, parts.allow_hs256).await?;
    oidc::check_advertised_issuer(expect, &meta.issuer)?;
    Ok(Some(url.to_string()))
}

/// Prefixes the provider's name to an error, so a log line says which
/// provider failed.
pub(crate) fn named(name: &str, e: ProviderError) -> ProviderError {
    match e {
        ProviderError::TokenExchange(m) => ProviderError::TokenExchange(format!("{name}: {m}")),
        ProviderError::IdToken(m) => ProviderError::IdToken(format!("{name}: {m}")),
        ProviderError::Other(m) => ProviderError::Other(format!("{name}: {m}")),
    }
}
