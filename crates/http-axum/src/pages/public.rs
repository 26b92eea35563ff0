//! Pages a visitor uses before a session exists: sign-in and its second
//! steps, registration, the mailed links (verify, reset, email change) and
//! the OAuth start and completion.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use minijinja::context;
use regstack_core::engine::{ExchangeOutcome, LoginOutcome, Method, PresentedCode, Registration};
use regstack_core::{AuthError, Engine};
use regstack_ports::{DisplayName, Email, NewPassword};
use secrecy::{ExposeSecret, SecretString};

use super::{
    checked_form, explain, log_if_internal, oauth_error_text, read_cookie, status_of, Csrf,
    NoticeQuery, Pages, PagesExt, PAGE_STEP_COOKIE,
};
use crate::cookie;
use crate::extract::Client;

type E = State<Arc<Engine>>;

pub(super) fn router() -> Router<Arc<Engine>> {
    Router::new()
        .route(
            "/",
            get(|axum::Extension(p): PagesExt| async move { p.see_other("/me", Vec::new()) }),
        )
        .route("/login", get(login_page).post(login_post))
        .route("/register", get(register_page).post(register_post))
        .route("/verify", get(verify_page).post(verify_post))
        .route("/forgot", get(forgot_page).post(forgot_post))
        .route("/reset", get(reset_page).post(reset_post))
        .route("/reset-password", get(reset_page).post(reset_post))
        .route("/mfa-confirm", get(mfa_page).post(mfa_post))
        .route("/change-password", get(change_page).post(change_post))
        .route(
            "/confirm-email-change",
            get(email_change_page).post(email_change_post),
        )
        .route(
            "/email-change-confirm",
            get(email_change_page).post(email_change_post),
        )
        .route(
            "/revert-email-change",
            get(revert_email_change_page).post(revert_email_change_post),
        )
        .route("/oauth/{provider}/start", get(oauth_start))
        .route("/oauth-complete", get(oauth_complete))
}

fn providers(e: &Engine) -> Vec<String> {
    e.oauth_providers().names()
}

const EMAIL_HINT: &str = "Type your email address, like name@example.com.";

async fn login_page(
    State(e): E,
    axum::Extension(p): PagesExt,
    Query(q): Query<NoticeQuery>,
    headers: HeaderMap,
) -> Response {
    let csrf = Csrf::of(&headers);
    let error = q.error.as_deref().and_then(oauth_error_text);
    p.render(
        StatusCode::OK,
        "login.html",
        context! {
            notice => q.notice(),
            error => error,
            providers => providers(&e),
            allow_registration => e.config().registration_mode != regstack_core::RegistrationMode::Closed,
            enable_password_reset => e.config().enable_password_reset,
        },
        &csrf,
        Vec::new(),
    )
}

/// Renders the sign-in form again with `error` (and the address typed).
fn login_again(
    e: &Engine,
    p: &Pages,
    csrf: &Csrf,
    status: StatusCode,
    email: &str,
    error: String,
    field: Option<&str>,
) -> Response {
    p.render(
        status,
        "login.html",
        context! {
            email => email,
            error => error,
            error_field => field,
            providers => providers(e),
            allow_registration => e.config().registration_mode != regstack_core::RegistrationMode::Closed,
            enable_password_reset => e.config().enable_password_reset,
        },
        csrf,
        Vec::new(),
    )
}

