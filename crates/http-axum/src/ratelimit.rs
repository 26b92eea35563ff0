//! Per-route request limits (security.md LK-5): how many requests one
//! client IP — and, on routes whose body names an address, one address —
//! may make to a sign-in, code, mail- or text-sending route within a
//! window. Over the limit the route answers 429 with `Retry-After` and
//! `{"detail": "Too many requests. Try again in N seconds."}` (the words of
//! regstack's own 429, the lockout's), before the handler runs: no hash,
//! no mail, no text.
//!
//! Limits are set per **route group** ([`RouteLimits`], `[rate_limits]` in
//! `regstack.toml`) in regstack's slowapi syntax, `"5/minute"` or
//! `"5/minute;50/hour"`; each route of a group counts on its own. regstack
//! 0.9.3's per-route keys (`login_rate_limit`, …) set one route's limit and
//! win over its group's; [`ROUTES`] maps each of them to its route.
//!
//! Counting is the engine's [`Engine::take_route_limit`]: the shared
//! counter store (database or Redis), so every instance enforces one limit
//! (LK-7). A refused request is not counted, so a client that waits a
//! window gets in again however hard it knocked.
//!
//! **Why the address limit lives here, reading the body, and not in the
//! handlers:** it must run before anything the handler does (a password
//! hash, a mail), on three routes with three body types, and a handler
//! extractor would have to be added to each of them and kept in step with
//! [`ROUTES`]. Here it is one table: the layer buffers the body of just
//! those routes — never more than `http.body_limit_bytes`, the limit the
//! handler's own extractor applies, so a larger body gets the same 413 —
//! reads `email` leniently (anything else is the handler's 422 to give)
//! and hands the bytes on unchanged.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::TimeDelta;
use regstack_core::{ConfigError, Engine};
use regstack_ports::Email;

use crate::error::ApiError;
use crate::extract::client_ip;

/// One limit: at most `count` requests within `window_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests admitted per window (at least 1).
    pub count: u32,
    /// The sliding window, in seconds (1 s to 1 day).
    pub window_seconds: u64,
}

/// The longest window a limit may have: housekeeping keeps counter hits
/// for one day (the SMS caps' window), so a longer window would forget.
pub const MAX_WINDOW_SECONDS: u64 = 86_400;

/// Reads a slowapi limit string: limits separated by `;`, `,` or `|`, each
/// `N/unit`, `N/M units` or `N per [M] unit[s]`, with units `second`,
/// `minute`, `hour`, `day` (as slowapi's `limits` parser spells them). An
/// empty (or all-blank) string is no limit. The error says what is wrong,
/// without the key (the caller names it).
pub fn parse_rates(text: &str) -> Result<Vec<Rate>, String> {
    let mut out = Vec::new();
    for part in text.split([';', ',', '|']) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        out.push(parse_rate(part).ok_or_else(|| {
            format!(
                "{part:?} is not a limit: write \"N/second\", \"N/minute\", \"N/hour\" or \
                 \"N/day\" (e.g. \"5/minute\"; several separated by `;`), or \"\" for none"
            )
        })?);
    }
    for rate in &out {
        if rate.count == 0 {
            return Err(format!(
                "{text:?}: a limit of 0 would refuse every request; use \"\" for no limit"
            ));
        }
        if rate.window_seconds > MAX_WINDOW_SECONDS {
            return Err(format!(
                "{text:?}: windows longer than a day are not kept (counters are purged after one day)"
            ));
        }
    }
    Ok(out)
}

fn parse_rate(part: &str) -> Option<Rate> {
    let lower = part.to_ascii_lowercase();
    let (count, per) = match lower.split_once('/') {
        Some((c, p)) => (c.trim(), p.trim()),
        None => {
            let (c, p) = lower.split_once(" per ")?;
            (c.trim(), p.trim())
        }
    };
    let count: u32 = count.parse().ok()?;
    let (multiple, unit) = match per.split_once(char::is_whitespace) {
        Some((m, u)) => (m.trim().parse::<u64>().ok()?, u.trim()),
        None => (1, per),
    };
    let unit_seconds = match unit.strip_suffix('s').unwrap_or(unit) {
        "second" => 1,
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        _ => return None,
    };
    if multiple == 0 {
        return None;
    }
    Some(Rate {
        count,
        window_seconds: multiple.checked_mul(unit_seconds)?,
    })
}

