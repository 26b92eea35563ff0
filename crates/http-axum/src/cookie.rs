//! Cookie transport for the refresh token (`sessions.refresh_cookie`,
//! DECISIONS.md §8). Off by default; when off, nothing here is called and
//! no route reads a cookie.
//!
//! The cookie is `__Secure-regstack_refresh; HttpOnly; Secure;
//! SameSite=Strict; Path={prefix}/refresh`: scripts cannot read it, it
//! travels only to the refresh route, and only on same-site requests. The
//! refresh route additionally refuses requests whose `Origin` is not the
//! service's own or whose `Sec-Fetch-Site` says `cross-site` (CSRF).

use axum::http::{header, HeaderMap, HeaderValue};

/// The cookie's name.
pub const REFRESH_COOKIE: &str = "__Secure-regstack_refresh";

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

/// The refresh token from the request's cookies.
pub fn read(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == REFRESH_COOKIE && !value.is_empty()).then(|| value.to_owned())
        })
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
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Secure-regstack_refresh=xyz; b=2"),
        );
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
