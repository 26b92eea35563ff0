//! The account pages (regstack's `ui/`): server-rendered HTML at
//! `ui_prefix`, mounted by [`crate::router`] when `enable_ui_router` is on.
//!
//! - **No JavaScript needed.** Every action is a plain HTML form posting to
//!   a page route, which calls the same engine runner as the JSON handler
//!   (no flow logic lives here) and answers with a page or a 303.
//! - **The page session** is the refresh-cookie mode: the refresh token
//!   and a short-lived access token sit in `HttpOnly; Secure;
//!   SameSite=Strict` cookies scoped to `ui_prefix`, never in script
//!   reach. A page whose access token has expired refreshes it with the
//!   engine's `refresh` (rotation, reuse detection and all).
//! - **CSRF.** Every form carries a token that must equal the
//!   `__Host-regstack_csrf` cookie (double submit; `__Host-` so no sibling
//!   subdomain can plant one), and a post whose `Origin` is foreign or
//!   whose `Sec-Fetch-Site` says `cross-site` is refused before anything
//!   else — so is a post without the cookie.
//! - **Templates** are minijinja files (`templates/`), each replaceable by
//!   a file of the same name in `ui.template_dir`; the stylesheet is one
//!   file of CSS custom properties (`static/regstack.css`).
//! - **Wording** never says whether an address has an account: forgot and
//!   register answer the same for a taken or unknown address.

mod account;
mod public;
mod settings;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use minijinja::{context, Environment, Value};
use regstack_core::password_policy::PasswordRefusal;
use regstack_core::{AuthError, ClientContext, Engine, Principal};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

pub use settings::PageSettings;

use crate::cookie;

/// The built-in templates, by the name a host's override uses.
const TEMPLATES: [(&str, &str); 20] = [
    ("base.html", include_str!("templates/base.html")),
    ("macros.html", include_str!("templates/macros.html")),
    ("login.html", include_str!("templates/login.html")),
    ("register.html", include_str!("templates/register.html")),
    (
        "check_inbox.html",
        include_str!("templates/check_inbox.html"),
    ),
    ("verify.html", include_str!("templates/verify.html")),
    ("forgot.html", include_str!("templates/forgot.html")),
    ("reset.html", include_str!("templates/reset.html")),
    (
        "mfa_confirm.html",
        include_str!("templates/mfa_confirm.html"),
    ),
    (
        "change_password.html",
        include_str!("templates/change_password.html"),
    ),
    (
        "email_change_confirm.html",
        include_str!("templates/email_change_confirm.html"),
    ),
    (
        "revert_email_change.html",
        include_str!("templates/revert_email_change.html"),
    ),
    (
        "oauth_complete.html",
        include_str!("templates/oauth_complete.html"),
    ),
    ("me.html", include_str!("templates/me.html")),
    ("sessions.html", include_str!("templates/sessions.html")),
    ("totp.html", include_str!("templates/totp.html")),
    ("totp_enrol.html", include_str!("templates/totp_enrol.html")),
    (
        "backup_codes.html",
        include_str!("templates/backup_codes.html"),
    ),
    ("methods.html", include_str!("templates/methods.html")),
    ("message.html", include_str!("templates/message.html")),
];

/// The stylesheet: custom properties for light and dark, then the rules.
const STYLESHEET: &str = include_str!("static/regstack.css");

/// The template names a host may override from `ui.template_dir`.
pub fn template_names() -> impl Iterator<Item = &'static str> {
    TEMPLATES.iter().map(|(n, _)| *n)
}

/// The CSRF cookie: `__Host-` (Secure, host-only, `Path=/`), `HttpOnly`
/// (the token reaches the form through the page, not through script),
/// `SameSite=Strict`.
pub const CSRF_COOKIE: &str = "__Host-regstack_csrf";
/// The page session's refresh token.
pub const PAGE_REFRESH_COOKIE: &str = "__Secure-regstack_page";
/// The page session's access token (lives as long as the token).
pub const PAGE_ACCESS_COOKIE: &str = "__Secure-regstack_page_access";
/// A sign-in waiting for its second step: `mfa.<token>` or `pw.<token>`.
pub const PAGE_STEP_COOKIE: &str = "__Secure-regstack_page_step";

/// What every page handler shares: the engine, the templates, the looks.
pub(crate) struct Pages {
    env: Environment<'static>,
    settings: PageSettings,
    ui: String,
    static_prefix: String,
    stylesheet: String,
    own_origin: String,
    app_name: String,
}

