//! TEMPORARY PLACEHOLDER — not the MongoDB OAuth store.
//!
//! It exists only so that this crate builds while `Stores` already has its
//! `oauth` field and the real implementation (`oauth.rs`, `impl OAuthStore
//! for MongoStores`) is being written on another branch. Every call fails
//! with [`StoreError::Backend`], so nothing can mistake it for a working
//! store; the MongoDB contract suite's OAuth cases fail against it. Delete
//! this file and wire `MongoStores` into `stores()` when the real one is
//! merged.

use async_trait::async_trait;
use regstack_ports::{
    Claim, Creation, FlowResult, Linking, NewUser, OAuthFlow, OAuthIdentity, OAuthStore,
    Redemption, StoreError, Timestamp, TokenHash, Unlinking, UserId,
};

/// Refuses every OAuth store call (see the module doc).
#[derive(Debug, Clone, Copy)]
pub(crate) struct NotYetImplemented;

/// Why every call of [`NotYetImplemented`] fails.
#[derive(Debug, thiserror::Error)]
#[error("the MongoDB OAuth store is not implemented in this build")]
struct Missing;

fn missing<T>() -> Result<T, StoreError> {
    Err(StoreError::backend(Missing))
}

#[async_trait]
impl OAuthStore for NotYetImplemented {
    async fn begin(&self, _: OAuthFlow) -> Result<(), StoreError> {
        missing()
    }
    async fn claim(&self, _: &TokenHash, _: &str, _: Timestamp) -> Result<Claim, StoreError> {
        missing()
    }
    async fn complete(
        &self,
        _: &TokenHash,
        _: &FlowResult,
        _: Timestamp,
    ) -> Result<bool, StoreError> {
        missing()
    }
    async fn redeem(
        &self,
        _: &TokenHash,
        _: &TokenHash,
        _: Timestamp,
    ) -> Result<Redemption, StoreError> {
        missing()
    }
    async fn find_identity(&self, _: &str, _: &str) -> Result<Option<OAuthIdentity>, StoreError> {
        missing()
    }
    async fn identities_of(&self, _: &UserId) -> Result<Vec<OAuthIdentity>, StoreError> {
        missing()
    }
    async fn link_identity(&self, _: &OAuthIdentity) -> Result<Linking, StoreError> {
        missing()
    }
    async fn create_user_with_identity(
        &self,
        _: NewUser,
        _: &OAuthIdentity,
    ) -> Result<Creation, StoreError> {
        missing()
    }
    async fn unlink_identity(&self, _: &UserId, _: &str) -> Result<Unlinking, StoreError> {
        missing()
    }
    async fn touch_identity(&self, _: &str, _: &str, _: Timestamp) -> Result<bool, StoreError> {
        missing()
    }
    async fn purge_expired(&self, _: Timestamp) -> Result<u64, StoreError> {
        missing()
    }
}
