//! [`AuditStore`] over `audit_log`: append-only rows, listed by the
//! `(at, id)` keyset.

use async_trait::async_trait;
use regstack_ports::{AuditEntry, AuditQuery, AuditStore, Email, StoreError, Timestamp, UserId};

use super::{commit, SqlStores};
use crate::backend::{Arg, Backend, Commit, Conn};
use crate::error::CorruptRow;
use crate::rows::Cells;
use crate::time::{from_db, to_db};

/// Filters shared by both orders: `$1` account (subject or actor), `$2`
/// kind, `$3` since (inclusive), `$4` until (exclusive), `$5`/`$6` the
/// cursor, `$7` limit, `$8` address. Only the cursor's direction and the order differ.
macro_rules! audit_query {
    ($cmp:literal, $dir:literal) => {
        concat!(
            "SELECT id, at, kind, user_id, actor_id, email, ip, detail FROM audit_log \
             WHERE ($1 IS NULL OR user_id = $1 OR actor_id = $1) \
             AND ($2 IS NULL OR kind = $2) \
             AND ($8 IS NULL OR email = $8) \
             AND ($3 IS NULL OR at >= $3) \
             AND ($4 IS NULL OR at < $4) \
             AND ($5 IS NULL OR at ",
            $cmp,
            " $5 OR (at = $5 AND id ",
            $cmp,
            " $6)) ORDER BY at ",
            $dir,
            ", id ",
            $dir,
            " LIMIT $7"
        )
    };
}

const NEWEST_FIRST: &str = audit_query!("<", "DESC");
const OLDEST_FIRST: &str = audit_query!(">", "ASC");

fn entry(row: &impl Cells) -> Result<AuditEntry, StoreError> {
    let user = |s: Option<String>| -> Result<Option<UserId>, CorruptRow> {
        s.map(|s| UserId::parse(&s).ok_or(CorruptRow("audit user id")))
            .transpose()
    };
    Ok(AuditEntry {
        id: row.text(0)?,
        at: from_db(row.int(1)?)?,
        kind: row.text(2)?,
        user_id: user(row.opt_text(3)?)?,
        actor_id: user(row.opt_text(4)?)?,
        email: row
            .opt_text(5)?
            .map(|s| Email::from_stored(&s).map_err(|_| CorruptRow("audit email")))
            .transpose()?,
        ip: row.opt_text(6)?,
        detail: row.text(7)?,
    })
}

#[async_trait]
impl<B: Backend> AuditStore for SqlStores<B> {
    async fn append(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        // One transaction per batch; a relaxed commit, as the queue that
        // feeds it is itself lost with the process.
        let mut tx = self.begin(Commit::Relaxed).await?;
        for e in entries {
            tx.execute(
                "INSERT INTO audit_log (id, at, kind, user_id, actor_id, email, ip, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
                &[
                    Arg::Text(&e.id),
                    Arg::Int(to_db(e.at)),
                    Arg::Text(&e.kind),
                    Arg::OptText(e.user_id.as_ref().map(UserId::as_str)),
                    Arg::OptText(e.actor_id.as_ref().map(UserId::as_str)),
                    Arg::OptText(e.email.as_ref().map(Email::as_str)),
                    Arg::OptText(e.ip.as_deref()),
                    Arg::Text(&e.detail),
                ],
            )
            .await?;
        }
        commit::<B>(tx).await
    }

    async fn query(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let sql = if q.newest_first {
            NEWEST_FIRST
        } else {
            OLDEST_FIRST
        };
        let args = [
            Arg::OptText(q.user_id.as_ref().map(UserId::as_str)),
            Arg::OptText(q.kind.as_deref()),
            Arg::OptInt(q.since.map(to_db)),
            Arg::OptInt(q.until.map(to_db)),
            Arg::OptInt(q.after.as_ref().map(|c| to_db(c.at))),
            Arg::OptText(q.after.as_ref().map(|c| c.id.as_str())),
            Arg::Int(i64::from(q.limit)),
            Arg::OptText(q.email.as_ref().map(Email::as_str)),
        ];
        self.read_conn()
            .await?
            .fetch_all(sql, &args)
            .await?
            .iter()
            .map(entry)
            .collect()
    }

    async fn purge_before(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.write_conn(Commit::Relaxed)
            .await?
            .execute(
                "DELETE FROM audit_log WHERE at < $1",
                &[Arg::Int(to_db(before))],
            )
            .await
    }
}
