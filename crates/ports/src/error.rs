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

/// A message (mail or SMS) could not be delivered.
///
/// Two variants because a caller acts differently on each: a message the
/// provider refused and would refuse again must not be retried (and, for
/// an invalid number, means asking the user for another one), while
/// anything else may go through later, unchanged. Neither variant's text
/// ever contains the body or a credential.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Not delivered this time, and the same message may go through later:
    /// the connection or TLS failed, the send timed out, the provider
    /// failed (5xx), throttled us (HTTP 429, AWS `Throttling`), or refused
    /// our credentials or account (fixed by the operator, not by changing
    /// the message). A transport that cannot tell a refusal from a failure
    /// reports here too: SMTP relays usually accept a mail and bounce it
    /// later, so the SMTP transport reports everything here. The text
    /// names the step and the provider's short reason.
    #[error("delivery failed: {0}")]
    Delivery(String),
    /// The provider refused this message and would refuse it again
    /// unchanged, so retrying is pointless. Usually the recipient is at
    /// fault (Twilio 21211 "not a valid phone number", SNS
    /// `InvalidParameter`); sometimes the sender's set-up (Twilio 21606, an
    /// SES `MessageRejected` for an unverified identity). `code` is the
    /// provider's own (Twilio's number, AWS's error code) so that a caller
    /// which tells the user "this number is wrong" can match the codes it
    /// knows rather than parse `reason`.
    #[error("{provider} refused the message ({code}): {reason}")]
    Rejected {
        /// Which service refused (`"twilio"`, `"sns"`, `"ses"`).
        provider: &'static str,
        /// The provider's error code.
        code: String,
        /// The provider's short explanation (never the body).
        reason: String,
    },
}

impl NotifyError {
    /// Whether sending the same message again is certain to fail. A caller
    /// that retries or queues messages checks this first.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Rejected { .. })
    }
}
