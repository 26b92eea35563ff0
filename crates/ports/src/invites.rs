//! Invitations: the codes an operator hands out when registration is
//! invite-only (`registration_mode = "invite"`).
//!
//! A code is a 256-bit secret shown once, when the invite is made; the
//! store keeps only its SHA-256 ([`TokenHash`]), like every other token.
//! An invite admits one registration ([`InviteStore::redeem`] is one atomic
//! step: of any number of concurrent redeemers exactly one gets
//! [`InviteRedemption::Redeemed`]), may be bound to one address, and dies at its
//! exact `expires_at` microsecond or when an administrator revokes it.

use std::fmt;

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::error::StoreError;
use crate::types::{Email, InviteId, TokenHash, UserId};

/// One invitation as stored: never the code itself.
#[derive(Clone, PartialEq)]
pub struct Invite {
    /// What administrators name it by (listing, revoking).
    pub id: InviteId,
    /// SHA-256 of the code: a database reader cannot register with it.
    pub code_hash: TokenHash,
    /// The only address it admits, when bound.
    pub email: Option<Email>,
    /// The operator's reminder of whom it was for.
    pub note: Option<String>,
    /// The administrator who made it (`None`: the command line).
    pub created_by: Option<UserId>,
    /// When it was made.
    pub created_at: Timestamp,
    /// It admits nobody from this instant on.
    pub expires_at: Timestamp,
    /// When a registration spent it.
    pub used_at: Option<Timestamp>,
    /// The address that spent it.
    pub used_by: Option<Email>,
    /// When an administrator withdrew it.
    pub revoked_at: Option<Timestamp>,
}

impl Invite {
    /// Whether it would still admit a registration at `now`.
    pub fn is_open(&self, now: Timestamp) -> bool {
        self.used_at.is_none() && self.revoked_at.is_none() && self.expires_at > now
    }
}

impl fmt::Debug for Invite {
    // The hash is not the code, but it is what the store is searched by:
    // it stays out of logs all the same.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invite")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("used_at", &self.used_at)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

/// Outcome of [`InviteStore::redeem`]. Every variant but `Redeemed` changed
/// nothing; the caller answers them all alike, so a code's holder learns
/// nothing about addresses from which one it was.
#[derive(Debug, Clone, PartialEq)]
pub enum InviteRedemption {
    /// The invite is spent, by this address, as of `now`.
    Redeemed(Invite),
    /// No invite has that code.
    Unknown,
    /// Its `expires_at` is at or before `now`.
    Expired,
    /// A registration spent it already.
    Spent,
    /// It is bound to another address.
    WrongAddress,
    /// An administrator withdrew it.
    Revoked,
}

/// The `invites` table / collection.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait InviteStore: Send + Sync {
    /// Stores a new invite. `Err(Conflict)` if its id or code hash exists.
    async fn create(&self, invite: Invite) -> Result<(), StoreError>;
    /// Newest first (`created_at`, then `id`, descending), at most `limit`:
    /// only those still open at `now` ([`Invite::is_open`]), or every
    /// stored one with `include_closed`.
    async fn list(
        &self,
        include_closed: bool,
        limit: u64,
        now: Timestamp,
    ) -> Result<Vec<Invite>, StoreError>;
    /// Withdraws an invite that is neither spent nor revoked yet (an
    /// expired one too, so it can never be mistaken for open) and returns
    /// it as it now is; `None` if there is no such invite.
    async fn revoke(&self, id: &InviteId, now: Timestamp) -> Result<Option<Invite>, StoreError>;
    /// Atomically spends the invite with this code for `email`: only if it
    /// is not spent, not revoked, `expires_at > now`, and unbound or bound
    /// to `email`. Of concurrent redeemers of one code exactly one gets
    /// [`InviteRedemption::Redeemed`]; a miss changes nothing and says why.
    async fn redeem(
        &self,
        code: &TokenHash,
        email: &Email,
        now: Timestamp,
    ) -> Result<InviteRedemption, StoreError>;
    /// Undoes a redemption by `email` whose registration then failed (a
    /// store error, a taken address answered as such): the invite is open
    /// again. `false` if it is not spent by that address. Single use still
    /// holds: only the redeemer releases, and only what it spent.
    async fn release(&self, id: &InviteId, email: &Email) -> Result<bool, StoreError>;
    /// Deletes invites whose `expires_at` is at or before `now`, spent or
    /// not. Returns how many.
    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError>;
}
