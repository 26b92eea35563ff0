//! [`InviteStore`] over `invites`: a redemption is one conditional
//! `findOneAndUpdate` on the document holding the code's hash; only a miss
//! reads it again, to say why. `_id` is the invite id.

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::ReturnDocument;
use regstack_ports::{
    Email, Invite, InviteId, InviteRedemption, InviteStore, StoreError, Timestamp, TokenHash,
    UserId,
};

use crate::docs::{self, opt_micros};
use crate::error::{insert_once, run, CorruptRow};
use crate::schema::hint;
use crate::time::{to_db, ttl_date};
use crate::MongoStores;

fn opt_str(s: Option<&str>) -> Bson {
    s.map_or(Bson::Null, |s| Bson::String(s.to_owned()))
}

fn invite_doc(i: &Invite) -> Document {
    doc! {
        "_id": i.id.as_str(),
        "code_hash": i.code_hash.as_str(),
        "email": opt_str(i.email.as_ref().map(Email::as_str)),
        "note": opt_str(i.note.as_deref()),
        "created_by": opt_str(i.created_by.as_ref().map(UserId::as_str)),
        "created_at": to_db(i.created_at),
        "expires_at": to_db(i.expires_at),
        "expire_at": ttl_date(to_db(i.expires_at)),
        "used_at": opt_micros(i.used_at),
        "used_by": opt_str(i.used_by.as_ref().map(Email::as_str)),
        "revoked_at": opt_micros(i.revoked_at),
    }
}

fn opt_email(d: &Document, key: &'static str) -> Result<Option<Email>, CorruptRow> {
    docs::opt_string(d, key)?
        .map(|e| Email::from_stored(&e).map_err(|_| CorruptRow(key)))
        .transpose()
}

fn invite(d: &Document) -> Result<Invite, StoreError> {
    Ok(Invite {
        id: InviteId::parse(docs::string(d, "_id")?).ok_or(CorruptRow("_id"))?,
        code_hash: TokenHash::from_hex(docs::string(d, "code_hash")?.to_owned())
            .ok_or(CorruptRow("code_hash"))?,
        email: opt_email(d, "email")?,
        note: docs::opt_string(d, "note")?,
        created_by: docs::opt_string(d, "created_by")?
            .map(|u| UserId::parse(&u).ok_or(CorruptRow("created_by")))
            .transpose()?,
        created_at: docs::instant(d, "created_at")?,
        expires_at: docs::instant(d, "expires_at")?,
        used_at: docs::opt_instant(d, "used_at")?,
        used_by: opt_email(d, "used_by")?,
        revoked_at: docs::opt_instant(d, "revoked_at")?,
    })
}

impl MongoStores {
    /// What account deletion takes of the invitations: those bound to or
    /// spent by the address go, the account's name as a maker is cleared.
    pub(crate) async fn forget_invites_of(
        &self,
        user_id: &str,
        email: &str,
    ) -> Result<(), StoreError> {
        run(self.invites.delete_many(doc! {
            "$or": [{ "email": email }, { "used_by": email }],
        }))
        .await?;
        run(self.invites.update_many(
            doc! { "created_by": user_id },
            doc! { "$set": { "created_by": Bson::Null } },
        ))
        .await?;
        Ok(())
    }
}

#[async_trait]
impl InviteStore for MongoStores {
    async fn create(&self, i: Invite) -> Result<(), StoreError> {
        let mine = doc! { "_id": i.id.as_str(), "code_hash": i.code_hash.as_str() };
        insert_once(&self.invites, invite_doc(&i), mine).await
    }

    async fn list(
        &self,
        include_closed: bool,
        limit: u64,
        now: Timestamp,
    ) -> Result<Vec<Invite>, StoreError> {
        let filter = if include_closed {
            doc! {}
        } else {
            doc! {
                "used_at": Bson::Null,
                "revoked_at": Bson::Null,
                "expires_at": { "$gt": to_db(now) },
            }
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let found: Vec<Document> = run(async {
            self.invites
                .find(filter)
                .sort(doc! { "created_at": -1, "_id": -1 })
                .hint(hint::by(hint::CREATED_AT_ID))
                .limit(limit)
                .await?
                .try_collect::<Vec<Document>>()
                .await
        })
        .await?;
        found.iter().map(invite).collect()
    }

    async fn revoke(&self, id: &InviteId, now: Timestamp) -> Result<Option<Invite>, StoreError> {
        run(self
            .invites
            .find_one_and_update(
                doc! { "_id": id.as_str(), "used_at": Bson::Null, "revoked_at": Bson::Null },
                doc! { "$set": { "revoked_at": to_db(now) } },
            )
            .return_document(ReturnDocument::After))
        .await?
        .map(|d| invite(&d))
        .transpose()
    }

    async fn redeem(
        &self,
        code: &TokenHash,
        email: &Email,
        now: Timestamp,
    ) -> Result<InviteRedemption, StoreError> {
        let now_db = to_db(now);
        let spent = run(self
            .invites
            .find_one_and_update(
                doc! {
                    "code_hash": code.as_str(),
                    "used_at": Bson::Null,
                    "revoked_at": Bson::Null,
                    "expires_at": { "$gt": now_db },
                    "$or": [{ "email": Bson::Null }, { "email": email.as_str() }],
                },
                doc! { "$set": { "used_at": now_db, "used_by": email.as_str() } },
            )
            .hint(hint::by(hint::CODE_HASH))
            .return_document(ReturnDocument::After))
        .await?;
        if let Some(d) = spent {
            return Ok(InviteRedemption::Redeemed(invite(&d)?));
        }
        let Some(d) = run(self
            .invites
            .find_one(doc! { "code_hash": code.as_str() })
            .hint(hint::by(hint::CODE_HASH)))
        .await?
        else {
            return Ok(InviteRedemption::Unknown);
        };
        let found = invite(&d)?;
        Ok(if found.revoked_at.is_some() {
            InviteRedemption::Revoked
        } else if found.used_at.is_some() {
            InviteRedemption::Spent
        } else if found.expires_at <= now {
            InviteRedemption::Expired
        } else {
            InviteRedemption::WrongAddress
        })
    }

    async fn release(&self, id: &InviteId, email: &Email) -> Result<bool, StoreError> {
        let done = run(self.invites.update_one(
            doc! { "_id": id.as_str(), "used_by": email.as_str() },
            doc! { "$set": { "used_at": Bson::Null, "used_by": Bson::Null } },
        ))
        .await?;
        Ok(done.modified_count == 1)
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        Ok(run(self
            .invites
            .delete_many(doc! { "expires_at": { "$lte": to_db(now) } }))
        .await?
        .deleted_count)
    }
}
