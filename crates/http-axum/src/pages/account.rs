//! Pages of a signed-in account: the overview (`/me`: profile, password,
//! address, deletion, sign-out), sessions, the authenticator app, linked
//! sign-in methods. Every one needs the page session (`signed_in`).

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use minijinja::{context, Value};
use regstack_core::{AuthError, Engine, Principal};
use regstack_ports::{DisplayName, Email, NewPassword, SessionId};
use secrecy::{ExposeSecret, SecretString};

use super::{
    checked_form, explain, log_if_internal, signed_in, status_of, Csrf, NoticeQuery, Pages,
    PagesExt,
};
use crate::extract::Client;

type E = State<Arc<Engine>>;

pub(super) fn router() -> Router<Arc<Engine>> {
    Router::new()
        .route("/me", get(me_page))
        .route("/profile", post(profile_post))
        .route("/password", post(password_post))
        .route("/email", post(email_post))
        .route("/delete", post(delete_post))
        .route("/logout", post(logout_post))
        .route("/sessions", get(sessions_page))
        .route("/sessions/revoke", post(revoke_post))
        .route("/sessions/revoke-all", post(revoke_all_post))
        .route("/totp", get(totp_page))
        .route("/totp/setup", post(totp_setup_post))
        .route("/totp/confirm", post(totp_confirm_post))
        .route("/totp/disable", post(totp_disable_post))
        .route("/totp/backup-codes", post(backup_codes_post))
        .route("/methods", get(methods_page))
        .route("/methods/link", post(link_post))
        .route("/methods/unlink", post(unlink_post))
}

fn when(t: &regstack_ports::Timestamp) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn me_ctx(e: &Engine, principal: &Principal) -> Value {
    let u = &principal.user;
    context! {
        email => u.email.as_str(),
        full_name => u.full_name.clone().unwrap_or_default(),
        mfa => u.is_mfa_enabled,
        has_password => u.password_hash.is_some(),
        enable_account_deletion => e.config().enable_account_deletion,
        oauth => !e.oauth_providers().is_empty(),
    }
}

/// A signed-in page: the principal and the cookies a refresh set, or the
/// response that sends the browser to sign in.
macro_rules! session {
    ($e:expr, $p:expr, $headers:expr, $c:expr) => {
        match signed_in(&$e, &$p, &$headers, &$c).await {
            Ok(x) => x,
            Err(r) => return r,
        }
    };
}

/// A signed-in form post: checked form, then the session.
macro_rules! session_form {
    ($e:expr, $p:expr, $req:expr, $c:expr) => {{
        let (headers, f) = match checked_form(&$p, $req).await {
            Ok(x) => x,
            Err(r) => return r,
        };
        let (principal, cookies) = session!($e, $p, headers, $c);
        (headers, f, principal, cookies)
    }};
}

async fn me_page(
    State(e): E,
    axum::Extension(p): PagesExt,
    Query(q): Query<NoticeQuery>,
    Client(c): Client,
    headers: HeaderMap,
) -> Response {
    let (principal, cookies) = session!(e, p, headers, c);
    let csrf = Csrf::of(&headers);
    p.render(
        StatusCode::OK,
        "me.html",
        context! { notice => q.notice(), ..me_ctx(&e, &principal) },
        &csrf,
        cookies,
    )
}

/// The overview again with a refusal tied to `field` (`form` names which
/// form it belongs to).
fn me_again(
    e: &Engine,
    p: &Pages,
    principal: &Principal,
    headers: &HeaderMap,
    cookies: Vec<HeaderValue>,
    err: &AuthError,
    field: &str,
) -> Response {
    log_if_internal(err);
    me_error(
        e,
        p,
        principal,
        headers,
        cookies,
        status_of(err),
        explain(err),
        field,
    )
}

#[allow(clippy::too_many_arguments)]
fn me_error(
    e: &Engine,
    p: &Pages,
    principal: &Principal,
    headers: &HeaderMap,
    cookies: Vec<HeaderValue>,
    status: StatusCode,
    error: String,
    field: &str,
) -> Response {
    let csrf = Csrf::of(headers);
    p.render(
        status,
        "me.html",
        context! { error => error, error_field => field, ..me_ctx(e, principal) },
        &csrf,
        cookies,
    )
}