pub(crate) type PagesExt = axum::Extension<Arc<Pages>>;

impl Pages {
    /// The templates (built-ins with `settings.template_overrides` over
    /// them), each rendered once with empty values so that a broken
    /// override fails at start-up, not on the first visit.
    fn new(cfg: &regstack_core::Config, settings: &PageSettings) -> Result<Self, minijinja::Error> {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        for (name, src) in TEMPLATES {
            let src = settings
                .template_overrides
                .get(name)
                .cloned()
                .unwrap_or_else(|| src.to_owned());
            env.add_template_owned(name.to_owned(), src)?;
        }
        let static_prefix = settings.static_prefix.trim_end_matches('/').to_owned();
        let stylesheet = match &settings.brand_color {
            Some(c) => format!("{STYLESHEET}\n:root {{ --rs-brand: {c}; }}\n"),
            None => STYLESHEET.to_owned(),
        };
        let pages = Pages {
            env,
            settings: settings.clone(),
            ui: cfg.ui_prefix.trim_end_matches('/').to_owned(),
            static_prefix,
            stylesheet,
            own_origin: cookie::origin_of(cfg.base()).to_owned(),
            app_name: cfg.app_name.clone(),
        };
        for (name, _) in TEMPLATES {
            if name != "macros.html" {
                pages
                    .env
                    .get_template(name)?
                    .render(pages.base(name, None))?;
            }
        }
        Ok(pages)
    }
}

/// Checks the page templates (built-ins and `settings.template_overrides`)
/// the way [`crate::router`] will build them: the server calls it at
/// start-up so a broken override stops it with the template's name.
pub fn check_templates(
    cfg: &regstack_core::Config,
    settings: &PageSettings,
) -> Result<(), regstack_core::ConfigError> {
    Pages::new(cfg, settings)
        .map(|_| ())
        .map_err(|e| regstack_core::ConfigError::new("ui.template_dir", e.to_string()))
}

/// What [`routes`] hands the router: the page routes (relative to
/// `ui_prefix`), the static routes (absolute, at `static_prefix`) and the
/// looks, for [`html_refusal`].
pub(crate) type Mounted = (Router<Arc<Engine>>, Router, Arc<Pages>);

/// The page routes, the static routes and the looks ([`Mounted`]).
pub(crate) fn routes(
    engine: &Arc<Engine>,
    settings: &PageSettings,
) -> Result<Mounted, minijinja::Error> {
    let pages = Arc::new(Pages::new(engine.config(), settings)?);
    let static_prefix = pages.static_prefix.clone();
    let page_routes = public::router()
        .merge(account::router())
        .fallback(not_found)
        .layer(axum::Extension(pages.clone()));
    let static_routes = Router::new()
        .route(
            &format!("{static_prefix}/regstack.css"),
            get(stylesheet_route),
        )
        .route(&format!("{static_prefix}/{{*path}}"), get(static_file))
        .layer(axum::Extension(pages.clone()));
    Ok((page_routes, static_routes, pages))
}

/// Turns a route limit's JSON 429 on a page post into a page that says
/// what happened and what to do (the `Retry-After` header is kept).
pub(crate) async fn html_refusal(
    pages: Arc<Pages>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let csrf = Csrf::of(request.headers());
    let response = next.run(request).await;
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    // A page's own 429 (the sign-in lockout) already says it in its words.
    if response.status() != StatusCode::TOO_MANY_REQUESTS || !json {
        return response;
    }
    let retry = response.headers().get(header::RETRY_AFTER).cloned();
    let secs = retry
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or("60")
        .to_owned();
    let mut page = pages.render(
        StatusCode::TOO_MANY_REQUESTS,
        "message.html",
        context! {
            heading => "Too many attempts",
            text => format!("Too many requests came from your network. Wait {secs} seconds, then go back and try again."),
        },
        &csrf,
        Vec::new(),
    );
    if let Some(v) = retry {
        page.headers_mut().insert(header::RETRY_AFTER, v);
    }
    page
}

