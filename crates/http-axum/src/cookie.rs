//! Cookies: the refresh token's and the device cookie.
//!
//! **Refresh token** (`sessions.refresh_cookie`). Off by
//! default; when off, nothing here is called for it and no route reads it.
//! The cookie is `__Secure-regstack_refresh; HttpOnly; Secure;
//! SameSite=Strict; Path={prefix}/refresh`: scripts cannot read it, it
//! travels only to the refresh route, and only on same-site requests. The
//! refresh route additionally refuses requests whose `Origin` is not the
//! service's own or whose `Sec-Fetch-Site` says `cross-site` (CSRF).
//!
//! **Device cookie** (`regstack_core::device_cookie`: strangers failing
//! against an address must not lock out its owner's browser).
//! Always on: every successful `/login` sets `__Host-regstack_device;
//! HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=` one year, and
//! `/login` reads it back so that a browser that signed in before counts
//! in its own lockout bucket. `__Host-` makes browsers refuse it unless it
//! is `Secure`, host-only (no `Domain`) and `Path=/`, so a sibling
//! subdomain cannot plant one; the value means nothing to the client and
//! is checked by its MAC. Clients that never send it (scripts, apps) are
//! answered exactly as before; the JSON body never changes.

use axum::http::{header, HeaderMap, HeaderValue};

/// The refresh cookie's name.
pub const REFRESH_COOKIE: &str = "__Secure-regstack_refresh";

/// The device cookie's name.
pub const DEVICE_COOKIE: &str = "__Host-regstack_device";

/// How long a browser keeps the device cookie: a year (renewed by every
/// sign-in), so that the owner's usual browsers stay recognised.
pub const DEVICE_COOKIE_MAX_AGE: u64 = 365 * 24 * 60 * 60;

fn cookie(prefix: &str, value: &str, max_age: u64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{REFRESH_COOKIE}={value}; HttpOnly; Secure; SameSite=Strict; Path={prefix}/refresh; Max-Age={max_age}"
    ))
    .ok()
}

/// `Set-Cookie` carrying a refresh token.
pub fn set(prefix: &str, token: &str, max_age: u64) -> Option<HeaderValue> {
    cookie(prefix, token, max_age)
}

/// `Set-Cookie` that deletes the refresh cookie.
pub fn clear(prefix: &str) -> Option<HeaderValue> {
    cookie(prefix, "", 0)
}

/// `Set-Cookie` carrying a device cookie.
pub fn set_device(value: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{DEVICE_COOKIE}={value}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={DEVICE_COOKIE_MAX_AGE}"
    ))
    .ok()
}

/// The OAuth browser-binding cookie's name: `__Host-`, so it is Secure,
/// host-only and for `/` — no other host or path can set or read it.
pub const OAUTH_BINDING_COOKIE: &str = "__Host-regstack_oauth";

/// `Set-Cookie` binding OAuth flows to this browser: `SameSite=Lax`, the
/// one setting under which it still travels with the provider's top-level
/// redirect back to the callback; `HttpOnly`, so no script learns it;
/// `__Host-`, so no sibling subdomain plants one. It lives as long as a
/// flow may take.
pub fn set_oauth_binding(value: &str, max_age: u64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{OAUTH_BINDING_COOKIE}={value}; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age={max_age}"
    ))
    .ok()
}

/// The OAuth binding cookie from the request, as sent (the engine checks
/// its shape and compares its hash).
pub fn read_oauth_binding(headers: &HeaderMap) -> Option<String> {
    read_named(headers, OAUTH_BINDING_COOKIE)
}

/// The first non-empty cookie called `name` in the request.
fn read_named(headers: &HeaderMap, name: &str) -> Option<String> {
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

/// The refresh token from the request's cookies.
pub fn read(headers: &HeaderMap) -> Option<String> {
    read_named(headers, REFRESH_COOKIE)
}

/// The device cookie from the request's cookies, as sent (the engine
/// checks it).
pub fn read_device(headers: &HeaderMap) -> Option<String> {
    read_named(headers, DEVICE_COOKIE)
}

/// `scheme://host[:port]` of a URL.
pub fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// Whether a request comes from another site (CSRF defence for cookie
/// mode): a foreign `Origin`, or a browser saying `Sec-Fetch-Site:
/// cross-site`. Requests without either (non-browser clients) pass.
pub fn is_cross_site(headers: &HeaderMap, own_origin: &str) -> bool {
    let foreign_origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|o| !o.eq_ignore_ascii_case(own_origin));
    let fetch_cross = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"));
    foreign_origin || fetch_cross
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_locked_down_and_scoped_to_the_refresh_path() {
        let c = set("/api/auth", "tok", 60).unwrap();
        assert_eq!(
            c.to_str().unwrap(),
            "__Secure-regstack_refresh=tok; HttpOnly; Secure; SameSite=Strict; Path=/api/auth/refresh; Max-Age=60"
        );
    }

    #[test]
    fn the_device_cookie_is_host_only_locked_down_and_long_lived() {
        let c = set_device("dev.tag").unwrap();
        assert_eq!(
            c.to_str().unwrap(),
            "__Host-regstack_device=dev.tag; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=31536000"
        );
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Secure-regstack_refresh=xyz; b=2"),
        );
        assert_eq!(read(&h).as_deref(), Some("xyz"));
        assert_eq!(read_device(&h), None);
        h.append(
            header::COOKIE,
            HeaderValue::from_static("__Host-regstack_device=; __Host-regstack_device=d.t"),
        );
        assert_eq!(read_device(&h).as_deref(), Some("d.t"));
        assert_eq!(read(&h).as_deref(), Some("xyz"));
    }

    #[test]
    fn cross_site_detection() {
        let own = origin_of("https://app.example/base");
        assert_eq!(own, "https://app.example");
        let mut h = HeaderMap::new();
        assert!(!is_cross_site(&h, own));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://app.example"),
        );
        assert!(!is_cross_site(&h, own));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(is_cross_site(&h, own));
        let mut h = HeaderMap::new();
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(is_cross_site(&h, own));
    }
}