async fn profile_post(
    State(e): E,
    axum::Extension(p): PagesExt,
    Client(c): Client,
    req: Request,
) -> Response {
    let (headers, f, principal, cookies) = session_form!(e, p, req, c);
    let name = f.get("full_name").trim();
    let full_name = if name.is_empty() {
        None
    } else {
        match DisplayName::parse(name) {
            Ok(n) => Some(n),
            Err(_) => {
                return me_error(
                    &e,
                    &p,
                    &principal,
                    &headers,
                    cookies,
                    StatusCode::BAD_REQUEST,
                    "Use at most 200 characters for your name.".into(),
                    "full_name",
                )
            }
        }
    };
    match e.update_profile(&principal, full_name).await {
        Ok(_) => p.see_other("/me?notice=profile-saved", cookies),
        Err(err) => me_again(&e, &p, &principal, &headers, cookies, &err, "full_name"),
    }
}

async fn password_post(
    State(e): E,
    axum::Extension(p): PagesExt,
    Client(c): Client,
    req: Request,
) -> Response {
    let (headers, f, principal, cookies) = session_form!(e, p, req, c);
    let Ok(new) = NewPassword::parse(f.secret("new_password")) else {
        return me_error(
            &e,
            &p,
            &principal,
            &headers,
            cookies,
            StatusCode::BAD_REQUEST,
            "Choose a new password of 8 to 128 characters.".into(),
            "new_password",
        );
    };
    match e
        .change_password(&principal, &f.secret("current_password"), &new, &c)
        .await
    {
        Ok(()) => p.see_other("/me?notice=password-changed", cookies),
        Err(err @ AuthError::WrongCurrentPassword) => me_again(
            &e,
            &p,
            &principal,
            &headers,
            cookies,
            &err,
            "current_password",
        ),
        Err(err) => me_again(&e, &p, &principal, &headers, cookies, &err, "new_password"),
    }
}

async fn email_post(
    State(e): E,
    axum::Extension(p): PagesExt,
    Client(c): Client,
    req: Request,
) -> Response {
    let (headers, f, principal, cookies) = session_form!(e, p, req, c);
    let Ok(new) = Email::parse(f.get("new_email")) else {
        return me_error(
            &e,
            &p,
            &principal,
            &headers,
            cookies,
            StatusCode::BAD_REQUEST,
            "Type the new address, like name@example.com.".into(),
            "new_email",
        );
    };
    match e
        .request_email_change(&principal, &new, &f.secret("email_password"), &c)
        .await
    {
        // Taken or not, the same notice: the page never tells.
        Ok(()) | Err(AuthError::EmailTaken) => p.see_other("/me?notice=email-change-sent", cookies),
        Err(err @ AuthError::WrongCurrentPassword) => me_again(
            &e,
            &p,
            &principal,
            &headers,
            cookies,
            &err,
            "email_password",
        ),
        Err(err) => me_again(&e, &p, &principal, &headers, cookies, &err, "new_email"),
    }
}

async fn delete_post(
    State(e): E,
    axum::Extension(p): PagesExt,
    Client(c): Client,
    req: Request,
) -> Response {
    let (headers, f, principal, cookies) = session_form!(e, p, req, c);
    match e
        .delete_account(&principal, &f.secret("delete_password"), &c)
        .await
    {
        Ok(()) => p.see_other("/login?notice=deleted", p.clear_session()),
        Err(err) => me_again(
            &e,
            &p,
            &principal,
            &headers,
            cookies,
            &err,
            "delete_password",
        ),
    }
}

async fn logout_post(
    State(e): E,
    axum::Extension(p): PagesExt,
    Client(c): Client,
    req: Request,
) -> Response {
    let (_headers, _f, principal, _cookies) = session_form!(e, p, req, c);
    if let Err(err) = e.logout(&principal, &c).await {
        log_if_internal(&err);
    }
    p.see_other("/login?notice=signed-out", p.clear_session())
}

