//! The in-memory fakes run the same store contract as every real backend:
//! if a fake drifts from the contract, flow tests built on it stop meaning
//! anything.

async fn fresh_memory_stores() -> regstack_ports::Stores {
    regstack_testkit::memory_stores()
}

regstack_testkit::store_contract!(fresh_memory_stores);

/// The form used for backends that may be absent (PostgreSQL, MongoDB):
/// the factory returns `Option<Stores>`. Here it always has one, so the
/// suite runs a second time through that expansion.
mod optional_form {
    async fn maybe_memory_stores() -> Option<regstack_ports::Stores> {
        Some(regstack_testkit::memory_stores())
    }

    regstack_testkit::store_contract!(optional: maybe_memory_stores);
}
