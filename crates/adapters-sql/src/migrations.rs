//! Whether a database's migration record matches this build, for both SQL
//! backends' `StoreHealth::schema_is_current`.

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
