//! Which database a `sqlite…` URL names.
//!
//! Two conventions meet here. sqlx's: `sqlite:data.db` and
//! `sqlite://data.db` are relative, `sqlite:///data.db` is `/data.db`.
//! SQLAlchemy's, which regstack configs use (`sqlite+aiosqlite:///./regstack.db`):
//! after `sqlite+driver://` one `/` separates, so `///data.db` is relative
//! and `////abs/data.db` absolute. A URL with a `+driver` suffix is read
//! the SQLAlchemy way; a plain `sqlite:` URL the sqlx way, except that
//! `sqlite:///./x` and `sqlite:///../x` (which nobody means as `/./x`) are
//! relative, so regstack's spelling works with or without the driver suffix.

use std::path::PathBuf;

use crate::error::BadUrl;

/// Where the database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A private in-memory database (`sqlite::memory:`).
    Memory,
    /// A file, created if missing.
    File(PathBuf),
}

/// Parses a `sqlite:` or `sqlite+driver:` URL. Query parameters
/// (`?mode=…`, SQLAlchemy's `?check_same_thread=…`) are ignored: the pool
/// sets every option it needs itself.
pub(crate) fn parse(url: &str) -> Result<Target, BadUrl> {
    let url = url.trim();
    let url = url.split_once('?').map_or(url, |(base, _)| base);
    let Some(rest) = url.strip_prefix("sqlite") else {
        return Err(BadUrl("expected a URL starting with `sqlite:`"));
    };
    let (sqlalchemy, rest) = match rest.strip_prefix('+') {
        Some(with_driver) => match with_driver.split_once(':') {
            Some((driver, rest)) if !driver.is_empty() => (true, rest),
            _ => return Err(BadUrl("expected `sqlite+driver:`")),
        },
        None => match rest.strip_prefix(':') {
            Some(rest) => (false, rest),
            None => return Err(BadUrl("expected a URL starting with `sqlite:`")),
        },
    };

    let path = if let Some(after) = rest.strip_prefix("//") {
        if sqlalchemy {
            // `sqlite+x://` alone is SQLAlchemy's in-memory database;
            // otherwise one `/` separates the (empty) host from the path.
            match after.strip_prefix('/') {
                Some(path) => path,
                None if after.is_empty() => return Ok(Target::Memory),
                None => return Err(BadUrl("expected `sqlite+driver:///path`")),
            }
        } else if let Some(rel) = after
            .strip_prefix('/')
            .filter(|p| p.starts_with("./") || p.starts_with("../"))
        {
            rel
        } else {
            after
        }
    } else {
        rest
    };

    match path {
        ":memory:" => Ok(Target::Memory),
        "" => Err(BadUrl("the URL names no database file")),
        path => Ok(Target::File(PathBuf::from(path))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(p: &str) -> Result<Target, BadUrl> {
        Ok(Target::File(PathBuf::from(p)))
    }

    fn same(a: Result<Target, BadUrl>, b: Result<Target, BadUrl>) -> bool {
        a.ok() == b.ok()
    }

    #[test]
    fn sqlx_spellings_follow_sqlx() {
        assert!(same(parse("sqlite:data.db"), file("data.db")));
        assert!(same(parse("sqlite:./regstack.db"), file("./regstack.db")));
        assert!(same(parse("sqlite://data.db"), file("data.db")));
        assert!(same(
            parse("sqlite:///tmp/x/data.db"),
            file("/tmp/x/data.db")
        ));
        assert!(same(parse("sqlite:/tmp/data.db"), file("/tmp/data.db")));
        assert!(same(parse("sqlite://data.db?mode=rwc"), file("data.db")));
    }

    #[test]
    fn dot_relative_paths_after_three_slashes_stay_relative() {
        assert!(same(
            parse("sqlite:///./regstack.db"),
            file("./regstack.db")
        ));
        assert!(same(
            parse("sqlite:///../regstack.db"),
            file("../regstack.db")
        ));
    }

    #[test]
    fn regstack_sqlalchemy_spellings_follow_sqlalchemy() {
        assert!(same(
            parse("sqlite+aiosqlite:///./regstack.db"),
            file("./regstack.db")
        ));
        assert!(same(
            parse("sqlite+aiosqlite:///regstack.db"),
            file("regstack.db")
        ));
        assert!(same(
            parse("sqlite+aiosqlite:////var/lib/regstack.db"),
            file("/var/lib/regstack.db")
        ));
        assert!(same(parse("sqlite+pysqlite:///x.db"), file("x.db")));
    }

    #[test]
    fn memory_spellings_open_an_in_memory_database() {
        assert!(same(parse("sqlite::memory:"), Ok(Target::Memory)));
        assert!(same(parse("sqlite://:memory:"), Ok(Target::Memory)));
        assert!(same(
            parse("sqlite+aiosqlite:///:memory:"),
            Ok(Target::Memory)
        ));
        assert!(same(parse("sqlite+aiosqlite://"), Ok(Target::Memory)));
    }

    #[test]
    fn other_schemes_and_empty_paths_are_refused() {
        assert!(parse("postgres://localhost/db").is_err());
        assert!(parse("sqlite:").is_err());
        assert!(parse("sqlite://").is_err());
        assert!(parse("sqlitex:foo").is_err());
        assert!(parse("sqlite+:foo").is_err());
    }
}
