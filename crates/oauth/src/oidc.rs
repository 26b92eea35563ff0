//! The OpenID Connect code flow with PKCE, shared by the generic `oidc`
//! kind and the Google and Microsoft presets: they differ only in where
//! the metadata comes from, which `iss` values pass, whether
//! `email_verified` is believed, and a few extra authorization parameters
//! (see `presets.rs`).

use std::sync::Arc;

use async_trait::async_trait;
use regstack_ports::{
    AuthorizationRequest, Clock, CodeRedemption, ExternalIdentity, IdentityProvider, ProviderError,
};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::OnceCell;

use crate::config::Tenancy;
use crate::discovery::{self, ClientAuth, Metadata};
use crate::http::HttpClient;
use crate::id_token::{self, IssuerRule, Verifier};
use crate::jwks::KeyCache;

/// The most of a token answer we read (an ID token is a few KiB).
const MAX_TOKEN_ANSWER: usize = 64 * 1024;

/// Where a provider's metadata comes from.
pub(crate) enum Source {
    /// Written down (Google): no network before the first redemption.
    Fixed(Metadata),
    /// Read from the discovery document at `url` on first use.
    Discover {
        url: Url,
        /// What the document's `issuer` must be.
        expect: ExpectedIssuer,
    },
}

/// The discovery document's `issuer` must be…
pub(crate) enum ExpectedIssuer {
    /// …exactly the configured issuer (Discovery §4.3): otherwise whoever
    /// answers at that URL could name any issuer.
    Exact(String),
    /// …what Microsoft states for the tenancy: a `{tenantid}` template for
    /// the multi-tenant endpoints, a fixed issuer for one tenant.
    Microsoft(Tenancy),
}

/// Everything that makes one OpenID Connect provider differ from another.
pub(crate) struct Parts {
    pub name: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub scope: String,
    pub source: Source,
    pub issuer_rule: IssuerRule,
    /// Whether an `email_verified: true` from this provider is believed.
    pub trust_email_verified: bool,
    pub allow_hs256: bool,
    /// Added to the authorization URL after the standard parameters.
    pub extra_authorization_params: &'static [(&'static str, &'static str)],
}

/// An OpenID Connect provider: metadata and keys fetched lazily, once.
pub(crate) struct OidcProvider {
    parts: Parts,
    resolved: OnceCell<Resolved>,
    clock: Arc<dyn Clock>,
    http: HttpClient,
}

struct Resolved {
    meta: Metadata,
    keys: KeyCache,
}

impl OidcProvider {
    pub(crate) fn new(parts: Parts, clock: Arc<dyn Clock>, http: HttpClient) -> Self {
        let resolved = match &parts.source {
            Source::Fixed(meta) => OnceCell::new_with(Some(Resolved {
                keys: KeyCache::new(meta.jwks_uri.clone()),
                meta: meta.clone(),
            })),
            Source::Discover { .. } => OnceCell::new(),
        };
        Self {
            parts,
            resolved,
            clock,
            http,
        }
    }

    /// The metadata, discovered on first use. A failed discovery is not
    /// remembered: the next flow tries again.
    async fn resolved(&self) -> Result<&Resolved, ProviderError> {
        self.resolved
            .get_or_try_init(|| async {
                let Source::Discover { url, expect } = &self.parts.source else {
                    // `new` filled the cell for fixed metadata.
                    return Err(ProviderError::Other("metadata missing".to_owned()));
                };
                let meta = discovery::fetch(&self.http, url, self.parts.allow_hs256)
                    .await
                    .map_err(ProviderError::Other)?;
                check_advertised_issuer(expect, &meta.issuer).map_err(ProviderError::Other)?;
                Ok(Resolved {
                    keys: KeyCache::new(meta.jwks_uri.clone()),
                    meta,
                })
            })
            .await
    }

    /// Trades the code for the ID token. Client authentication as the
    /// provider advertises: Basic unless only `client_secret_post` is.
    async fn id_token(
        &self,
        meta: &Metadata,
        req: &CodeRedemption<'_>,
    ) -> Result<String, ProviderError> {
        let secret = self.parts.client_secret.expose_secret();
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "authorization_code"),
            ("code", req.code),
            ("redirect_uri", req.redirect_uri),
            ("code_verifier", req.pkce_verifier),
        ];
        let mut request = self
            .http
            .post(&meta.token_endpoint)
            .header("accept", "application/json");
        match meta.client_auth {
            // RFC 6749 §2.3.1: both halves form-encoded before Basic.
            ClientAuth::Basic => {
                request = request.basic_auth(
                    form_encode(&self.parts.client_id),
                    Some(form_encode(secret)),
                );
            }
            ClientAuth::Post => {
                form.push(("client_id", &self.parts.client_id));
                form.push(("client_secret", secret));
            }
        }
        let answer = self
            .http
            .send_json(request.form(&form), MAX_TOKEN_ANSWER)
            .await
            .map_err(|f| ProviderError::TokenExchange(format!("token endpoint {f}")))?;
        answer
            .get("id_token")
            .and_then(|t| t.as_str())
            .map(str::to_owned)
            .ok_or_else(|| {
                ProviderError::IdToken("the token endpoint returned no ID token".to_owned())
            })
    }
}

fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The callback's `iss` parameter (RFC 9207) against the provider's
/// issuer: equal when present (for Microsoft's multi-tenant template, of
/// its shape), and present when the provider says it always sends it.
fn check_response_issuer(meta: &Metadata, iss: Option<&str>) -> Result<(), ProviderError> {
    let Some(iss) = iss else {
        return if meta.sends_response_issuer {
            Err(ProviderError::Other(
                "the provider promises an `iss` on its redirects and this one had none".to_owned(),
            ))
        } else {
            Ok(())
        };
    };
    let matches = match meta.issuer.split_once("{tenantid}") {
        None => iss == meta.issuer,
        Some((head, tail)) => {
            iss.len() > head.len() + tail.len()
                && iss.starts_with(head)
                && iss.ends_with(tail)
                && !iss[head.len()..iss.len() - tail.len()].contains('/')
        }
    };
    if matches {
        Ok(())
    } else {
        Err(ProviderError::Other(format!(
            "the redirect's `iss` {:?} is not this provider's issuer (mix-up?)",
            crate::http::printable(iss, 120)
        )))
    }
}

pub(crate) fn check_advertised_issuer(
    expect: &ExpectedIssuer,
    advertised: &str,
) -> Result<(), String> {
    match expect {
        ExpectedIssuer::Exact(issuer) if advertised == issuer => Ok(()),
        ExpectedIssuer::Exact(issuer) => Err(format!(
            "discovery document names issuer {:?}, not the configured {:?}",
            crate::http::printable(advertised, 120),
            issuer
        )),
        ExpectedIssuer::Microsoft(Tenancy::Single(_)) if advertised.contains("{tenantid}") => {
            Err("discovery names a `{tenantid}` template for a single tenant".to_owned())
        }
        ExpectedIssuer::Microsoft(_) => {
            let ok = Url::parse(&advertised.replace("{tenantid}", "t")).is_ok();
            if ok {
                Ok(())
            } else {
                Err("discovery document's issuer is not a URL".to_owned())
            }
        }
    }
}

#[async_trait]
impl IdentityProvider for OidcProvider {
    async fn authorization_url(
        &self,
        req: AuthorizationRequest<'_>,
    ) -> Result<String, ProviderError> {
        let resolved = self
            .resolved()
            .await
            .map_err(|e| crate::named(&self.parts.name, e))?;
        let mut url = resolved.meta.authorization_endpoint.clone();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &self.parts.client_id)
                .append_pair("redirect_uri", req.redirect_uri)
                .append_pair("scope", &self.parts.scope)
                .append_pair("state", req.state)
                .append_pair("code_challenge", req.pkce_challenge)
                .append_pair("code_challenge_method", "S256")
                .append_pair("nonce", req.nonce);
            for (k, v) in self.parts.extra_authorization_params {
                query.append_pair(k, v);
            }
        }
        Ok(url.into())
    }

    async fn redeem_code(
        &self,
        req: CodeRedemption<'_>,
    ) -> Result<ExternalIdentity, ProviderError> {
        let run = async {
            let resolved = self.resolved().await?;
            // Before the code goes anywhere: a redirect that names another
            // issuer than this provider's is a mix-up (RFC 9207 §2.4).
            check_response_issuer(&resolved.meta, req.response_issuer)?;
            let token = self.id_token(&resolved.meta, &req).await?;
            let verifier = Verifier {
                client_id: &self.parts.client_id,
                client_secret: &self.parts.client_secret,
                algorithms: &resolved.meta.algorithms,
                advertised_issuer: &resolved.meta.issuer,
                issuer_rule: &self.parts.issuer_rule,
                keys: &resolved.keys,
                http: &self.http,
                now: self.clock.now(),
            };
            let (issuer, claims) = verifier.verify(&token, req.nonce).await?;
            Ok(id_token::identity(
                issuer,
                &claims,
                self.parts.trust_email_verified,
            ))
        };
        run.await.map_err(|e| crate::named(&self.parts.name, e))
    }
}