/// A route group: the key under `[rate_limits]` that sets its routes'
/// limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// `rate_limits.login`.
    Login,
    /// `rate_limits.register`.
    Register,
    /// `rate_limits.forgot_password`.
    ForgotPassword,
    /// `rate_limits.verify`.
    Verify,
    /// `rate_limits.mfa`.
    Mfa,
    /// `rate_limits.sms`.
    Sms,
    /// `rate_limits.oauth_start`.
    OAuthStart,
}

impl Group {
    /// Its key under `[rate_limits]`.
    pub fn key(self) -> &'static str {
        match self {
            Group::Login => "login",
            Group::Register => "register",
            Group::ForgotPassword => "forgot_password",
            Group::Verify => "verify",
            Group::Mfa => "mfa",
            Group::Sms => "sms",
            Group::OAuthStart => "oauth_start",
        }
    }
}

/// One limited route: its path under the API prefix (axum's pattern), its
/// group, the regstack 0.9.3 key that sets its limit alone, and whether
/// its body's `email` is counted too.
#[derive(Debug, Clone, Copy)]
pub struct LimitedRoute {
    /// Path pattern relative to `api_prefix`.
    pub path: &'static str,
    /// Group whose limit applies unless the regstack key sets one.
    pub group: Option<Group>,
    /// regstack's per-route key (slowapi string; `""` = this route
    /// unlimited, as in regstack).
    pub regstack_key: Option<&'static str>,
    /// Count the normalized `email` of the body as well as the IP.
    pub by_address: bool,
}

const fn route(
    path: &'static str,
    group: Option<Group>,
    regstack_key: Option<&'static str>,
    by_address: bool,
) -> LimitedRoute {
    LimitedRoute {
        path,
        group,
        regstack_key,
        by_address,
    }
}

/// Every limited route. The three routes regstack limits that are in no
/// group (`/change-password`, `/change-email`, `DELETE /account`: bearer
/// routes, each behind a current-password check) are limited only when
/// their regstack key sets a limit.
pub const ROUTES: &[LimitedRoute] = &[
    route("/login", Some(Group::Login), Some("login_rate_limit"), true),
    route(
        "/register",
        Some(Group::Register),
        Some("register_rate_limit"),
        true,
    ),
    route(
        "/resend-verification",
        Some(Group::Register),
        Some("resend_verification_rate_limit"),
        true,
    ),
    route(
        "/forgot-password",
        Some(Group::ForgotPassword),
        Some("forgot_password_rate_limit"),
        true,
    ),
    route(
        "/reset-password",
        Some(Group::ForgotPassword),
        Some("reset_password_rate_limit"),
        false,
    ),
    route(
        "/verify",
        Some(Group::Verify),
        Some("verify_rate_limit"),
        false,
    ),
    route(
        "/confirm-email-change",
        Some(Group::Verify),
        Some("confirm_email_change_rate_limit"),
        false,
    ),
    route("/revert-email-change", Some(Group::Verify), None, false),
    route(
        "/login/mfa-confirm",
        Some(Group::Mfa),
        Some("login_mfa_confirm_rate_limit"),
        false,
    ),
    route("/login/change-password", Some(Group::Mfa), None, false),
    route("/totp/confirm", Some(Group::Mfa), None, false),
    route(
        "/phone/start",
        Some(Group::Sms),
        Some("phone_start_rate_limit"),
        false,
    ),
    route(
        "/phone/confirm",
        Some(Group::Sms),
        Some("phone_confirm_rate_limit"),
        false,
    ),
    route(
        "/phone",
        Some(Group::Sms),
        Some("phone_disable_rate_limit"),
        false,
    ),
    route(
        "/oauth/{provider}/start",
        Some(Group::OAuthStart),
        None,
        false,
    ),
    route(
        "/oauth/{provider}/link/start",
        Some(Group::OAuthStart),
        None,
        false,
    ),
    route(
        "/oauth/exchange",
        Some(Group::OAuthStart),
        Some("oauth_exchange_rate_limit"),
        false,
    ),
    route(
        "/change-password",
        None,
        Some("change_password_rate_limit"),
        false,
    ),
    route(
        "/change-email",
        None,
        Some("change_email_rate_limit"),
        false,
    ),
    route("/account", None, Some("delete_account_rate_limit"), false),
    // `/login` for OAuth2 clients: the same limit on the same counters
    // (see `counted_as`), the form's `username` counted as the address.
    route("/token", Some(Group::Login), Some("login_rate_limit"), true),
];