async fn stylesheet_route(axum::Extension(p): PagesExt) -> Response {
    let mut r = p.stylesheet.clone().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

/// A file from `extra_static_dirs` (first directory that has it). Only
/// plain relative names: no `..`, no hidden files, no backslashes, and
/// nothing whose resolved path leaves the directory (symlinks).
async fn static_file(
    axum::Extension(p): PagesExt,
    axum::extract::Path(path): axum::extract::Path<String>,
) -> Response {
    let safe = !path.is_empty()
        && !path.contains('\\')
        && path
            .split('/')
            .all(|seg| !seg.is_empty() && !seg.starts_with('.'));
    if !safe {
        return StatusCode::NOT_FOUND.into_response();
    }
    for dir in &p.settings.extra_static_dirs {
        // Resolved (symlinks followed) and checked to still lie inside the
        // resolved directory: a link in the directory that points outside
        // it serves nothing.
        let Ok(root) = tokio::fs::canonicalize(dir).await else {
            continue;
        };
        let Ok(file) = tokio::fs::canonicalize(root.join(&path)).await else {
            continue;
        };
        if !file.starts_with(&root) {
            continue;
        }
        if let Ok(bytes) = tokio::fs::read(&file).await {
            let kind = match file.extension().and_then(|e| e.to_str()).unwrap_or("") {
                "css" => "text/css; charset=utf-8",
                "js" => "text/javascript; charset=utf-8",
                "svg" => "image/svg+xml",
                "png" => "image/png",
                "jpg" | "jpeg" => "image/jpeg",
                "webp" => "image/webp",
                "ico" => "image/x-icon",
                "woff2" => "font/woff2",
                "txt" => "text/plain; charset=utf-8",
                _ => "application/octet-stream",
            };
            let mut r = bytes.into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            );
            return r;
        }
    }
    StatusCode::NOT_FOUND.into_response()
}

async fn not_found(axum::Extension(p): PagesExt, headers: HeaderMap) -> Response {
    let csrf = Csrf::of(&headers);
    p.render(
        StatusCode::NOT_FOUND,
        "message.html",
        context! {
            heading => "Page not found",
            text => "There is no page at this address. Check the link, or go to sign-in.",
        },
        &csrf,
        Vec::new(),
    )
}

impl Pages {
    /// The values every template sees.
    fn base(&self, page: &str, csrf: Option<&str>) -> Value {
        context! {
            page => page.trim_end_matches(".html"),
            app_name => &self.app_name,
            ui_prefix => &self.ui,
            static_prefix => &self.static_prefix,
            brand_logo_url => &self.settings.brand_logo_url,
            brand_tagline => &self.settings.brand_tagline,
            theme_css_url => &self.settings.theme_css_url,
            csrf => csrf.unwrap_or(""),
        }
    }

    /// Renders `name` with `extra` over the base values; sets the CSRF
    /// cookie when this browser has none yet, and `cookies`.
    fn render(
        &self,
        status: StatusCode,
        name: &str,
        extra: Value,
        csrf: &Csrf,
        cookies: Vec<HeaderValue>,
    ) -> Response {
        let ctx = context! { ..extra, ..self.base(name, Some(&csrf.value)) };
        let body = match self.env.get_template(name).and_then(|t| t.render(ctx)) {
            Ok(b) => b,
            Err(e) => {
                return crate::ApiError::Internal(format!("page template {name}: {e}"))
                    .into_response()
            }
        };
        let mut r = (status, axum::response::Html(body)).into_response();
        let h = r.headers_mut();
        h.insert(header::CONTENT_SECURITY_POLICY, self.csp());
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(header::REFERRER_POLICY, same_origin_referrer());
        if csrf.fresh {
            if let Some(c) = csrf_cookie(&csrf.value) {
                h.append(header::SET_COOKIE, c);
            }
        }
        for c in cookies {
            h.append(header::SET_COOKIE, c);
        }
        r
    }

