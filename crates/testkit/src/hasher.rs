//! Password hashers for tests: [`CountingHasher`] makes the hashing port
//! observable, [`FakeHasher`] makes it cheap.
//!
//! The anti-enumeration and lockout properties are proven by counting, not
//! by timing (a timing assertion flakes on a shared machine; the spreads
//! are the benchmark's to measure): "an unknown email pays exactly one
//! verify" is `total_verifications() == 1`, and "at most N hashes run at
//! once" is `max_in_flight() <= N`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use regstack_ports::{HashError, PasswordHash, PasswordHasher, Verification};
use secrecy::{ExposeSecret, SecretString};

/// Wraps any [`PasswordHasher`] and counts what passes through it.
///
/// Clones share the counters, so a test keeps one clone and hands another
/// (as `Arc<dyn PasswordHasher>`) to the code under test.
#[derive(Clone)]
pub struct CountingHasher {
    inner: Arc<dyn PasswordHasher>,
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    hashes: AtomicUsize,
    verifies: AtomicUsize,
    dummies: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// Marks one call as running for as long as it lives. A guard rather than a
/// decrement after `.await`, so a call whose future is dropped mid-way (a
/// client went away) still leaves the in-flight count.
struct InFlight<'a>(&'a Counts);

impl<'a> InFlight<'a> {
    fn enter(counts: &'a Counts) -> Self {
        let now = counts.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        counts.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(counts)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl CountingHasher {
    /// Counts calls into `inner`.
    pub fn new(inner: Arc<dyn PasswordHasher>) -> Self {
        Self {
            inner,
            counts: Arc::default(),
        }
    }

    /// Calls to [`PasswordHasher::hash`].
    pub fn hashes(&self) -> usize {
        self.counts.hashes.load(Ordering::SeqCst)
    }

    /// Calls to [`PasswordHasher::verify`].
    pub fn verifies(&self) -> usize {
        self.counts.verifies.load(Ordering::SeqCst)
    }

    /// Calls to [`PasswordHasher::verify_dummy`].
    pub fn dummy_verifies(&self) -> usize {
        self.counts.dummies.load(Ordering::SeqCst)
    }

    /// Verifications of either kind: what a request paid, whether or not
    /// the account exists. The anti-enumeration tests assert on this.
    pub fn total_verifications(&self) -> usize {
        self.verifies() + self.dummy_verifies()
    }

    /// Calls of any kind running right now.
    pub fn in_flight(&self) -> usize {
        self.counts.in_flight.load(Ordering::SeqCst)
    }

    /// The most calls of any kind that were running at the same moment since
    /// creation or the last [`reset`](Self::reset).
    pub fn max_in_flight(&self) -> usize {
        self.counts.max_in_flight.load(Ordering::SeqCst)
    }

    /// Zeroes the counters, so a test can ignore the work of its setup. The
    /// high-water mark restarts from the calls running now.
    pub fn reset(&self) {
        self.counts.hashes.store(0, Ordering::SeqCst);
        self.counts.verifies.store(0, Ordering::SeqCst);
        self.counts.dummies.store(0, Ordering::SeqCst);
        self.counts.max_in_flight.store(
            self.counts.in_flight.load(Ordering::SeqCst),
            Ordering::SeqCst,
        );
    }
}

#[async_trait]
impl PasswordHasher for CountingHasher {
    async fn hash(&self, password: &SecretString) -> Result<PasswordHash, HashError> {
        self.counts.hashes.fetch_add(1, Ordering::SeqCst);
        let _running = InFlight::enter(&self.counts);
        self.inner.hash(password).await
    }

    async fn verify(
        &self,
        password: &SecretString,
        hash: &PasswordHash,
    ) -> Result<Verification, HashError> {
        self.counts.verifies.fetch_add(1, Ordering::SeqCst);
        let _running = InFlight::enter(&self.counts);
        self.inner.verify(password, hash).await
    }

    async fn verify_dummy(&self, password: &SecretString) -> Result<(), HashError> {
        self.counts.dummies.fetch_add(1, Ordering::SeqCst);
        let _running = InFlight::enter(&self.counts);
        self.inner.verify_dummy(password).await
    }
}

/// A cheap, deterministic stand-in for Argon2, for tests that are about
/// flows rather than hashing.
///
/// Hashes look like `$testkit-fake$c=1$<16 hex digits>`: a non-cryptographic
/// digest, never the password itself, so "the password is not stored in
/// clear" tests stay meaningful. `cost` plays the part of Argon2's
/// parameters: a stored hash with a lower cost verifies with
/// `needs_rehash = true`. An optional delay (an async sleep, not CPU work)
/// keeps calls in flight long enough for a concurrency bound to show in
/// [`CountingHasher::max_in_flight`].
#[derive(Clone, Debug)]
pub struct FakeHasher {
    cost: u32,
    delay: Option<Duration>,
}

const FAKE_PREFIX: &str = "$testkit-fake$c=";

impl Default for FakeHasher {
    fn default() -> Self {
        Self {
            cost: 1,
            delay: None,
        }
    }
}

impl FakeHasher {
    /// Cost 1, no delay.
    pub fn new() -> Self {
        Self::default()
    }

    /// Hashes at `cost`; stored hashes with a lower cost need a rehash.
    pub fn with_cost(mut self, cost: u32) -> Self {
        self.cost = cost;
        self
    }

    /// Makes every call (hash, verify, dummy verify) take `delay`.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// The hash [`hash`](PasswordHasher::hash) would return, without the
    /// delay. For seeding rows directly through the stores.
    pub fn hash_str(&self, password: &str) -> PasswordHash {
        PasswordHash::new(format!(
            "{FAKE_PREFIX}{}${:016x}",
            self.cost,
            digest(password)
        ))
    }

    async fn pause(&self) {
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
    }
}

fn digest(password: &str) -> u64 {
    // `DefaultHasher::new()` uses fixed keys, so the digest is stable within
    // one build: good enough to tell passwords apart, useless as security.
    let mut h = DefaultHasher::new();
    password.hash(&mut h);
    h.finish()
}

#[async_trait]
impl PasswordHasher for FakeHasher {
    async fn hash(&self, password: &SecretString) -> Result<PasswordHash, HashError> {
        self.pause().await;
        Ok(self.hash_str(password.expose_secret()))
    }

    async fn verify(
        &self,
        password: &SecretString,
        hash: &PasswordHash,
    ) -> Result<Verification, HashError> {
        self.pause().await;
        let (cost, stored) = hash
            .as_str()
            .strip_prefix(FAKE_PREFIX)
            .and_then(|rest| rest.split_once('$'))
            .ok_or(HashError::Malformed)?;
        let cost: u32 = cost.parse().map_err(|_| HashError::Malformed)?;
        let stored = u64::from_str_radix(stored, 16).map_err(|_| HashError::Malformed)?;
        Ok(Verification {
            matches: stored == digest(password.expose_secret()),
            needs_rehash: cost < self.cost,
        })
    }

    async fn verify_dummy(&self, password: &SecretString) -> Result<(), HashError> {
        self.pause().await;
        let _ = digest(password.expose_secret());
        Ok(())
    }
}
