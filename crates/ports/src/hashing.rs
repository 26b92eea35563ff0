//! Password hashing as a port, so tests can count verifications (the
//! anti-enumeration and lockout properties are proven by counting, not by
//! timing) and so the work runs wherever the implementation decides.

use async_trait::async_trait;
use secrecy::SecretString;

use crate::error::HashError;
use crate::types::PasswordHash;

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verification {
    /// The password matches.
    pub matches: bool,
    /// The stored hash uses weaker parameters than configured: the caller
    /// should store a fresh hash now that it knows the password.
    pub needs_rehash: bool,
}

/// Hashes and verifies passwords. Implementations bound how many run at
/// once: each call may hold tens of MiB for a noticeable time.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait PasswordHasher: Send + Sync {
    /// Hashes a password into a PHC string.
    async fn hash(&self, password: &SecretString) -> Result<PasswordHash, HashError>;
    /// Checks a password against a stored PHC string.
    async fn verify(
        &self,
        password: &SecretString,
        hash: &PasswordHash,
    ) -> Result<Verification, HashError>;
    /// Spends exactly the cost of one [`verify`](Self::verify) against a
    /// hash no password matches. Used for unknown emails and accounts without
    /// a password, so their answer takes as long as a wrong password's.
    async fn verify_dummy(&self, password: &SecretString) -> Result<(), HashError>;
}