    /// No script, no frames, forms only to ourselves or a provider we
    /// redirect to; images and a theme stylesheet from where the operator
    /// configured them.
    fn csp(&self) -> HeaderValue {
        let extra_style = self
            .settings
            .theme_css_url
            .as_deref()
            .map(|u| cookie::origin_of(u).to_owned())
            .filter(|o| o.starts_with("http"))
            .unwrap_or_default();
        let extra_img = self
            .settings
            .brand_logo_url
            .as_deref()
            .map(|u| cookie::origin_of(u).to_owned())
            .filter(|o| o.starts_with("http"))
            .unwrap_or_default();
        HeaderValue::from_str(&format!(
            "default-src 'none'; style-src 'self' {extra_style}; img-src 'self' data: {extra_img}; \
             form-action 'self' https: http:; frame-ancestors 'none'; base-uri 'none'"
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'; style-src 'self'"))
    }

    /// `303 See Other` to a page under `ui_prefix` (`to` starts with `/`).
    fn see_other(&self, to: &str, cookies: Vec<HeaderValue>) -> Response {
        see_other_abs(&format!("{}{to}", self.ui), cookies)
    }

    /// The page-session cookies for a fresh pair of tokens.
    fn session_cookies(
        &self,
        access: &str,
        access_ttl: u64,
        refresh: &SecretString,
        refresh_ttl: u64,
    ) -> Vec<HeaderValue> {
        [
            scoped(&self.ui, PAGE_ACCESS_COOKIE, access, access_ttl),
            scoped(
                &self.ui,
                PAGE_REFRESH_COOKIE,
                refresh.expose_secret(),
                refresh_ttl,
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Cookies that end the page session (and any pending step).
    fn clear_session(&self) -> Vec<HeaderValue> {
        [PAGE_ACCESS_COOKIE, PAGE_REFRESH_COOKIE, PAGE_STEP_COOKIE]
            .into_iter()
            .filter_map(|n| scoped(&self.ui, n, "", 0))
            .collect()
    }

    fn step_cookie(&self, kind: &str, token: &SecretString, ttl: u64) -> Vec<HeaderValue> {
        scoped(
            &self.ui,
            PAGE_STEP_COOKIE,
            &format!("{kind}.{}", token.expose_secret()),
            ttl,
        )
        .into_iter()
        .collect()
    }

    fn clear_step(&self) -> Vec<HeaderValue> {
        scoped(&self.ui, PAGE_STEP_COOKIE, "", 0)
            .into_iter()
            .collect()
    }
}

/// `same-origin` rather than the API's `no-referrer`: under `no-referrer`
/// a browser sends `Origin: null` with the pages' own form posts, which
/// the same-site check must then refuse. Other sites still get nothing.
fn same_origin_referrer() -> HeaderValue {
    HeaderValue::from_static("same-origin")
}

fn see_other_abs(location: &str, cookies: Vec<HeaderValue>) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut()
        .insert(header::REFERRER_POLICY, same_origin_referrer());
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    for c in cookies {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    r
}

/// A cookie the pages alone receive: `HttpOnly; Secure; SameSite=Strict;
/// Path={ui_prefix}`.
fn scoped(ui: &str, name: &str, value: &str, max_age: u64) -> Option<HeaderValue> {
    let path = if ui.is_empty() { "/" } else { ui };
    HeaderValue::from_str(&format!(
        "{name}={value}; HttpOnly; Secure; SameSite=Strict; Path={path}; Max-Age={max_age}"
    ))
    .ok()
}

fn csrf_cookie(value: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{CSRF_COOKIE}={value}; HttpOnly; Secure; SameSite=Strict; Path=/"
    ))
    .ok()
}

/// The first non-empty cookie `name` of the request.
fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (n, value) = pair.trim().split_once('=')?;
            (n == name && !value.is_empty()).then(|| value.to_owned())
        })
}

/// This browser's CSRF token: the cookie's, or a fresh one to set.
pub(crate) struct Csrf {
    value: String,
    fresh: bool,
}

impl Csrf {
    fn of(headers: &HeaderMap) -> Self {
        match read_cookie(headers, CSRF_COOKIE).filter(|v| v.len() == 64 && is_hex(v)) {
            Some(value) => Self {
                value,
                fresh: false,
            },
            None => Self {
                value: hex(&regstack_core::tokens::random_bytes::<32>()),
                fresh: true,
            },
        }
    }
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// A form post, checked: it came from our own pages (same site, a CSRF
/// field equal to the cookie).
pub(crate) struct Form {
    fields: HashMap<String, String>,
}

impl Form {
    fn get(&self, name: &str) -> &str {
        self.fields.get(name).map(String::as_str).unwrap_or("")
    }

