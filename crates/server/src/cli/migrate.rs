//! `regstack migrate --dry-run`: the migrations a database lacks, listed
//! and not applied.
//!
//! It exists so an operator can see what an upgrade will do to the schema
//! before it does it (and a deploy script can tell whether `migrate` has
//! anything to do). It only reads: for SQL the migrator's own record
//! (`_sqlx_migrations`) against the migrations built in; for MongoDB the
//! recorded schema version against this build's. A SQLite file that does
//! not exist yet is not created — everything is pending.

use std::path::Path;

use regstack::{parse_database_url, Backend};
use secrecy::ExposeSecret;

use super::{load_settings, Failure, Outcome};

/// Prints one line per pending migration (`<version> <description>`), or
/// that the schema is current. Exit 0 either way; 1 if the database
/// cannot be read.
pub async fn dry_run(config: Option<&Path>) -> Outcome {
    let settings = load_settings(config)?;
    let db = &settings.database;
    let unreachable = |e: regstack_ports::StoreError| {
        Failure::Failed(format!("database: {e} ({})", source_of(&e)))
    };
    let backend =
        parse_database_url(db.url.expose_secret()).map_err(|e| Failure::Usage(e.to_string()))?;
    let pending: Vec<(String, String)> = match backend {
        Backend::Sqlite { url, file } => {
            let known = || {
                regstack_adapters_sql::sqlite::MIGRATOR
                    .iter()
                    .filter(|m| !m.migration_type.is_down_migration())
                    .map(|m| (m.version.to_string(), m.description.to_string()))
                    .collect()
            };
            match file {
                Some(f) if !f.exists() => known(),
                _ => {
                    let pool = regstack_adapters_sql::sqlite::connect(&url)
                        .await
                        .map_err(unreachable)?;
                    let p = regstack_adapters_sql::sqlite::pending_migrations(&pool)
                        .await
                        .map_err(unreachable)?;
                    pool.close().await;
                    p.into_iter()
                        .map(|m| (m.version.to_string(), m.description))
                        .collect()
                }
            }
        }
        Backend::Postgres { url } => {
            let pool = regstack_adapters_sql::postgres::connect(&url)
                .await
                .map_err(unreachable)?;
            let p = regstack_adapters_sql::postgres::pending_migrations(&pool)
                .await
                .map_err(unreachable)?;
            p.into_iter()
                .map(|m| (m.version.to_string(), m.description))
                .collect()
        }
        Backend::Mongo { url } => {
            let db = regstack_adapters_mongo::connect(&url, &db.mongodb_database)
                .await
                .map_err(unreachable)?;
            let recorded = regstack_adapters_mongo::recorded_version(&db)
                .await
                .map_err(unreachable)?;
            let target = regstack_adapters_mongo::SCHEMA_VERSION;
            match recorded {
                Some(v) if v >= target => Vec::new(),
                Some(v) => vec![(
                    format!("{v} → {target}"),
                    "indexes and collections of this build".into(),
                )],
                None => vec![(
                    format!("none → {target}"),
                    "indexes and collections of this build".into(),
                )],
            }
        }
    };
    if pending.is_empty() {
        println!("schema is current: nothing to apply");
    } else {
        println!("pending (not applied, --dry-run):");
        for (version, description) in &pending {
            println!("  {version} {description}");
        }
    }
    Ok(())
}

/// The first cause under a store error, which says why (refused, no such
/// host, authentication) where the error itself only says "unavailable".
pub(crate) fn source_of(e: &dyn std::error::Error) -> String {
    let mut cause = e.source();
    let mut last = None;
    while let Some(c) = cause {
        last = Some(c.to_string());
        cause = c.source();
    }
    last.unwrap_or_else(|| "no further detail".into())
}
