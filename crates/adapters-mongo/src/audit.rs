//! [`AuditStore`] over `audit_log`: one document per entry, `_id` = the
//! entry's id, never updated.
//!
//! An entry is written by an upsert that only sets fields on insert, so a
//! batch retried after a lost answer writes each entry once — with no
//! transaction, each document is its own step, and a batch cut short is
//! finished by its retry.

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use regstack_ports::{AuditEntry, AuditQuery, AuditStore, Email, StoreError, Timestamp, UserId};

use crate::docs;
use crate::error::{run, CorruptRow};
use crate::time::to_db;
use crate::MongoStores;

fn opt_text(v: Option<&str>) -> Bson {
    v.map_or(Bson::Null, |s| Bson::String(s.to_owned()))
}

fn entry_doc(e: &AuditEntry) -> Document {
    doc! {
        "_id": &e.id,
        "at": to_db(e.at),
        "kind": &e.kind,
        "user_id": opt_text(e.user_id.as_ref().map(UserId::as_str)),
        "actor_id": opt_text(e.actor_id.as_ref().map(UserId::as_str)),
        "email": opt_text(e.email.as_ref().map(Email::as_str)),
        "ip": opt_text(e.ip.as_deref()),
        "detail": &e.detail,
    }
}

fn entry(d: &Document) -> Result<AuditEntry, CorruptRow> {
    let user = |key: &'static str| -> Result<Option<UserId>, CorruptRow> {
        docs::opt_string(d, key)?
            .map(|s| UserId::parse(&s).ok_or(CorruptRow(key)))
            .transpose()
    };
    Ok(AuditEntry {
        id: docs::string(d, "_id")?.to_owned(),
        at: docs::instant(d, "at")?,
        kind: docs::string(d, "kind")?.to_owned(),
        user_id: user("user_id")?,
        actor_id: user("actor_id")?,
        email: docs::opt_string(d, "email")?
            .map(|s| Email::from_stored(&s).map_err(|_| CorruptRow("email")))
            .transpose()?,
        ip: docs::opt_string(d, "ip")?,
        detail: docs::string(d, "detail")?.to_owned(),
    })
}

/// The filter of `q`: every condition must hold (`$and`, since the account
/// and the cursor are each an `$or`).
fn filter(q: &AuditQuery) -> Document {
    let mut all: Vec<Document> = Vec::new();
    if let Some(u) = &q.user_id {
        all.push(doc! { "$or": [ { "user_id": u.as_str() }, { "actor_id": u.as_str() } ] });
    }
    if let Some(m) = &q.email {
        all.push(doc! { "email": m.as_str() });
    }
    if let Some(k) = &q.kind {
        all.push(doc! { "kind": k });
    }
    if let Some(t) = q.since {
        all.push(doc! { "at": { "$gte": to_db(t) } });
    }
    if let Some(t) = q.until {
        all.push(doc! { "at": { "$lt": to_db(t) } });
    }
    if let Some(c) = &q.after {
        let op = if q.newest_first { "$lt" } else { "$gt" };
        let at = to_db(c.at);
        all.push(doc! { "$or": [
            { "at": { op: at } },
            { "at": at, "_id": { op: c.id.as_str() } },
        ] });
    }
    if all.is_empty() {
        doc! {}
    } else {
        doc! { "$and": all }
    }
}

#[async_trait]
impl AuditStore for MongoStores {
    async fn append(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        for e in entries {
            run(self
                .audit_log
                .update_one(doc! { "_id": &e.id }, doc! { "$setOnInsert": entry_doc(e) })
                .upsert(true))
            .await?;
        }
        Ok(())
    }

    async fn query(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let dir = if q.newest_first { -1 } else { 1 };
        let found: Vec<Document> = run(async {
            self.audit_log
                .find(filter(q))
                .sort(doc! { "at": dir, "_id": dir })
                .limit(i64::from(q.limit))
                .await?
                .try_collect::<Vec<Document>>()
                .await
        })
        .await?;
        found
            .iter()
            .map(|d| entry(d).map_err(StoreError::from))
            .collect()
    }

    async fn purge_before(&self, before: Timestamp) -> Result<u64, StoreError> {
        let done = run(self
            .audit_log
            .delete_many(doc! { "at": { "$lt": to_db(before) } }))
        .await?;
        Ok(done.deleted_count)
    }
}