/// The counters a route spends: `/token` spends `/login`'s, so the two
/// doors to one sign-in share one limit rather than doubling it.
fn counted_as(path: &'static str) -> &'static str {
    match path {
        "/token" => "/login",
        p => p,
    }
}

/// regstack 0.9.3's per-route limit keys, each a top-level key of
/// `regstack.toml` (see [`ROUTES`] for the route each one limits).
pub const REGSTACK_KEYS: &[&str] = &[
    "login_rate_limit",
    "login_mfa_confirm_rate_limit",
    "register_rate_limit",
    "forgot_password_rate_limit",
    "reset_password_rate_limit",
    "verify_rate_limit",
    "resend_verification_rate_limit",
    "change_password_rate_limit",
    "change_email_rate_limit",
    "confirm_email_change_rate_limit",
    "delete_account_rate_limit",
    "oauth_exchange_rate_limit",
    "phone_start_rate_limit",
    "phone_confirm_rate_limit",
    "phone_disable_rate_limit",
];

/// `[rate_limits]`' route groups (slowapi strings; `""` turns a group
/// off) and regstack's per-route keys. regstack ships with no route limits
/// at all; ours are on by default (LK-5), loose enough for a person and
/// an office behind one address, tight enough that a script gets a few
/// guesses or mails a minute, not thousands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLimits {
    /// `/login` (also per address). Default `"20/minute"`: wrong
    /// passwords are held by the per-address lockout long before this; the
    /// limit is for a script trying many addresses, and an honest client
    /// (`regstack validate` signs in a dozen times a minute) stays under it.
    pub login: String,
    /// `/register`, `/resend-verification` (also per address). Default
    /// `"5/minute"`.
    pub register: String,
    /// `/forgot-password` (also per address), `/reset-password`. Default
    /// `"5/minute"`.
    pub forgot_password: String,
    /// `/verify`, `/confirm-email-change`. Default `"10/minute"`.
    pub verify: String,
    /// `/login/mfa-confirm`, `/login/change-password`, `/totp/confirm`.
    /// Default `"10/minute"`.
    pub mfa: String,
    /// `/phone/start`, `/phone/confirm`, `DELETE /phone`. Default
    /// `"5/minute"`.
    pub sms: String,
    /// `/oauth/{provider}/start`, `/oauth/{provider}/link/start`,
    /// `/oauth/exchange`. Default `"20/minute"`.
    pub oauth_start: String,
    /// regstack's per-route keys that were set ([`REGSTACK_KEYS`]), with
    /// their values: a limit for that route alone, `""` for none.
    pub regstack_routes: std::collections::BTreeMap<String, String>,
}

impl Default for RouteLimits {
    fn default() -> Self {
        Self {
            login: "20/minute".into(),
            register: "5/minute".into(),
            forgot_password: "5/minute".into(),
            verify: "10/minute".into(),
            mfa: "10/minute".into(),
            sms: "5/minute".into(),
            oauth_start: "20/minute".into(),
            regstack_routes: Default::default(),
        }
    }
}

impl RouteLimits {
    /// Every group off and no regstack key: no route limit at all (the
    /// same as `rate_limit_disabled`, without turning the lockout off).
    pub fn none() -> Self {
        Self {
            login: String::new(),
            register: String::new(),
            forgot_password: String::new(),
            verify: String::new(),
            mfa: String::new(),
            sms: String::new(),
            oauth_start: String::new(),
            regstack_routes: Default::default(),
        }
    }

    /// The group's limit string.
    pub fn group(&self, group: Group) -> &str {
        match group {
            Group::Login => &self.login,
            Group::Register => &self.register,
            Group::ForgotPassword => &self.forgot_password,
            Group::Verify => &self.verify,
            Group::Mfa => &self.mfa,
            Group::Sms => &self.sms,
            Group::OAuthStart => &self.oauth_start,
        }
    }