async fn login_post(
    State(e): E,
    axum::Extension(p): PagesExt,
    Client(mut c): Client,
    req: Request,
) -> Response {
    let (headers, f) = match checked_form(&p, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let csrf = Csrf::of(&headers);
    let raw = f.get("email");
    let Ok(email) = Email::parse(raw) else {
        return login_again(
            &e,
            &p,
            &csrf,
            StatusCode::BAD_REQUEST,
            raw,
            EMAIL_HINT.into(),
            Some("email"),
        );
    };
    c.device_cookie = cookie::read_device(&headers).map(SecretString::from);
    match e.login(&email, &f.secret("password"), None, &c).await {
        Ok(outcome) => after_sign_in(&p, outcome, Vec::new()),
        Err(err) => {
            log_if_internal(&err);
            login_again(&e, &p, &csrf, status_of(&err), raw, explain(&err), None)
        }
    }
}

/// Where a sign-in step leads: the account page with a session, or the
/// second factor or the forced password change with a short-lived step
/// cookie.
fn after_sign_in(p: &Pages, outcome: LoginOutcome, mut cookies: Vec<HeaderValue>) -> Response {
    match outcome {
        LoginOutcome::SignedIn(s) => {
            cookies.extend(p.session_cookies(
                &s.access_token,
                s.expires_in,
                &s.refresh_token,
                s.refresh_expires_in,
            ));
            cookies.extend(p.clear_step());
            if let Some(d) = s.device_cookie.as_ref() {
                cookies.extend(cookie::set_device(d.expose_secret()));
            }
            p.see_other("/me", cookies)
        }
        LoginOutcome::MfaRequired(m) => {
            cookies.extend(p.step_cookie("mfa", &m.mfa_pending_token, m.expires_in));
            p.see_other("/mfa-confirm", cookies)
        }
        LoginOutcome::PasswordChangeRequired(c) => {
            cookies.extend(p.step_cookie("pw", &c.password_change_token, c.expires_in));
            p.see_other("/change-password", cookies)
        }
    }
}

/// The pending step's token when it is of `kind`.
fn step(headers: &HeaderMap, kind: &str) -> Option<SecretString> {
    let v = read_cookie(headers, PAGE_STEP_COOKIE)?;
    let (k, token) = v.split_once('.')?;
    (k == kind && !token.is_empty()).then(|| SecretString::from(token.to_owned()))
}

fn start_over(p: &Pages) -> Response {
    p.see_other("/login?error=expired", p.clear_step())
}

async fn mfa_page(axum::Extension(p): PagesExt, headers: HeaderMap) -> Response {
    if step(&headers, "mfa").is_none() {
        return start_over(&p);
    }
    let csrf = Csrf::of(&headers);
    p.render(
        StatusCode::OK,
        "mfa_confirm.html",
        context! {},
        &csrf,
        Vec::new(),
    )
}

async fn mfa_post(
    State(e): E,
    axum::Extension(p): PagesExt,
    Client(c): Client,
    req: Request,
) -> Response {
    let (headers, f) = match checked_form(&p, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(token) = step(&headers, "mfa") else {
        return start_over(&p);
    };
    let csrf = Csrf::of(&headers);
    let backup = f.get("method") == "backup_code";
    let code: String = f
        .get("code")
        .chars()
        .filter(|ch| !ch.is_whitespace())
        .collect();
    if code.is_empty() || code.len() > 32 {
        return p.render(
            StatusCode::BAD_REQUEST,
            "mfa_confirm.html",
            context! { error => "Type the code from your authenticator app (or a backup code).", error_field => "code" },
            &csrf,
            Vec::new(),
        );
    }
    let presented = PresentedCode {
        code: SecretString::from(code),
        method: Some(if backup {
            Method::BackupCode
        } else {
            Method::Totp
        }),
    };
    match e.confirm_sign_in(&token, &presented, &c).await {
        Ok(s) => after_sign_in(&p, LoginOutcome::SignedIn(Box::new(s)), Vec::new()),
        Err(err @ AuthError::MfaChallengeInvalid) => {
            log_if_internal(&err);
            start_over(&p)
        }
        Err(err) => {
            log_if_internal(&err);
            p.render(
                status_of(&err),
                "mfa_confirm.html",
                context! { error => explain(&err), error_field => "code" },
                &csrf,
                Vec::new(),
            )
        }
    }
}

async fn change_page(axum::Extension(p): PagesExt, headers: HeaderMap) -> Response {
    if step(&headers, "pw").is_none() {
        return start_over(&p);
    }
    let csrf = Csrf::of(&headers);
    p.render(
        StatusCode::OK,
        "change_password.html",
        context! {},
        &csrf,
        Vec::new(),
    )
}

async fn change_post(
    State(e): E,
    axum::Extension(p): PagesExt,
    Client(c): Client,
    req: Request,
) -> Response {
    let (headers, f) = match checked_form(&p, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(token) = step(&headers, "pw") else {
        return start_over(&p);
    };
    let csrf = Csrf::of(&headers);
    let again = |status, error: String| {
        p.render(
            status,
            "change_password.html",
            context! { error => error, error_field => "new_password" },
            &csrf,
            Vec::new(),
        )
    };
    let Some(new) = new_password(&f.secret("new_password")) else {
        return again(StatusCode::BAD_REQUEST, PASSWORD_HINT.into());
    };
    match e.complete_password_change(&token, &new, &c).await {
        Ok(outcome) => after_sign_in(&p, outcome, p.clear_step()),
        Err(AuthError::PasswordChangeTokenInvalid) => start_over(&p),
        Err(err) => {
            log_if_internal(&err);
            again(status_of(&err), explain(&err))
        }
    }
}

const PASSWORD_HINT: &str = "Choose a password of 8 to 128 characters.";

fn new_password(raw: &SecretString) -> Option<NewPassword> {
    NewPassword::parse(raw.clone()).ok()
}

async fn register_page(State(e): E, axum::Extension(p): PagesExt, headers: HeaderMap) -> Response {
    let csrf = Csrf::of(&headers);
    p.render(
        StatusCode::OK,
        "register.html",
        context! { invite => e.config().registration_mode == regstack_core::RegistrationMode::Invite },
        &csrf,
        Vec::new(),
    )
}

async fn register_post(
    State(e): E,
    axum::Extension(p): PagesExt,
    Client(c): Client,
    req: Request,
) -> Response {
    let (headers, f) = match checked_form(&p, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let csrf = Csrf::of(&headers);
    let invite = e.config().registration_mode == regstack_core::RegistrationMode::Invite;
    let again = |status, error: String, field: Option<&str>| {
        p.render(
            status,
            "register.html",
            context! {
                email => f.get("email"),
                full_name => f.get("full_name"),
                invite => invite,
                error => error,
                error_field => field,
            },
            &csrf,
            Vec::new(),
        )
    };
    let Ok(email) = Email::parse(f.get("email")) else {
        return again(StatusCode::BAD_REQUEST, EMAIL_HINT.into(), Some("email"));
    };
    let Some(password) = new_password(&f.secret("password")) else {
        return again(
            StatusCode::BAD_REQUEST,
            PASSWORD_HINT.into(),
            Some("password"),
        );
    };
    let name = f.get("full_name").trim();
    let full_name = if name.is_empty() {
        None
    } else {
        match DisplayName::parse(name) {
            Ok(n) => Some(n),
            Err(_) => {
                return again(
                    StatusCode::BAD_REQUEST,
                    "Use at most 200 characters for your name.".into(),
                    Some("full_name"),
                )
            }
        }
    };
    let code = f.get("invite_code").trim();
    let reg = Registration {
        email,
        password,
        full_name,
        invite_code: (!code.is_empty()).then(|| SecretString::from(code.to_owned())),
    };
    let inbox = || {
        p.render(
            StatusCode::OK,
            "check_inbox.html",
            context! {
                heading => "Check your inbox",
                text => "If this address can be used for a new account, we have sent it a link to confirm it. \
                         Open that link to finish. Nothing arrived after a few minutes? Check your spam folder, \
                         or sign in if you already have an account.",
            },
            &csrf,
            Vec::new(),
        )
    };
    match e.register(reg, &c).await {
        Ok(regstack_core::engine::Registered::Pending { .. }) => inbox(),
        Ok(regstack_core::engine::Registered::Active(_)) => {
            p.see_other("/login?notice=registered", Vec::new())
        }
        // The same answer as a new address: the page never tells.
        Err(AuthError::EmailTaken) => inbox(),
        Err(err @ AuthError::PasswordRefused(_)) => {
            again(status_of(&err), explain(&err), Some("password"))
        }
        Err(err) => {
            log_if_internal(&err);
            again(status_of(&err), explain(&err), None)
        }
    }
}

/// A page for a mailed link: the token rides in a form the person
/// submits, so a mail scanner that fetches the link spends nothing.
fn link_page(p: &Pages, name: &str, q: &NoticeQuery, headers: &HeaderMap) -> Response {
    let csrf = Csrf::of(headers);
    let token = q.token.clone().unwrap_or_default();
    let missing = token.is_empty();
    p.render(
        if missing { StatusCode::BAD_REQUEST } else { StatusCode::OK },
        name,
        context! {
            token => token,
            error => missing.then_some("This link is incomplete. Open the whole link from your email, or ask for a new one."),
        },
        &csrf,
        Vec::new(),
    )
}

/// A mailed link's button, posted: checks the form, spends the token with
/// `step`, then sends the browser to `done` (ending the page session when
/// `sign_out`, as a step that revokes every session does), or shows
/// `template` again saying what went wrong.
async fn link_post<T, F, Fut>(
    p: &Pages,
    req: Request,
    template: &str,
    done: &str,
    sign_out: bool,
    step: F,
) -> Response
where
    F: FnOnce(SecretString) -> Fut,
    Fut: std::future::Future<Output = Result<T, AuthError>>,
{
    let (headers, f) = match checked_form(p, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match step(f.secret("token")).await {
        Ok(_) => {
            let cookies = if sign_out {
                p.clear_session()
            } else {
                Vec::new()
            };
            p.see_other(done, cookies)
        }
        Err(err) => {
            log_if_internal(&err);
            let csrf = Csrf::of(&headers);
            p.render(
                status_of(&err),
                template,
                context! { error => explain(&err) },
                &csrf,
                Vec::new(),
            )
        }
    }
}

async fn verify_page(
    axum::Extension(p): PagesExt,
    Query(q): Query<NoticeQuery>,
    headers: HeaderMap,
) -> Response {
    link_page(&p, "verify.html", &q, &headers)
}

async fn verify_post(
    State(e): E,
    axum::Extension(p): PagesExt,
    Client(c): Client,
    req: Request,
) -> Response {
    link_post(
        &p,
        req,
        "verify.html",
        "/login?notice=verified",
        false,
        |t| async move { e.verify(&t, &c).await },
    )
    .await
}

async fn email_change_page(
    axum::Extension(p): PagesExt,
    Query(q): Query<NoticeQuery>,
    headers: HeaderMap,
) -> Response {
    link_page(&p, "email_change_confirm.html", &q, &headers)
}

async fn email_change_post(
    State(e): E,
    axum::Extension(p): PagesExt,
    Client(c): Client,
    req: Request,
) -> Response {
    // The change revokes every session: sign in again.
    link_post(
        &p,
        req,
        "email_change_confirm.html",
        "/login?notice=email-changed",
        true,
        |t| async move { e.confirm_email_change(&t, &c).await },
    )
    .await
}

async fn revert_email_change_page(
    axum::Extension(p): PagesExt,
    Query(q): Query<NoticeQuery>,
    headers: HeaderMap,
) -> Response {
    link_page(&p, "revert_email_change.html", &q, &headers)
}

async fn revert_email_change_post(
    State(e): E,
    axum::Extension(p): PagesExt,
    Client(c): Client,
    req: Request,
) -> Response {
    // Every session ended and the password is unknown: reset it.
    link_post(
        &p,
        req,
        "revert_email_change.html",
        "/login?notice=email-change-reverted",
        true,
        |t| async move { e.revert_email_change(&t, &c).await },
    )
    .await
}

async fn forgot_page(axum::Extension(p): PagesExt, headers: HeaderMap) -> Response {
    let csrf = Csrf::of(&headers);
    p.render(
        StatusCode::OK,
        "forgot.html",
        context! {},
        &csrf,
        Vec::new(),
    )
}

async fn forgot_post(
    State(e): E,
    axum::Extension(p): PagesExt,
    Client(c): Client,
    req: Request,
) -> Response {
    let (headers, f) = match checked_form(&p, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let csrf = Csrf::of(&headers);
    let Ok(email) = Email::parse(f.get("email")) else {
        return p.render(
            StatusCode::BAD_REQUEST,
            "forgot.html",
            context! { email => f.get("email"), error => EMAIL_HINT, error_field => "email" },
            &csrf,
            Vec::new(),
        );
    };
    match e.forgot_password(&email, &c).await {
        Ok(()) => p.render(
            StatusCode::OK,
            "check_inbox.html",
            context! {
                heading => "Check your inbox",
                text => "If an account uses this address, we have sent it a link to choose a new password. \
                         The link works once and expires soon. Nothing arrived? Check your spam folder or try again later.",
            },
            &csrf,
            Vec::new(),
        ),
        Err(err) => {
            log_if_internal(&err);
            p.render(
                status_of(&err),
                "forgot.html",
                context! { email => f.get("email"), error => explain(&err) },
                &csrf,
                Vec::new(),
            )
        }
    }
}

async fn reset_page(
    axum::Extension(p): PagesExt,
    Query(q): Query<NoticeQuery>,
    headers: HeaderMap,
) -> Response {
    link_page(&p, "reset.html", &q, &headers)
}

async fn reset_post(
    State(e): E,
    axum::Extension(p): PagesExt,
    Client(c): Client,
    req: Request,
) -> Response {
    let (headers, f) = match checked_form(&p, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let csrf = Csrf::of(&headers);
    let token = f.get("token");
    let again = |status, error: String, field: Option<&str>| {
        p.render(
            status,
            "reset.html",
            context! { token => token, error => error, error_field => field },
            &csrf,
            Vec::new(),
        )
    };
    let Some(new) = new_password(&f.secret("new_password")) else {
        return again(
            StatusCode::BAD_REQUEST,
            PASSWORD_HINT.into(),
            Some("new_password"),
        );
    };
    match e.reset_password(&f.secret("token"), &new, &c).await {
        Ok(()) => p.see_other("/login?notice=password-reset", p.clear_session()),
        Err(err @ AuthError::PasswordRefused(_)) => {
            again(status_of(&err), explain(&err), Some("new_password"))
        }
        Err(err) => {
            log_if_internal(&err);
            again(status_of(&err), explain(&err), None)
        }
    }
}

/// `GET {ui}/oauth/{provider}/start`: a plain link on the sign-in page
/// (starting a sign-in changes nothing of an account), answered with the
/// provider's authorization URL and the browser-binding cookie.
async fn oauth_start(
    State(e): E,
    axum::Extension(p): PagesExt,
    Path(provider): Path<String>,
    Client(c): Client,
    headers: HeaderMap,
) -> Response {
    let binding = cookie::read_oauth_binding(&headers).map(SecretString::from);
    let to = format!("{}/me", p.ui);
    match e
        .oauth_start(&provider, Some(&to), None, binding.as_ref(), &c)
        .await
    {
        Ok(s) => super::see_other_abs(&s.authorization_url, binding_cookie(&e, &s)),
        Err(err) => {
            log_if_internal(&err);
            p.see_other("/login?error=provider", Vec::new())
        }
    }
}

/// Where the completion page sends the browser: the flow's destination
/// when it is one of our pages (the engine checked it is same-origin when
/// the flow started), else the account page.
fn page_destination(p: &Pages, redirect_to: &str) -> String {
    let ours = redirect_to
        .strip_prefix(p.ui.as_str())
        .is_some_and(|rest| rest.starts_with('/') && !rest.starts_with("//"));
    if ours {
        redirect_to.to_owned()
    } else {
        format!("{}/me", p.ui)
    }
}

pub(super) fn binding_cookie(
    e: &Engine,
    s: &regstack_core::engine::OAuthStart,
) -> Vec<HeaderValue> {
    cookie::set_oauth_binding(
        s.browser_binding.expose_secret(),
        e.config().oauth.state_ttl_seconds + e.config().oauth.completion_ttl_seconds,
    )
    .into_iter()
    .collect()
}

/// `GET {ui}/oauth-complete?id=…`, where the callback sends the browser:
/// redeems the exchange id (bound to this browser's cookie) and answers a
/// page that moves on by itself (`<meta refresh>`, no script): a 303
/// would keep the provider as the navigation's initiator, and the
/// `SameSite=Strict` session cookie would not travel with it.
async fn oauth_complete(
    State(e): E,
    axum::Extension(p): PagesExt,
    Query(q): Query<NoticeQuery>,
    Client(c): Client,
    headers: HeaderMap,
) -> Response {
    let csrf = Csrf::of(&headers);
    let binding = cookie::read_oauth_binding(&headers).map(SecretString::from);
    let id = SecretString::from(q.id.clone().unwrap_or_default());
    match e.oauth_exchange(&id, binding.as_ref(), &c).await {
        // The pages start a sign-in with `{ui}/me` as the destination and
        // a link from `/methods` with `{ui}/methods?notice=linked`.
        Ok(ExchangeOutcome::SignedIn {
            session,
            redirect_to,
            ..
        }) => {
            let mut cookies = p.session_cookies(
                &session.access_token,
                session.expires_in,
                &session.refresh_token,
                session.refresh_expires_in,
            );
            cookies.extend(p.clear_step());
            let next = page_destination(&p, &redirect_to);
            p.render(
                StatusCode::OK,
                "oauth_complete.html",
                context! { next => next },
                &csrf,
                cookies,
            )
        }
        Ok(ExchangeOutcome::MfaRequired { pending, .. }) => {
            let cookies = p.step_cookie("mfa", &pending.mfa_pending_token, pending.expires_in);
            let next = format!("{}/mfa-confirm", p.ui);
            p.render(
                StatusCode::OK,
                "oauth_complete.html",
                context! { next => next },
                &csrf,
                cookies,
            )
        }
        Err(err) => {
            log_if_internal(&err);
            p.render(
                status_of(&err),
                "oauth_complete.html",
                context! { error => "That sign-in with the provider expired or was finished in another browser. Start it again from the sign-in page." },
                &csrf,
                Vec::new(),
            )
        }
    }
}
