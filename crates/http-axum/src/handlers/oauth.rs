//! OAuth / OpenID Connect routes (regstack's `routers/oauth.py`), mounted
//! only when the engine has providers: start and link start, the provider's
//! callback, the single-use exchange, unlink and the providers list.
//!
//! The browser-binding cookie (`crate::cookie::OAUTH_BINDING_COOKIE`) is
//! set by both starts and read by the callback and the exchange: a flow
//! finished or exchanged by another browser finds nothing, so nobody can
//! start a flow and have a victim finish it into the attacker's session
//! (or link the victim's identity to the attacker's account). Redirects
//! carry only our own values — the exchange id or an error code from a
//! fixed set — never what the provider sent.

use std::sync::Arc;

use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use regstack_core::engine::{CallbackQuery, ExchangeOutcome, OAuthStart};
use regstack_core::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::mfa::signed_in_answer_with;
use super::{ok_json, Answer, Engine_, Http};
use crate::body::{Fields, FromJsonObject, JsonBody, Len};
use crate::cookie;
use crate::error::ApiError;
use crate::extract::{Client, CurrentUser};
use crate::wire::iso_offset;

/// The OAuth routes, relative to the API prefix.
pub fn router() -> Router<Arc<Engine>> {
    Router::new()
        .route("/oauth/providers", get(providers))
        .route("/oauth/exchange", post(exchange))
        .route("/oauth/{provider}/start", get(start))
        .route("/oauth/{provider}/link/start", post(link_start))
        .route("/oauth/{provider}/link", delete(unlink))
        .route("/oauth/{provider}/callback", get(callback))
}

/// `redirect_to` of the starts.
#[derive(Deserialize)]
pub struct StartQuery {
    redirect_to: Option<String>,
}

fn binding(headers: &HeaderMap) -> Option<SecretString> {
    cookie::read_oauth_binding(headers).map(SecretString::from)
}

fn with_binding(mut response: axum::response::Response, e: &Engine, s: &OAuthStart) -> Answer {
    if let Some(c) = cookie::set_oauth_binding(
        s.browser_binding.expose_secret(),
        // The flow's round trip, then the exchange after it.
        e.config().oauth.state_ttl_seconds + e.config().oauth.completion_ttl_seconds,
    ) {
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(response)
}

fn found(location: &str) -> axum::response::Response {
    match HeaderValue::from_str(location) {
        Ok(v) => (StatusCode::FOUND, [(header::LOCATION, v)]).into_response(),
        Err(_) => {
            ApiError::Internal("redirect target is not a header value".into()).into_response()
        }
    }
}

/// `GET /oauth/{p}/start` → 302 to the provider, with the binding cookie.
#[utoipa::path(get, path = "/oauth/{provider}/start", tag = "oauth", params(("provider" = String, Path, description = "A configured provider's name."), ("redirect_to" = Option<String>, Query, description = "Same-origin path or URL to land on afterwards.")), responses((status = 302, description = "To the provider."), (status = 400, description = "redirect_to is not same-origin.", body = super::doc::Detail), (status = 404, description = "Unknown provider.", body = super::doc::Detail)))]
pub async fn start(
    State(e): Engine_,
    Path(provider): Path<String>,
    Query(q): Query<StartQuery>,
    Client(c): Client,
    headers: HeaderMap,
) -> Answer {
    let s = e
        .oauth_start(
            &provider,
            q.redirect_to.as_deref(),
            None,
            binding(&headers).as_ref(),
            &c,
        )
        .await?;
    with_binding(found(&s.authorization_url), &e, &s)
}

/// `LinkStartResponse`.
#[derive(Serialize, utoipa::ToSchema)]
struct LinkStartResponse {
    authorization_url: String,
}

/// `POST /oauth/{p}/link/start` → 200 `{authorization_url}`, with the
/// binding cookie (the browser then navigates there itself).
#[utoipa::path(post, path = "/oauth/{provider}/link/start", tag = "oauth", params(("provider" = String, Path, description = "A configured provider's name."), ("redirect_to" = Option<String>, Query, description = "Same-origin path or URL to land on afterwards.")), security(("bearer" = []), ("password" = [])), responses((status = 200, description = "Where to send the browser.", body = LinkStartResponse), (status = 400, description = "redirect_to is not same-origin.", body = super::doc::Detail), (status = 404, description = "Unknown provider.", body = super::doc::Detail)))]
pub async fn link_start(
    State(e): Engine_,
    Path(provider): Path<String>,
    Query(q): Query<StartQuery>,
    CurrentUser(p): CurrentUser,
    Client(c): Client,
    headers: HeaderMap,
) -> Answer {
    let s = e
        .oauth_start(
            &provider,
            q.redirect_to.as_deref(),
            Some(&p.user.id),
            binding(&headers).as_ref(),
            &c,
        )
        .await?;
    let body = Json(LinkStartResponse {
        authorization_url: s.authorization_url.clone(),
    });
    with_binding((StatusCode::OK, body).into_response(), &e, &s)
}

/// The callback's query, read leniently: whatever the provider (or
/// someone crafting the URL) sends, the browser ends on the login page with
/// an error code, never on a JSON error. A repeated key keeps its last
/// value, anything else is ignored, and an empty `error` counts as absent
/// (as regstack reads it).
#[derive(Default)]
pub struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    iss: Option<String>,
}