async fn sessions_view(
    e: &Engine,
    p: &Pages,
    principal: &Principal,
    headers: &HeaderMap,
    cookies: Vec<HeaderValue>,
    notice: Option<&str>,
    error: Option<String>,
) -> Response {
    let csrf = Csrf::of(headers);
    let list = match e.list_sessions(principal).await {
        Ok(l) => l,
        Err(err) => {
            log_if_internal(&err);
            Vec::new()
        }
    };
    let rows: Vec<Value> = list
        .iter()
        .map(|s| {
            context! {
                id => s.id.as_str(),
                current => s.id == principal.session.id,
                user_agent => s.user_agent.clone().unwrap_or_else(|| "Unknown device".into()),
                ip => s.ip.clone().unwrap_or_default(),
                created => when(&s.created_at),
                last_used => when(&s.last_used_at),
            }
        })
        .collect();
    p.render(
        if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        "sessions.html",
        context! { sessions => rows, notice => notice, error => error },
        &csrf,
        cookies,
    )
}

async fn sessions_page(
    State(e): E,
    axum::Extension(p): PagesExt,
    Query(q): Query<NoticeQuery>,
    Client(c): Client,
    headers: HeaderMap,
) -> Response {
    let (principal, cookies) = session!(e, p, headers, c);
    sessions_view(&e, &p, &principal, &headers, cookies, q.notice(), None).await
}

async fn revoke_post(
    State(e): E,
    axum::Extension(p): PagesExt,
    Client(c): Client,
    req: Request,
) -> Response {
    let (headers, f, principal, cookies) = session_form!(e, p, req, c);
    let Some(id) = SessionId::parse(f.get("session_id")) else {
        return sessions_view(
            &e,
            &p,
            &principal,
            &headers,
            cookies,
            None,
            Some(explain(&AuthError::SessionNotFound)),
        )
        .await;
    };
    if id == principal.session.id {
        // "Sign out this device" on the current row is a sign-out.
        if let Err(err) = e.logout(&principal, &c).await {
            log_if_internal(&err);
        }
        return p.see_other("/login?notice=signed-out", p.clear_session());
    }
    match e.revoke_session(&principal, &id, &c).await {
        Ok(()) => p.see_other("/sessions?notice=session-ended", cookies),
        Err(err) => {
            log_if_internal(&err);
            sessions_view(
                &e,
                &p,
                &principal,
                &headers,
                cookies,
                None,
                Some(explain(&err)),
            )
            .await
        }
    }
}

async fn revoke_all_post(
    State(e): E,
    axum::Extension(p): PagesExt,
    Client(c): Client,
    req: Request,
) -> Response {
    let (_headers, _f, principal, _cookies) = session_form!(e, p, req, c);
    if let Err(err) = e.logout_all(&principal, &c).await {
        log_if_internal(&err);
    }
    p.see_other("/login?notice=signed-out-everywhere", p.clear_session())
}

fn totp_view(
    p: &Pages,
    principal: &Principal,
    headers: &HeaderMap,
    cookies: Vec<HeaderValue>,
    notice: Option<&str>,
    error: Option<(StatusCode, String, &str)>,
) -> Response {
    let csrf = Csrf::of(headers);
    let (status, error, field) = match error {
        Some((s, e, f)) => (s, Some(e), Some(f)),
        None => (StatusCode::OK, None, None),
    };
    p.render(
        status,
        "totp.html",
        context! {
            mfa => principal.user.is_mfa_enabled,
            notice => notice,
            error => error,
            error_field => field,
        },
        &csrf,
        cookies,
    )
}

async fn totp_page(
    State(e): E,
    axum::Extension(p): PagesExt,
    Query(q): Query<NoticeQuery>,
    Client(c): Client,
    headers: HeaderMap,
) -> Response {
    let (principal, cookies) = session!(e, p, headers, c);
    totp_view(&p, &principal, &headers, cookies, q.notice(), None)
}