    /// Sets a group's limit string.
    pub fn set_group(&mut self, group: Group, limit: impl Into<String>) {
        let slot = match group {
            Group::Login => &mut self.login,
            Group::Register => &mut self.register,
            Group::ForgotPassword => &mut self.forgot_password,
            Group::Verify => &mut self.verify,
            Group::Mfa => &mut self.mfa,
            Group::Sms => &mut self.sms,
            Group::OAuthStart => &mut self.oauth_start,
        };
        *slot = limit.into();
    }

    /// Checks every string; the error names the key as written
    /// (`rate_limits.login`, `login_rate_limit`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.compile().map(|_| ())
    }

    /// Each limited route with the rates that apply to it (routes without
    /// any are left out).
    pub fn compile(&self) -> Result<Vec<(LimitedRoute, Vec<Rate>)>, ConfigError> {
        for key in self.regstack_routes.keys() {
            if !REGSTACK_KEYS.contains(&key.as_str()) {
                return Err(ConfigError::new(
                    key.clone(),
                    "is not one of regstack's per-route limit keys",
                ));
            }
        }
        let groups = [
            Group::Login,
            Group::Register,
            Group::ForgotPassword,
            Group::Verify,
            Group::Mfa,
            Group::Sms,
            Group::OAuthStart,
        ];
        for g in groups {
            parse_rates(self.group(g))
                .map_err(|e| ConfigError::new(format!("rate_limits.{}", g.key()), e))?;
        }
        let mut out = Vec::new();
        for r in ROUTES {
            let own = r
                .regstack_key
                .and_then(|k| self.regstack_routes.get(k).map(|v| (k, v)));
            let rates = match (own, r.group) {
                (Some((key, text)), _) => {
                    parse_rates(text).map_err(|e| ConfigError::new(key, e))?
                }
                (None, Some(g)) => parse_rates(self.group(g)).unwrap_or_default(),
                (None, None) => Vec::new(),
            };
            if !rates.is_empty() {
                out.push((*r, rates));
            }
        }
        Ok(out)
    }
}

/// The compiled limits the layer consults, by route pattern.
#[derive(Debug)]
pub(crate) struct Limiter {
    /// Every known route's path and its full pattern under the prefix.
    patterns: Vec<(&'static str, String)>,
    routes: Vec<(LimitedRoute, Vec<Rate>)>,
    body_limit: usize,
}

impl Limiter {
    /// `None` when no route has a limit (nothing to layer).
    pub(crate) fn new(
        limits: &RouteLimits,
        api_prefix: &str,
        body_limit: usize,
    ) -> Option<Arc<Self>> {
        // Invalid strings were refused by `HttpSettings::validate`; a host
        // that skipped it gets no limit on the route it misspelt, and a
        // log line saying so.
        let routes = match limits.compile() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "route limits not applied: invalid limit");
                return None;
            }
        };
        let prefix = api_prefix.trim_end_matches('/');
        (!routes.is_empty()).then(|| {
            Arc::new(Self {
                patterns: ROUTES
                    .iter()
                    .map(|r| (r.path, format!("{prefix}{}", r.path)))
                    .collect(),
                routes,
                body_limit,
            })
        })
    }

    /// The limited route a matched path is, if any. The matched path is the
    /// whole pattern, `{api_prefix}{path}` — behind whatever prefix a host
    /// nests our router under — so it is compared by its end, and of the
    /// known routes that fit, the longest is the route (with the API at
    /// `/`, `/login/change-password` also ends with `/change-password`).
    fn find(&self, matched: &str) -> Option<&(LimitedRoute, Vec<Rate>)> {
        let route = self
            .patterns
            .iter()
            .filter(|(_, full)| matched.ends_with(full.as_str()))
            .max_by_key(|(path, _)| path.len())?
            .0;
        self.routes.iter().find(|(r, _)| r.path == route)
    }
}

