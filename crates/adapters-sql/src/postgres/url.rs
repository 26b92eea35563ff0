//! Which server a `postgres…` URL names.
//!
//! sqlx reads `postgres://` and `postgresql://` URLs the libpq way. regstack
//! configurations use SQLAlchemy's spelling, `postgresql+asyncpg://…`: the
//! same URL with a driver suffix on the scheme, and asyncpg's `ssl=<mode>`
//! where libpq says `sslmode=<mode>`. This module turns the second into the
//! first; sqlx does the rest.

use std::str::FromStr;

use regstack_ports::StoreError;
use sqlx::postgres::PgConnectOptions;

use crate::error::BadUrl;

/// The libpq SSL modes asyncpg's `ssl` parameter may name.
const SSL_MODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

/// Rewrites an accepted URL into the `postgres://` form sqlx reads.
fn normalise(url: &str) -> Result<String, BadUrl> {
    let url = url.trim();
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(BadUrl("expected a URL starting with `postgres://`"));
    };
    let scheme = scheme.to_ascii_lowercase();
    let (base, driver) = match scheme.split_once('+') {
        Some((base, driver)) if !driver.is_empty() => (base, Some(driver)),
        Some(_) => return Err(BadUrl("expected `postgresql+driver://`")),
        None => (scheme.as_str(), None),
    };
    if !matches!(base, "postgres" | "postgresql") {
        return Err(BadUrl(
            "expected a URL starting with `postgres://` or `postgresql://`",
        ));
    }
    let rest = match (driver, rest.split_once('?')) {
        (Some(_), Some((path, query))) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some(("ssl", mode)) if SSL_MODES.contains(&mode) => format!("sslmode={mode}"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        _ => rest.to_owned(),
    };
    Ok(format!("postgres://{rest}"))
}

/// Parses an accepted URL into connect options (application name
/// `regstack`, unless the URL sets one).
pub(crate) fn parse(url: &str) -> Result<PgConnectOptions, StoreError> {
    let normal = normalise(url).map_err(StoreError::backend)?;
    let options = PgConnectOptions::from_str(&normal).map_err(StoreError::backend)?;
    Ok(if options.get_application_name().is_none() {
        options.application_name("regstack")
    } else {
        options
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_spellings_pass_through() {
        assert_eq!(
            normalise("postgres://u:p@db:5432/app").ok().as_deref(),
            Some("postgres://u:p@db:5432/app")
        );
        assert_eq!(
            normalise("postgresql://u@127.0.0.1/app?sslmode=disable")
                .ok()
                .as_deref(),
            Some("postgres://u@127.0.0.1/app?sslmode=disable")
        );
    }

    #[test]
    fn regstack_sqlalchemy_spelling_is_accepted() {
        assert_eq!(
            normalise("postgresql+asyncpg://u:p@db/app").ok().as_deref(),
            Some("postgres://u:p@db/app")
        );
        assert_eq!(
            normalise("postgresql+asyncpg://u@db/app?ssl=require&application_name=x")
                .ok()
                .as_deref(),
            Some("postgres://u@db/app?sslmode=require&application_name=x")
        );
        assert_eq!(
            normalise("POSTGRESQL+ASYNCPG://u@db/app").ok().as_deref(),
            Some("postgres://u@db/app")
        );
    }

    #[test]
    fn urls_parse_into_options() {
        let o = parse("postgresql+asyncpg://alice:secret@db.internal:6543/regstack")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.get_host(), "db.internal");
        assert_eq!(o.get_port(), 6543);
        assert_eq!(o.get_username(), "alice");
        assert_eq!(o.get_database(), Some("regstack"));
        assert_eq!(o.get_application_name(), Some("regstack"));
    }

    #[test]
    fn other_schemes_are_refused() {
        for url in [
            "sqlite:data.db",
            "sqlite+aiosqlite:///./x.db",
            "mysql://localhost/x",
            "postgres",
            "postgresql+://u@db/app",
            "mongodb://localhost",
        ] {
            assert!(normalise(url).is_err(), "{url}");
        }
    }
}
