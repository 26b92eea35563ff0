//! Errors that cross the ports. Each names what a caller can act on.

/// What a store can report. Adapters map their driver errors onto these so
/// that `core` and `http-axum` never see driver types.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule refused the write; the payload names the rule
    /// (`"email"`, `"session id"`, …) so the flow can answer precisely.
    #[error("conflicting write ({0})")]
    Conflict(&'static str),
    /// The backend cannot be reached (connection refused, pool timeout).
    /// Surfaces as HTTP 503: the request may succeed later.
    #[error("storage backend unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Anything else the backend reported. Surfaces as HTTP 500 with a
    /// generic body; the source chain is logged, never sent.
    #[error("storage backend failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Wraps an arbitrary backend error.
    pub fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Backend(Box::new(e))
    }
    /// Wraps a connectivity error.
    pub fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable(Box::new(e))
    }
}

/// A password could not be hashed or a stored hash could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The stored string is not a PHC string this hasher understands.
    #[error("stored password hash is malformed")]
    Malformed,
    /// The hashing task failed (for instance the blocking pool shut down).
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// A message could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The transport refused or failed; the message says which step, never
    /// the body.
    #[error("delivery failed: {0}")]
    Delivery(String),
}