/// The counting key of an IP: an IPv4 address as is, an IPv6 address by
/// its /64 — one subscriber's network, whose addresses a client can
/// rotate through at will.
fn ip_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// Counts `who` against every rate of the route; the first refusal gives
/// the answer.
async fn take(
    engine: &Engine,
    route: &str,
    who: &str,
    rates: &[Rate],
) -> Result<Option<u64>, ApiError> {
    for rate in rates {
        let key = format!("route:{route}:{who}:{}", rate.window_seconds);
        let window = TimeDelta::seconds(i64::try_from(rate.window_seconds).unwrap_or(86_400));
        let admitted = engine
            .take_route_limit(&key, window, rate.count)
            .await
            .map_err(|e| ApiError::Auth(e.into()))?;
        if !admitted {
            return Ok(Some(rate.window_seconds));
        }
    }
    Ok(None)
}

/// The address a body names, normalized as the engine would: `None` when
/// the body is no JSON object or has no valid `email` (the handler's 422).
fn body_address(bytes: &[u8]) -> Option<Email> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    Email::parse(value.get("email")?.as_str()?).ok()
}

/// The address an OAuth2 password form names (`username`).
fn token_form_address(bytes: &[u8]) -> Option<Email> {
    let (_, v) = url::form_urlencoded::parse(bytes)
        .filter(|(k, _)| k == "username")
        .last()?;
    Email::parse(&v).ok()
}

static NO_ADDRESS_WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The middleware: finds the matched route in the table and, if it is
/// limited, counts the client's IP and (for the routes that name one) the
/// body's address. Fails closed: a counter store that cannot answer gives
/// the store failure's 503, not an unlimited route.
pub(crate) async fn limit(
    limiter: Arc<Limiter>,
    engine: Arc<Engine>,
    request: Request,
    next: Next,
) -> Response {
    let Some(matched) = request.extensions().get::<MatchedPath>() else {
        return next.run(request).await;
    };
    let Some((route, rates)) = limiter.find(matched.as_str()) else {
        return next.run(request).await;
    };
    let address_of = if route.path == "/token" {
        token_form_address
    } else {
        body_address
    };
    count(&limiter, &engine, route, rates, address_of, request, next).await
}

/// The API route whose limit an account page's form post (or its
/// provider-sign-in link, a GET) shares (matched by the page path's end):
/// the same counters, so alternating between a page and its JSON route
/// gains nothing.
fn page_route(matched: &str) -> Option<&'static str> {
    let pairs: [(&str, &'static str); 14] = [
        ("/oauth/{provider}/start", "/oauth/{provider}/start"),
        ("/methods/link", "/oauth/{provider}/link/start"),
        ("/revert-email-change", "/revert-email-change"),
        ("/login", "/login"),
        ("/register", "/register"),
        ("/forgot", "/forgot-password"),
        ("/reset", "/reset-password"),
        ("/reset-password", "/reset-password"),
        ("/verify", "/verify"),
        ("/confirm-email-change", "/confirm-email-change"),
        ("/email-change-confirm", "/confirm-email-change"),
        ("/mfa-confirm", "/login/mfa-confirm"),
        ("/change-password", "/login/change-password"),
        ("/totp/confirm", "/totp/confirm"),
    ];
    pairs
        .iter()
        .filter(|(page, _)| matched.ends_with(page))
        .max_by_key(|(page, _)| page.len())
        .map(|(_, api)| *api)
}

/// The middleware of the account pages' form posts and of the page's
/// provider-sign-in link (`GET {ui}/oauth/{provider}/start`, which starts
/// a flow like its API twin): the limits of the API route each one stands
/// for ([`page_route`]), the address read from the form's `email` field.
pub(crate) async fn limit_pages(
    limiter: Arc<Limiter>,
    engine: Arc<Engine>,
    request: Request,
    next: Next,
) -> Response {
    let Some(api) = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|m| page_route(m.as_str()))
    else {
        return next.run(request).await;
    };
    // A page's GET only shows a form, except the sign-in link's.
    let counted = match *request.method() {
        axum::http::Method::POST => true,
        axum::http::Method::GET => api == "/oauth/{provider}/start",
        _ => false,
    };
    if !counted {
        return next.run(request).await;
    }
    let Some((route, rates)) = limiter.routes.iter().find(|(r, _)| r.path == api) else {
        return next.run(request).await;
    };
    count(&limiter, &engine, route, rates, form_address, request, next).await
}