impl CallbackParams {
    fn parse(query: Option<&str>) -> Self {
        let mut p = Self::default();
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let slot = match k.as_ref() {
                "code" => &mut p.code,
                "state" => &mut p.state,
                "error" => &mut p.error,
                "iss" => &mut p.iss,
                _ => continue,
            };
            *slot = Some(v.into_owned());
        }
        if p.error.as_deref() == Some("") {
            p.error = None;
        }
        p
    }
}

/// `GET /oauth/{p}/callback` → 302 to `{ui_prefix}/oauth-complete?id=…`, or
/// to `{ui_prefix}/login?error=<code>`.
#[utoipa::path(get, path = "/oauth/{provider}/callback", tag = "oauth", params(("provider" = String, Path, description = "A configured provider's name."), ("code" = Option<String>, Query, description = "Authorization code."), ("state" = Option<String>, Query, description = "The state handed out."), ("error" = Option<String>, Query, description = "The provider's refusal."), ("iss" = Option<String>, Query, description = "RFC 9207 issuer.")), responses((status = 302, description = "To the UI, with an exchange id or an error."), (status = 404, description = "Unknown provider.", body = super::doc::Detail)))]
pub async fn callback(
    State(e): Engine_,
    Path(provider): Path<String>,
    RawQuery(raw): RawQuery,
    Client(c): Client,
    headers: HeaderMap,
) -> Answer {
    let q = CallbackParams::parse(raw.as_deref());
    let ui = e.config().ui_prefix.trim_end_matches('/').to_owned();
    let query = CallbackQuery {
        code: q.code.as_deref(),
        state: q.state.as_deref(),
        error: q.error.as_deref(),
        iss: q.iss.as_deref(),
    };
    let location = match e
        .oauth_callback(&provider, &query, binding(&headers).as_ref(), &c)
        .await
    {
        Ok(id) => format!("{ui}/oauth-complete?id={}", id.expose_secret()),
        Err(code) => format!("{ui}/login?error={}", code.code()),
    };
    Ok(found(&location))
}

/// `ExchangeRequest`.
pub struct ExchangeRequest {
    id: SecretString,
}
impl FromJsonObject for ExchangeRequest {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        Some(Self {
            id: f.secret(
                "id",
                Len {
                    min: Some(8),
                    max: Some(128),
                },
            )?,
        })
    }
}

/// `ExchangeResponse` in its second-factor shape (the session shape is the
/// token answer plus `redirect_to`, `was_new_account` and `mfa_required`).
#[derive(Serialize, utoipa::ToSchema)]
struct MfaExchangeResponse {
    #[schema(value_type = String)]
    access_token: &'static str,
    redirect_to: String,
    was_new_account: bool,
    #[schema(value_type = String)]
    token_type: &'static str,
    expires_in: u64,
    mfa_required: bool,
    mfa_pending_token: String,
    #[schema(value_type = String)]
    delivery: &'static str,
    #[schema(value_type = Vec<String>)]
    methods: Vec<&'static str>,
}

/// `ExchangeResponse` as documented: the session shape (token fields and
/// `ExchangeExtra`) and the second-factor shape ([`MfaExchangeResponse`])
/// both fit it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ExchangeResponse {
    access_token: String,
    token_type: String,
    expires_in: u64,
    refresh_token: Option<String>,
    refresh_expires_in: Option<u64>,
    redirect_to: String,
    was_new_account: bool,
    mfa_required: bool,
    mfa_pending_token: Option<String>,
    delivery: Option<String>,
    methods: Option<Vec<String>>,
}

