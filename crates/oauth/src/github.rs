//! GitHub, which speaks plain OAuth 2.0: no ID token, so who signed in is
//! whatever its REST API says the access token belongs to.
//!
//! The subject is the numeric account id (a login can be renamed and then
//! taken by someone else; the id cannot). The address is the account's
//! primary one from `/user/emails`, verified only when GitHub marks that
//! very entry verified — never the profile's public `email`, which GitHub
//! does not vouch for, and never another verified address.

use async_trait::async_trait;
use regstack_ports::{
    AuthorizationRequest, CodeRedemption, ExternalIdentity, IdentityProvider, ProviderError,
};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::config::{Checked, ConfigError};
use crate::http::{self, Failure, HttpClient};

/// github.com's endpoints and the issuer recorded for its identities.
pub(crate) const GITHUB_AUTHORIZATION: &str = "https://github.com/login/oauth/authorize";
pub(crate) const GITHUB_TOKEN: &str = "https://github.com/login/oauth/access_token";
pub(crate) const GITHUB_API: &str = "https://api.github.com";
pub(crate) const GITHUB_ISSUER: &str = "https://github.com";

/// The most of one API answer we read (an address list is small).
const MAX_ANSWER: usize = 256 * 1024;

/// The GitHub provider.
pub(crate) struct GitHubProvider {
    name: String,
    issuer: String,
    client_id: String,
    client_secret: SecretString,
    scope: String,
    authorization_endpoint: Url,
    token_endpoint: Url,
    api: Url,
    http: HttpClient,
}

fn fixed(raw: &str, key: &str) -> Result<Url, ConfigError> {
    Url::parse(raw).map_err(|e| ConfigError::new(key, e.to_string()))
}

impl GitHubProvider {
    pub(crate) fn new(c: Checked, http: HttpClient) -> Result<Self, ConfigError> {
        Ok(Self {
            name: c.name,
            issuer: c
                .identity_issuer
                .unwrap_or_else(|| GITHUB_ISSUER.to_owned()),
            client_id: c.client_id,
            client_secret: c.client_secret,
            scope: c.scope,
            authorization_endpoint: match c.authorization_endpoint {
                Some(u) => u,
                None => fixed(GITHUB_AUTHORIZATION, "authorization_endpoint")?,
            },
            token_endpoint: match c.token_endpoint {
                Some(u) => u,
                None => fixed(GITHUB_TOKEN, "token_endpoint")?,
            },
            api: match c.api_url {
                Some(u) => u,
                None => fixed(GITHUB_API, "api_url")?,
            },
            http,
        })
    }

    /// The access token for `req`. GitHub answers a refused code with
    /// status 200 and an `error` member, so both shapes are refusals.
    async fn access_token(&self, req: &CodeRedemption<'_>) -> Result<SecretString, ProviderError> {
        let form = [
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose_secret()),
            ("code", req.code),
            ("redirect_uri", req.redirect_uri),
            ("code_verifier", req.pkce_verifier),
        ];
        let request = self
            .http
            .post(&self.token_endpoint)
            .header("accept", "application/json")
            .form(&form);
        let answer = self
            .http
            .send_json(request, MAX_ANSWER)
            .await
            .map_err(|f| ProviderError::TokenExchange(format!("token endpoint {f}")))?;
        if let Some(error) = answer.get("error") {
            let code = error
                .as_str()
                .and_then(http::safe_code)
                .unwrap_or_else(|| "unreadable".to_owned());
            return Err(ProviderError::TokenExchange(format!(
                "token endpoint refused the code ({code})"
            )));
        }
        answer
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(|t| SecretString::from(t.to_owned()))
            .ok_or_else(|| {
                ProviderError::TokenExchange("token endpoint returned no access token".to_owned())
            })
    }

    async fn api_get(&self, token: &SecretString, path: &str) -> Result<Value, Failure> {
        let request = self
            .http
            .get(&http::join(&self.api, path))
            .bearer_auth(token.expose_secret())
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28");
        self.http.send_json(request, MAX_ANSWER).await
    }

    async fn identity(&self, token: &SecretString) -> Result<ExternalIdentity, ProviderError> {
        let user = self
            .api_get(token, "/user")
            .await
            .map_err(|f| ProviderError::Other(format!("GET /user {f}")))?;
        let subject = match user.get("id") {
            Some(Value::Number(n)) if n.as_u64().is_some() => n.to_string(),
            _ => {
                return Err(ProviderError::Other(
                    "GET /user: no numeric `id`".to_owned(),
                ))
            }
        };
        let text = |key: &str| {
            user.get(key)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        // A profile without a display name shows the login; so do we.
        let full_name = text("name").or_else(|| text("login"));
        let emails = self
            .api_get(token, "/user/emails")
            .await
            .map_err(|f| ProviderError::Other(format!("GET /user/emails {f}")))?;
        let Some(list) = emails.as_array() else {
            return Err(ProviderError::Other(
                "GET /user/emails: not a list".to_owned(),
            ));
        };
        let primary = list
            .iter()
            .find(|e| e.get("primary") == Some(&Value::Bool(true)));
        let email = primary
            .and_then(|e| e.get("email"))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        let email_verified =
            email.is_some() && primary.and_then(|e| e.get("verified")) == Some(&Value::Bool(true));
        Ok(ExternalIdentity {
            issuer: self.issuer.clone(),
            subject,
            email,
            email_verified,
            full_name,
        })
    }
}

#[async_trait]
impl IdentityProvider for GitHubProvider {
    async fn authorization_url(
        &self,
        req: AuthorizationRequest<'_>,
    ) -> Result<String, ProviderError> {
        // No nonce: there is no ID token to carry it back; `state` and
        // PKCE bind the code to the flow.
        let mut url = self.authorization_endpoint.clone();
        url.query_pairs_mut()
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", req.redirect_uri)
            .append_pair("scope", &self.scope)
            .append_pair("state", req.state)
            .append_pair("code_challenge", req.pkce_challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(url.into())
    }

    async fn redeem_code(
        &self,
        req: CodeRedemption<'_>,
    ) -> Result<ExternalIdentity, ProviderError> {
        let run = async {
            let token = self.access_token(&req).await?;
            self.identity(&token).await
        };
        run.await.map_err(|e| crate::named(&self.name, e))
    }
}