/// The address a form body names in `email`.
fn form_address(bytes: &[u8]) -> Option<Email> {
    url::form_urlencoded::parse(bytes)
        .find(|(k, _)| k == "email")
        .and_then(|(_, v)| Email::parse(&v).ok())
}

/// Counts the client's IP and, for routes that name one, the body's
/// address against `route`'s rates; answers 429 or runs the handler.
async fn count(
    limiter: &Limiter,
    engine: &Engine,
    route: &LimitedRoute,
    rates: &[Rate],
    address_of: fn(&[u8]) -> Option<Email>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    // `Retry-After` is the refusing rate's window: the oldest counted
    // request has left it by then (the store answers yes or no, not when).
    let refused = |secs: u64| ApiError::RateLimited {
        retry_after_secs: secs,
    };
    match client_ip(&parts) {
        Some(ip) => match take(
            engine,
            counted_as(route.path),
            &format!("ip:{}", ip_key(ip)),
            rates,
        )
        .await
        {
            Ok(None) => {}
            Ok(Some(secs)) => return refused(secs).into_response(),
            Err(e) => return e.into_response(),
        },
        None if !NO_ADDRESS_WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) => {
            // Served without `into_make_service_with_connect_info` and no
            // trusted proxy header: there is no address to count, and one
            // shared bucket would let one client lock everyone out. Said
            // once per process.
            tracing::warn!(
                route = route.path,
                "no client address (serve with into_make_service_with_connect_info): \
                 per-IP route limits are not applied"
            );
        }
        None => {}
    }
    let body = if route.by_address {
        let bytes = match axum::body::to_bytes(body, limiter.body_limit).await {
            Ok(b) => b,
            Err(_) => return ApiError::PayloadTooLarge.into_response(),
        };
        if let Some(email) = address_of(&bytes) {
            let who = format!("email:{}", email.as_str());
            match take(engine, counted_as(route.path), &who, rates).await {
                Ok(None) => {}
                Ok(Some(secs)) => return refused(secs).into_response(),
                Err(e) => return e.into_response(),
            }
        }
        Body::from(bytes)
    } else {
        body
    };
    next.run(Request::from_parts(parts, body)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(count: u32, window_seconds: u64) -> Rate {
        Rate {
            count,
            window_seconds,
        }
    }

    #[test]
    fn slowapi_strings_are_read() {
        assert_eq!(parse_rates("5/minute"), Ok(vec![rate(5, 60)]));
        assert_eq!(
            parse_rates("5/minute;100/day"),
            Ok(vec![rate(5, 60), rate(100, 86_400)])
        );
        assert_eq!(parse_rates("10 per hour"), Ok(vec![rate(10, 3600)]));
        assert_eq!(parse_rates("3/10 seconds"), Ok(vec![rate(3, 10)]));
        assert_eq!(parse_rates("2 per 5 minutes"), Ok(vec![rate(2, 300)]));
        assert_eq!(
            parse_rates("1/Second, 4/HOUR"),
            Ok(vec![rate(1, 1), rate(4, 3600)])
        );
        assert_eq!(parse_rates(""), Ok(vec![]));
        assert_eq!(parse_rates("  "), Ok(vec![]));
    }

    #[test]
    fn nonsense_zero_and_long_windows_are_refused() {
        for bad in [
            "5",
            "five/minute",
            "5/fortnight",
            "5/minute;x",
            "0/minute",
            "5/2 days",
            "5/month",
            "5/0 seconds",
            "-1/minute",
        ] {
            assert!(parse_rates(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bad_string_names_its_key() {
        let mut l = RouteLimits::default();
        l.set_group(Group::Sms, "5/fortnight");
        assert_eq!(l.validate().unwrap_err().key, "rate_limits.sms");
        let mut l = RouteLimits::default();
        l.regstack_routes
            .insert("phone_start_rate_limit".into(), "many".into());
        assert_eq!(l.validate().unwrap_err().key, "phone_start_rate_limit");
        let mut l = RouteLimits::default();
        l.regstack_routes
            .insert("logn_rate_limit".into(), "5/minute".into());
        assert_eq!(l.validate().unwrap_err().key, "logn_rate_limit");
    }

    #[test]
    fn a_regstack_key_sets_its_route_alone_and_an_empty_one_unlimits_it() {
        let mut l = RouteLimits::default();
        l.regstack_routes
            .insert("login_mfa_confirm_rate_limit".into(), "3/hour".into());
        l.regstack_routes
            .insert("reset_password_rate_limit".into(), String::new());
        l.regstack_routes
            .insert("delete_account_rate_limit".into(), "2/minute".into());
        let compiled = l.compile().unwrap();
        let of = |path: &str| {
            compiled
                .iter()
                .find(|(r, _)| r.path == path)
                .map(|(_, rates)| rates.clone())
        };
        assert_eq!(of("/login/mfa-confirm"), Some(vec![rate(3, 3600)]));
        assert_eq!(of("/totp/confirm"), Some(vec![rate(10, 60)]), "the group's");
        assert_eq!(of("/reset-password"), None);
        assert_eq!(of("/forgot-password"), Some(vec![rate(5, 60)]));
        assert_eq!(of("/account"), Some(vec![rate(2, 60)]));
        assert_eq!(of("/change-email"), None, "no group, no key: unlimited");
        assert!(RouteLimits::none().compile().unwrap().is_empty());
    }

    #[test]
    fn every_regstack_key_limits_exactly_one_route() {
        for key in REGSTACK_KEYS {
            // A route that spends another's counters (`/token`) shares
            // that route's key too.
            let n = ROUTES
                .iter()
                .filter(|r| r.regstack_key == Some(*key) && counted_as(r.path) == r.path)
                .count();
            assert_eq!(n, 1, "{key}");
        }
        let mapped = ROUTES
            .iter()
            .filter(|r| r.regstack_key.is_some() && counted_as(r.path) == r.path)
            .count();
        assert_eq!(mapped, REGSTACK_KEYS.len());
    }

    #[test]
    fn matched_paths_are_found_under_any_host_prefix_and_the_longest_route_wins() {
        let all = every_group_at("1/minute");
        for prefix in ["/api/auth", "/"] {
            let l = Limiter::new(&all, prefix, 65536).unwrap();
            let p = prefix.trim_end_matches('/');
            let path = |m: &str| l.find(m).map(|(r, _)| r.path);
            assert_eq!(path(&format!("{p}/login")), Some("/login"), "{prefix}");
            assert_eq!(
                path(&format!("/v1{p}/login/change-password")),
                Some("/login/change-password"),
                "{prefix}"
            );
            assert_eq!(
                path(&format!("{p}/oauth/{{provider}}/link/start")),
                Some("/oauth/{provider}/link/start")
            );
            assert_eq!(path(&format!("{p}/me")), None);
        }
        let l = Limiter::new(&all, "/api/auth", 65536).unwrap();
        assert_eq!(l.find("/elsewhere/login").map(|(r, _)| r.path), None);
        // `/change-password` has no group: unlimited unless its key is set,
        // and never taken for `/login/change-password`'s.
        assert_eq!(
            l.find("/api/auth/change-password").map(|(r, _)| r.path),
            None
        );
    }

    fn every_group_at(limit: &str) -> RouteLimits {
        let mut l = RouteLimits::none();
        for g in [
            Group::Login,
            Group::Register,
            Group::ForgotPassword,
            Group::Verify,
            Group::Mfa,
            Group::Sms,
            Group::OAuthStart,
        ] {
            l.set_group(g, limit);
        }
        l
    }

    #[test]
    fn ipv6_clients_count_by_their_64_and_mapped_v4_as_v4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(c));
        let mapped: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        assert_eq!(ip_key(mapped), "203.0.113.9");
    }

    #[test]
    fn the_body_address_is_normalized_and_junk_names_none() {
        assert_eq!(
            body_address(br#"{"email": " Alice@Example.COM ", "password": "x"}"#)
                .map(|e| e.as_str().to_owned()),
            Some("alice@example.com".into())
        );
        assert!(body_address(b"not json").is_none());
        assert!(body_address(br#"{"email": 5}"#).is_none());
        assert!(body_address(br#"{"email": "nope"}"#).is_none());
    }
}