/// `POST /oauth/exchange` → 200 `ExchangeResponse`: the session (with the
/// refresh token as `/login` gives it), or `mfa_required` with the pending
/// token for `/login/mfa-confirm`.
#[utoipa::path(post, path = "/oauth/exchange", tag = "oauth", request_body = ExchangeRequest, responses((status = 200, description = "The session (or, with mfa_required, the second-factor challenge).", body = ExchangeResponse), (status = 404, description = "Unknown or consumed id.", body = super::doc::Detail)))]
pub async fn exchange(
    State(e): Engine_,
    axum::Extension(http): Http,
    Client(c): Client,
    headers: HeaderMap,
    JsonBody(b): JsonBody<ExchangeRequest>,
) -> Answer {
    match e
        .oauth_exchange(&b.id, binding(&headers).as_ref(), &c)
        .await?
    {
        ExchangeOutcome::SignedIn {
            session,
            redirect_to,
            was_new,
        } => {
            let extra = ExchangeExtra {
                redirect_to,
                was_new_account: was_new,
                mfa_required: false,
                mfa_pending_token: None,
            };
            signed_in_answer_with(&e, &http, *session, extra)
        }
        ExchangeOutcome::MfaRequired {
            pending,
            redirect_to,
            was_new,
        } => ok_json(
            StatusCode::OK,
            MfaExchangeResponse {
                access_token: "",
                redirect_to,
                was_new_account: was_new,
                token_type: "bearer",
                expires_in: pending.expires_in,
                mfa_required: true,
                mfa_pending_token: pending.mfa_pending_token.expose_secret().to_owned(),
                delivery: pending.delivery.name(),
                methods: pending.methods.iter().map(|m| m.name()).collect(),
            },
        ),
    }
}

/// The exchange's own fields of `ExchangeResponse`, beside the token's.
#[derive(Serialize, utoipa::ToSchema)]
struct ExchangeExtra {
    redirect_to: String,
    was_new_account: bool,
    mfa_required: bool,
    mfa_pending_token: Option<String>,
}

/// `LinkedIdentitySummary`.
#[derive(Serialize, utoipa::ToSchema)]
struct LinkedIdentitySummary {
    provider: String,
    email: Option<String>,
    linked_at: String,
    last_used_at: Option<String>,
}

/// `ProvidersResponse`.
#[derive(Serialize, utoipa::ToSchema)]
struct ProvidersResponse {
    available: Vec<String>,
    linked: Vec<LinkedIdentitySummary>,
}

/// `GET /oauth/providers` → the configured providers and the bearer's
/// identities.
#[utoipa::path(get, path = "/oauth/providers", tag = "oauth", security(("bearer" = []), ("password" = [])), responses((status = 200, description = "Configured providers and the caller's linked identities.", body = ProvidersResponse)))]
pub async fn providers(State(e): Engine_, CurrentUser(p): CurrentUser) -> Answer {
    let linked = e
        .oauth_identities(&p.user.id)
        .await?
        .into_iter()
        .map(|i| LinkedIdentitySummary {
            provider: i.provider,
            email: i.email,
            linked_at: iso_offset(&i.linked_at),
            last_used_at: i.last_used_at.as_ref().map(iso_offset),
        })
        .collect();
    ok_json(
        StatusCode::OK,
        ProvidersResponse {
            available: e.oauth_providers().names(),
            linked,
        },
    )
}

/// `DELETE /oauth/{p}/link` → 200 `{"message": "Unlinked {p}."}`.
#[utoipa::path(delete, path = "/oauth/{provider}/link", tag = "oauth", params(("provider" = String, Path, description = "A configured provider's name.")), security(("bearer" = []), ("password" = [])), responses((status = 200, description = "Unlinked.", body = UnlinkedResponse), (status = 400, description = "The only sign-in method.", body = super::doc::Detail), (status = 404, description = "Not linked, or unknown provider.", body = super::doc::Detail)))]
pub async fn unlink(
    State(e): Engine_,
    Path(provider): Path<String>,
    CurrentUser(p): CurrentUser,
    Client(c): Client,
) -> Answer {
    e.oauth_unlink(&p.user, &provider, &c).await?;
    ok_json(
        StatusCode::OK,
        UnlinkedResponse {
            message: format!("Unlinked {provider}."),
        },
    )
}

/// `MessageResponse` with a message built from the request.
#[derive(Serialize, utoipa::ToSchema)]
struct UnlinkedResponse {
    message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callback_query_is_read_leniently() {
        let p = CallbackParams::parse(Some("code=a&code=b&state=s&error=&x=1&iss=https%3A%2F%2Fi"));
        assert_eq!(p.code.as_deref(), Some("b"));
        assert_eq!(p.state.as_deref(), Some("s"));
        assert_eq!(p.error, None);
        assert_eq!(p.iss.as_deref(), Some("https://i"));
        let p = CallbackParams::parse(None);
        assert!(p.code.is_none() && p.state.is_none() && p.error.is_none());
        let p = CallbackParams::parse(Some("error=access_denied&error_description=%0d%0a"));
        assert_eq!(p.error.as_deref(), Some("access_denied"));
    }
}