/// The QR code as inline SVG: the XML prolog dropped (it is not allowed
/// inside HTML) and labelled for assistive technology.
fn inline_svg(svg: &str) -> String {
    let start = svg.find("<svg").unwrap_or(0);
    svg[start..].replacen(
        "<svg",
        "<svg role=\"img\" aria-label=\"QR code for your authenticator app\" class=\"rs-qr\"",
        1,
    )
}

async fn totp_setup_post(
    State(e): E,
    axum::Extension(p): PagesExt,
    Client(c): Client,
    req: Request,
) -> Response {
    let (headers, f, principal, cookies) = session_form!(e, p, req, c);
    match e
        .totp_setup(&principal.user, &f.secret("current_password"))
        .await
    {
        Ok(s) => enrol_view(
            &p,
            &headers,
            cookies,
            &s.pending_token,
            &s.secret,
            &s.qr_svg,
            None,
        ),
        Err(err) => {
            log_if_internal(&err);
            totp_view(
                &p,
                &principal,
                &headers,
                cookies,
                None,
                Some((status_of(&err), explain(&err), "current_password")),
            )
        }
    }
}

fn enrol_view(
    p: &Pages,
    headers: &HeaderMap,
    cookies: Vec<HeaderValue>,
    pending: &SecretString,
    secret: &SecretString,
    qr: &SecretString,
    error: Option<(StatusCode, String)>,
) -> Response {
    let csrf = Csrf::of(headers);
    let (status, error) = match error {
        Some((s, e)) => (s, Some(e)),
        None => (StatusCode::OK, None),
    };
    p.render(
        status,
        "totp_enrol.html",
        context! {
            pending_token => pending.expose_secret(),
            secret => secret.expose_secret(),
            qr_svg => Value::from_safe_string(inline_svg(qr.expose_secret())),
            error => error,
            error_field => "code",
        },
        &csrf,
        cookies,
    )
}

fn codes_view(
    p: &Pages,
    headers: &HeaderMap,
    cookies: Vec<HeaderValue>,
    codes: &regstack_core::engine::BackupCodes,
) -> Response {
    let csrf = Csrf::of(headers);
    let list: Vec<&str> = codes.0.iter().map(|c| c.expose_secret()).collect();
    p.render(
        StatusCode::OK,
        "backup_codes.html",
        context! { codes => list },
        &csrf,
        cookies,
    )
}

async fn totp_confirm_post(
    State(e): E,
    axum::Extension(p): PagesExt,
    Client(c): Client,
    req: Request,
) -> Response {
    let (headers, f, principal, cookies) = session_form!(e, p, req, c);
    let pending = f.secret("pending_token");
    let code: String = f
        .get("code")
        .chars()
        .filter(|ch| !ch.is_whitespace())
        .collect();
    match e
        .totp_confirm(
            &principal.user,
            &principal.session.id,
            &pending,
            &SecretString::from(code),
            &c,
        )
        .await
    {
        Ok(codes) => codes_view(&p, &headers, cookies, &codes),
        Err(err @ AuthError::MfaSetupInvalid) => {
            log_if_internal(&err);
            totp_view(
                &p,
                &principal,
                &headers,
                cookies,
                None,
                Some((status_of(&err), explain(&err), "current_password")),
            )
        }
        Err(err) => {
            log_if_internal(&err);
            // Show the same enrolment again: the secret rides in the form
            // the person already has; ask them to go back to it.
            totp_view(
                &p,
                &principal,
                &headers,
                cookies,
                None,
                Some((
                    status_of(&err),
                    format!(
                        "{} Start the set-up again if the code keeps failing.",
                        explain(&err)
                    ),
                    "current_password",
                )),
            )
        }
    }
}

async fn totp_disable_post(
    State(e): E,
    axum::Extension(p): PagesExt,
    Client(c): Client,
    req: Request,
) -> Response {
    let (headers, f, principal, cookies) = session_form!(e, p, req, c);
    match e
        .totp_disable(
            &principal.user,
            &principal.session.id,
            &f.secret("current_password"),
            &c,
        )
        .await
    {
        Ok(()) => p.see_other("/totp?notice=totp-disabled", cookies),
        Err(err) => {
            log_if_internal(&err);
            totp_view(
                &p,
                &principal,
                &headers,
                cookies,
                None,
                Some((status_of(&err), explain(&err), "current_password")),
            )
        }
    }
}