    fn secret(&self, name: &str) -> SecretString {
        SecretString::from(self.get(name).to_owned())
    }
}

/// Reads and checks a form post, or answers 403 with a page that says
/// what to do.
async fn checked_form(p: &Pages, req: Request) -> Result<(HeaderMap, Form), Response> {
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    let refuse = |headers: &HeaderMap| {
        let csrf = Csrf::of(headers);
        p.render(
            StatusCode::FORBIDDEN,
            "message.html",
            context! {
                heading => "This form could not be accepted",
                text => "It was sent from another site, or the page was open too long. \
                         Go back, reload the page and send the form again.",
            },
            &csrf,
            Vec::new(),
        )
    };
    if cookie::is_cross_site(&headers, &p.own_origin) {
        return Err(refuse(&headers));
    }
    let bytes = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(b) => b,
        Err(_) => return Err(refuse(&headers)),
    };
    let fields: HashMap<String, String> = url::form_urlencoded::parse(&bytes)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let sent = fields.get("csrf").map(String::as_str).unwrap_or("");
    let ok = read_cookie(&headers, CSRF_COOKIE)
        .is_some_and(|c| c.len() == 64 && bool::from(c.as_bytes().ct_eq(sent.as_bytes())));
    if !ok {
        return Err(refuse(&headers));
    }
    Ok((headers, Form { fields }))
}

/// The signed-in account for a page: the access cookie, else a refresh
/// with the refresh cookie (new cookies to set), else a 303 to sign-in.
async fn signed_in(
    e: &Engine,
    p: &Pages,
    headers: &HeaderMap,
    client: &ClientContext,
) -> Result<(Principal, Vec<HeaderValue>), Response> {
    if let Some(access) = read_cookie(headers, PAGE_ACCESS_COOKIE) {
        if let Ok(principal) = e.authenticate(Some(&access)).await {
            return Ok((principal, Vec::new()));
        }
    }
    // Only the session's cookies: a sign-in waiting for its second step
    // (its own cookie) survives a look at a page that needs a session.
    let to_login = || {
        let cookies = [PAGE_ACCESS_COOKIE, PAGE_REFRESH_COOKIE]
            .into_iter()
            .filter_map(|n| scoped(&p.ui, n, "", 0))
            .collect();
        p.see_other("/login", cookies)
    };
    let Some(refresh) = read_cookie(headers, PAGE_REFRESH_COOKIE) else {
        return Err(to_login());
    };
    let Ok(r) = e.refresh(&SecretString::from(refresh), client).await else {
        return Err(to_login());
    };
    let cookies = p.session_cookies(
        &r.access_token,
        r.expires_in,
        &r.refresh_token,
        r.refresh_expires_in,
    );
    match e.authenticate(Some(&r.access_token)).await {
        Ok(principal) => Ok((principal, cookies)),
        Err(_) => Err(to_login()),
    }
}

/// What a refusal tells the person: what happened and what to do. Never
/// whether an address has an account.
fn explain(e: &AuthError) -> String {
    use AuthError as A;
    match e {
        A::RegistrationClosed => "New accounts cannot be created here at the moment.".into(),
        A::PasswordResetDisabled => "Password reset is not offered here. Contact support.".into(),
        A::AccountDeletionDisabled => {
            "Accounts cannot be deleted here. Contact support to close yours.".into()
        }
        A::InvalidCredentials { remaining: Some(n) } => format!(
            "The email or password is not right. Check both and try again ({n} attempt(s) left before a pause)."
        ),
        A::InvalidCredentials { remaining: None } => {
            "The email or password is not right. Check both and try again, or reset your password."
                .into()
        }
        A::Locked { retry_after_secs } => format!(
            "Too many failed attempts. Wait {retry_after_secs} seconds, then try again, or reset your password."
        ),
        A::AccountDisabled => "This account is disabled. Contact support.".into(),
        A::EmailNotVerified => {
            "Confirm your address first: open the link we emailed you. Nothing arrived? Register again to get a new link."
                .into()
        }
        A::InvalidVerificationToken => {
            "This confirmation link is invalid or has expired. Register again to get a new one."
                .into()
        }
        A::InvalidResetToken => {
            "This reset link is invalid or has expired. Ask for a new one below.".into()
        }
        A::InvalidEmailChangeToken => {
            "This link is invalid or has expired. Ask for the change again from your account page."
                .into()
        }
        A::InvalidEmailRevertToken => {
            "This link is invalid, was already used, or has expired. If you still cannot sign in, reset your password."
                .into()
        }
        A::WrongCurrentPassword => "Your current password is not right. Type it again.".into(),
        A::SamePassword => "The new password is the same as the old one. Choose a different one."
            .into(),
        A::SameEmail => "That is already your address. Type a different one.".into(),
        A::SessionNotFound => "That session has already ended. The list is up to date now.".into(),
        A::MfaChallengeInvalid | A::PasswordChangeTokenInvalid => {
            "This sign-in took too long or was already used. Sign in again.".into()
        }
        A::WrongMfaCode { remaining } => format!(
            "That code is not right. Type the current code from your app ({remaining} attempt(s) left)."
        ),
        A::MfaSetupInvalid => "The set-up took too long. Start it again.".into(),
        A::TotpNotEnabled => "The authenticator app is not set up for this account.".into(),
        A::OAuthNotLinked => "That provider is not linked to your account.".into(),
        A::OAuthLastSignInMethod => {
            "This is your only way to sign in. Set a password (use \"Forgot password\") or link another provider first."
                .into()
        }
        A::OAuthProviderUnavailable => {
            "The sign-in provider did not answer. Try again in a minute.".into()
        }
        A::UnknownOAuthProvider(_) => "That sign-in provider is not offered here.".into(),
        A::OAuthStateNotFound | A::OAuthStateExpired => {
            "That sign-in with the provider expired or was already used. Start it again.".into()
        }
        A::PasswordRefused(r) => match r {
            PasswordRefusal::Common => "This password is too common. Choose a different one.".into(),
            PasswordRefusal::ContextWord => {
                "The password must not contain your email address or the site name.".into()
            }
            PasswordRefusal::Breached => {
                "This password has appeared in a data breach. Choose a different one.".into()
            }
        },
        A::PasswordScreenUnavailable => {
            "Passwords cannot be checked right now. Try again in a minute.".into()
        }
        _ => "Something went wrong on our side. Try again in a minute.".into(),
    }
}

