//! Where a browser may be sent back to after an OAuth flow: the service's
//! own origin, nothing else (no open redirect).
//!
//! Open redirects hide in the gap between how a filter reads a string and
//! how a browser does: a browser turns `\` into `/`, drops tabs and line
//! breaks from URLs, resolves `https:evil.test` against the page, and reads
//! `//host` as another host. So the check works the way a browser does — a
//! WHATWG URL parser resolves the value against `base_url` and the origins
//! are compared — and before that refuses outright every string a browser
//! would rewrite (backslashes, control characters, whitespace), in its raw
//! and in its percent-decoded form, so the filter and the browser can never
//! disagree about what was approved.

use url::Url;

/// `redirect_to` is not a same-origin target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("redirect_to must be same-origin.")]
pub struct NotSameOrigin;

/// Longest accepted `redirect_to`.
const MAX_CHARS: usize = 2048;

fn suspicious(s: &str) -> bool {
    s.chars()
        .any(|c| c == '\\' || c.is_control() || c.is_whitespace())
}

/// A scheme prefix (`javascript:`, `https:`) as RFC 3986 spells one.
fn has_scheme(s: &str) -> bool {
    match s.split_once(':') {
        Some((scheme, _)) => {
            let mut chars = scheme.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// Checks `raw` against `base_url` and returns the target to redirect to:
/// for a path, the path (with query and fragment) as the URL parser
/// normalised it; for an absolute URL of the same origin, that URL. What is
/// returned is exactly what was approved.
pub fn same_origin(base_url: &str, raw: &str) -> Result<String, NotSameOrigin> {
    let base = Url::parse(base_url).map_err(|_| NotSameOrigin)?;
    if raw.is_empty() || raw.len() > MAX_CHARS || suspicious(raw) {
        return Err(NotSameOrigin);
    }
    let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
    if suspicious(&decoded) || decoded.starts_with("//") {
        return Err(NotSameOrigin);
    }
    if has_scheme(raw) {
        // Absolute on its own, never relative to the base (`https:evil.test`
        // would resolve to a path on the base, but means another host to
        // anyone reading it as a URL).
        let url = Url::parse(raw).map_err(|_| NotSameOrigin)?;
        if url.origin() != base.origin()
            || !matches!(url.scheme(), "http" | "https")
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(NotSameOrigin);
        }
        return Ok(url.to_string());
    }
    if !raw.starts_with('/') || raw.starts_with("//") {
        return Err(NotSameOrigin);
    }
    let url = base.join(raw).map_err(|_| NotSameOrigin)?;
    if url.origin() != base.origin() {
        return Err(NotSameOrigin);
    }
    let mut target = url.path().to_owned();
    if let Some(q) = url.query() {
        target.push('?');
        target.push_str(q);
    }
    if let Some(f) = url.fragment() {
        target.push('#');
        target.push_str(f);
    }
    if target.starts_with("//") {
        return Err(NotSameOrigin);
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "https://app.example";

    #[test]
    fn the_open_redirect_vectors_are_all_refused() {
        for raw in [
            "//evil.test",
            "///evil.test",
            "////evil.test",
            "/\\evil.test",
            "\\\\evil.test",
            "\\/evil.test",
            "/\t/evil.test",
            "/\r\n/evil.test",
            "/%09/evil.test",
            "/%0d%0a/evil.test",
            "/%5cevil.test",
            "/%2f%2fevil.test",
            "%2f%2fevil.test",
            "https:evil.test",
            "https:/evil.test",
            "http://app.example@evil.test",
            "https://app.example@evil.test/",
            "https://user:pw@app.example/",
            "https://app.example.evil.test/",
            "https://evil.test/",
            "http://app.example/",
            "https://app.example:8443/",
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "evil.test",
            "account/me",
            " /account/me",
            "/account/me ",
            "",
        ] {
            assert_eq!(same_origin(BASE, raw), Err(NotSameOrigin), "{raw:?}");
        }
    }

    #[test]
    fn same_origin_paths_and_urls_pass_as_approved() {
        for (raw, target) in [
            ("/account/me", "/account/me"),
            ("/account/me?x=1#y", "/account/me?x=1#y"),
            ("/a/../account/me", "/account/me"),
            (
                "https://app.example/account/me",
                "https://app.example/account/me",
            ),
            ("https://APP.example:443/x", "https://app.example/x"),
        ] {
            assert_eq!(same_origin(BASE, raw).as_deref(), Ok(target), "{raw:?}");
        }
    }

    #[test]
    fn a_very_long_target_is_refused() {
        let long = format!("/{}", "a".repeat(MAX_CHARS));
        assert_eq!(same_origin(BASE, &long), Err(NotSameOrigin));
    }
}
