//! Whether a database's migration record matches this build, for both SQL
//! backends' `StoreHealth::schema_is_current`, and which migrations it
//! lacks, for `regstack migrate --dry-run`.

use std::collections::HashMap;

use sqlx::migrate::Migrator;

/// True when every up-migration of `migrator` is among `applied` (version
/// → checksum of each successful one) with the same checksum: a database
/// that lacks one, or whose recorded script differs from ours, is not
/// current.
pub(crate) fn all_applied(migrator: &Migrator, applied: &HashMap<i64, Vec<u8>>) -> bool {
    migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .all(|m| applied.get(&m.version).map(Vec::as_slice) == Some(&*m.checksum))
}

/// A migration this build would apply to a database that lacks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMigration {
    /// Its version (the number its file name starts with).
    pub version: i64,
    /// Its description (the rest of the file name).
    pub description: String,
}

/// The up-migrations of `migrator` not among `applied` with the same
/// checksum, in order: what [`all_applied`] finds missing, listed.
pub(crate) fn pending(
    migrator: &Migrator,
    applied: &HashMap<i64, Vec<u8>>,
) -> Vec<PendingMigration> {
    migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .filter(|m| applied.get(&m.version).map(Vec::as_slice) != Some(&*m.checksum))
        .map(|m| PendingMigration {
            version: m.version,
            description: m.description.to_string(),
        })
        .collect()
}