fn is_internal(e: &AuthError) -> bool {
    matches!(
        e,
        AuthError::Store(_) | AuthError::Hash(_) | AuthError::Internal(_)
    )
}

/// The status a refused page post answers with.
fn status_of(e: &AuthError) -> StatusCode {
    use AuthError as A;
    match e {
        A::InvalidCredentials { .. } => StatusCode::UNAUTHORIZED,
        A::Locked { .. } => StatusCode::TOO_MANY_REQUESTS,
        A::AccountDisabled | A::EmailNotVerified | A::RegistrationClosed => StatusCode::FORBIDDEN,
        A::OAuthProviderUnavailable | A::PasswordScreenUnavailable => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        e if is_internal(e) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// A server-side failure is logged once (its source chain), never shown.
fn log_if_internal(e: &AuthError) {
    if is_internal(e) {
        tracing::error!(error = %e, "account page failed");
    }
}

/// The fixed notices a redirect may name (`?notice=`); anything else shows
/// nothing.
fn notice_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "verified" => "Your address is confirmed. Sign in to continue.",
        "registered" => "Your account is ready. Sign in to continue.",
        "password-reset" => "Your password was changed. Sign in with the new one.",
        "signed-out" => "You are signed out.",
        "signed-out-everywhere" => "You are signed out on every device.",
        "deleted" => "Your account was deleted.",
        "email-changed" => "Your new address is confirmed. Use it to sign in.",
        "password-changed" => "Your password was changed. Other devices were signed out.",
        "email-change-reverted" => "The email change was stopped and every device signed out. Set a new password through \"Forgot your password?\" to sign in.",
        "email-change-sent" => "We sent a link to the new address. Open it to finish the change.",
        "session-ended" => "That session was signed out.",
        "totp-disabled" => "The authenticator app was removed from your account.",
        "unlinked" => "The provider was unlinked.",
        "linked" => "The provider was linked to your account.",
        "profile-saved" => "Your name was saved.",
        _ => return None,
    })
}

/// The OAuth callback's error codes (`?error=`), worded.
fn oauth_error_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "" => return None,
        "access_denied" => "Sign-in with the provider was cancelled. Try again, or use your password.",
        "email_in_use" => {
            "An account already uses that address. Sign in with your password, then link the provider from your account page."
        }
        "email_not_verified" => {
            "The provider has not verified your address. Verify it there, or register with your password."
        }
        _ => "Sign-in with the provider did not work. Start it again, or use your password.",
    })
}

/// `?notice=` / `?error=` of a page.
#[derive(serde::Deserialize, Default)]
pub(crate) struct NoticeQuery {
    notice: Option<String>,
    error: Option<String>,
    token: Option<String>,
    id: Option<String>,
}

impl NoticeQuery {
    fn notice(&self) -> Option<&'static str> {
        self.notice.as_deref().and_then(notice_text)
    }
}