async fn backup_codes_post(
    State(e): E,
    axum::Extension(p): PagesExt,
    Client(c): Client,
    req: Request,
) -> Response {
    let (headers, f, principal, cookies) = session_form!(e, p, req, c);
    match e
        .regenerate_backup_codes(&principal.user, &f.secret("current_password"))
        .await
    {
        Ok(codes) => codes_view(&p, &headers, cookies, &codes),
        Err(err) => {
            log_if_internal(&err);
            totp_view(
                &p,
                &principal,
                &headers,
                cookies,
                None,
                Some((status_of(&err), explain(&err), "current_password")),
            )
        }
    }
}

async fn methods_view(
    e: &Engine,
    p: &Pages,
    principal: &Principal,
    headers: &HeaderMap,
    cookies: Vec<HeaderValue>,
    notice: Option<&str>,
    error: Option<String>,
) -> Response {
    let csrf = Csrf::of(headers);
    let linked = match e.oauth_identities(&principal.user.id).await {
        Ok(l) => l,
        Err(err) => {
            log_if_internal(&err);
            Vec::new()
        }
    };
    let names: Vec<String> = linked.iter().map(|i| i.provider.clone()).collect();
    let rows: Vec<Value> = linked
        .iter()
        .map(|i| {
            context! {
                provider => &i.provider,
                email => i.email.clone().unwrap_or_default(),
                linked_at => when(&i.linked_at),
            }
        })
        .collect();
    let available: Vec<String> = e
        .oauth_providers()
        .names()
        .into_iter()
        .filter(|n| !names.contains(n))
        .collect();
    p.render(
        if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        "methods.html",
        context! {
            linked => rows,
            available => available,
            has_password => principal.user.password_hash.is_some(),
            notice => notice,
            error => error,
        },
        &csrf,
        cookies,
    )
}

async fn methods_page(
    State(e): E,
    axum::Extension(p): PagesExt,
    Query(q): Query<NoticeQuery>,
    Client(c): Client,
    headers: HeaderMap,
) -> Response {
    let (principal, cookies) = session!(e, p, headers, c);
    let notice = q
        .notice()
        .or_else(|| q.error.as_deref().and_then(super::oauth_error_text));
    methods_view(&e, &p, &principal, &headers, cookies, notice, None).await
}

async fn link_post(
    State(e): E,
    axum::Extension(p): PagesExt,
    Client(c): Client,
    req: Request,
) -> Response {
    let (headers, f, principal, mut cookies) = session_form!(e, p, req, c);
    let binding = crate::cookie::read_oauth_binding(&headers).map(SecretString::from);
    let to = format!("{}/methods?notice=linked", p.ui);
    match e
        .oauth_start(
            f.get("provider"),
            Some(&to),
            Some(&principal.user.id),
            binding.as_ref(),
            &c,
        )
        .await
    {
        Ok(s) => {
            cookies.extend(super::public::binding_cookie(&e, &s));
            super::see_other_abs(&s.authorization_url, cookies)
        }
        Err(err) => {
            log_if_internal(&err);
            methods_view(
                &e,
                &p,
                &principal,
                &headers,
                cookies,
                None,
                Some(explain(&err)),
            )
            .await
        }
    }
}

async fn unlink_post(
    State(e): E,
    axum::Extension(p): PagesExt,
    Client(c): Client,
    req: Request,
) -> Response {
    let (headers, f, principal, cookies) = session_form!(e, p, req, c);
    match e.oauth_unlink(&principal.user, f.get("provider"), &c).await {
        Ok(()) => p.see_other("/methods?notice=unlinked", cookies),
        Err(err) => {
            log_if_internal(&err);
            methods_view(
                &e,
                &p,
                &principal,
                &headers,
                cookies,
                None,
                Some(explain(&err)),
            )
            .await
        }
    }
}
