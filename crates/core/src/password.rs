//! Argon2id password hashing on the blocking pool, behind a bound.
//!
//! Hashing is the dominant cost of the service and holds
//! `argon2_memory_kib` of memory per call, so it runs on tokio's blocking
//! pool (never on the async workers that serve `/me`) and at most
//! `max_concurrent_hashes` run at once: a login flood queues here instead of
//! exhausting memory or starving cheap requests.
//!
//! Hashes are PHC strings; any Argon2 PHC string verifies (regstack's
//! argon2-cffi hashes included), and `needs_rehash` reports hashes made with
//! weaker parameters than configured so the flow can upgrade them.
//!
//! **Unicode** (NIST SP 800-63B §5.1.1.2): a password is
//! hashed in its NFKC form, so "é" typed as one code point or as "e" plus a
//! combining accent — which keyboards, platforms and password managers
//! produce differently — is one password. regstack hashed the raw UTF-8, so
//! verification falls back to the raw form when it differs from the NFKC
//! one and the NFKC form did not match; a match that way asks for a rehash,
//! which stores the NFKC form. The fallback costs a second derivation only
//! for passwords NFKC changes, and then for every account alike (the dummy
//! verification of unknown addresses included), so it tells nothing about
//! whether an account exists. (A regstack server sharing the database would
//! no longer verify such an upgraded hash; ASCII passwords, which NFKC
//! leaves alone, are unaffected.)
//!
//! Each running hash needs `argon2_memory_kib` of working memory. Allocating
//! and freeing it per call costs a page fault per 4 KiB every time, and
//! below glibc's 32 MiB mmap ceiling (the OWASP floor is 19 MiB) the freed
//! buffers stay in malloc's heaps: a login flood then left the process
//! several hundred MiB larger than its bound. So the buffers are pooled: at
//! most one per permit, made on first use and reused after, which makes the
//! hashing memory exactly `max_concurrent_hashes × argon2_memory_kib` —
//! the budget, never more. (A stored hash with larger parameters than
//! configured gets a buffer of its own for that call.)

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use argon2::{Algorithm, Argon2, Block, Params, Version};
use async_trait::async_trait;
use password_hash::{Output, ParamsString, PasswordHash as Phc, Salt, SaltString};
use regstack_ports::{HashError, PasswordHash, PasswordHasher, Verification};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{OnceCell, Semaphore};
use unicode_normalization::UnicodeNormalization;

use crate::config::PasswordConfig;

/// Argon2 working memory, reused across calls (see the module doc).
struct BlockPool {
    /// Blocks per pooled buffer: the configured memory cost.
    blocks: usize,
    /// Buffers kept at most: the hashing bound.
    keep: usize,
    free: Mutex<Vec<Box<[Block]>>>,
}

impl BlockPool {
    /// Runs `f` with `needed` blocks of working memory.
    fn with<T>(&self, needed: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
        if needed > self.blocks {
            return f(&mut vec![Block::default(); needed]);
        }
        let taken = self
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut buffer =
            taken.unwrap_or_else(|| vec![Block::default(); self.blocks].into_boxed_slice());
        let out = f(&mut buffer[..needed]);
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        // The permits already bound the buffers in use; this is the
        // backstop that keeps the pool from outgrowing the budget whatever
        // a caller does.
        if free.len() < self.keep {
            free.push(buffer);
        }
        out
    }

    fn pooled(&self) -> usize {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Computes the Argon2 output for `password` with the given variant,
/// version, parameters and salt, in pooled memory.
fn derive(
    pool: &BlockPool,
    argon: &Argon2<'_>,
    params: &Params,
    password: &[u8],
    salt: Salt<'_>,
) -> Result<Output, HashError> {
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|_| HashError::Malformed)?;
    let out_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    pool.with(params.block_count(), |memory| {
        Output::init_with(out_len, |out| {
            argon
                .hash_password_into_with_memory(password, salt_bytes, out, &mut *memory)
                .map_err(|_| password_hash::Error::Crypto)
        })
    })
    .map_err(|e| HashError::Failed(e.to_string()))
}

/// The form a password is hashed in: NFKC. `None` when that is the
/// password as typed (every ASCII password), so no second form exists to
/// try.
fn normalised(password: &str) -> Option<SecretString> {
    if unicode_normalization::is_nfkc_quick(password.chars())
        == unicode_normalization::IsNormalized::Yes
    {
        return None;
    }
    let nfkc: String = password.nfkc().collect();
    (nfkc != password).then(|| SecretString::from(nfkc))
}

/// Argon2id with configured parameters and a concurrency bound.
pub struct Argon2Hasher {
    params: Params,
    pool: Arc<BlockPool>,
    permits: Arc<Semaphore>,
    dummy: OnceCell<PasswordHash>,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    queue: Arc<QueueStats>,
}

/// How the hashing queue is doing, for metrics: a login flood shows up
/// here first, as callers waiting for a permit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HashingStats {
    /// Callers waiting for a permit right now.
    pub waiting: usize,
    /// Hashes or verifications running right now.
    pub running: usize,
    /// Permits granted so far (each a finished wait).
    pub waits: u64,
    /// Time those waits took together, in microseconds.
    pub wait_micros: u64,
}

/// The queue's counters, shared with the futures that wait.
#[derive(Default)]
struct QueueStats {
    waiting: AtomicUsize,
    waits: AtomicU64,
    wait_micros: AtomicU64,
}

/// Counts one caller in the queue until dropped (a caller that goes away
/// while waiting leaves it too).
struct Waiting<'a>(&'a QueueStats);

impl<'a> Waiting<'a> {
    fn enter(stats: &'a QueueStats) -> Self {
        stats.waiting.fetch_add(1, Ordering::Relaxed);
        Self(stats)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Argon2Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Argon2Hasher")
            .field("m_kib", &self.params.m_cost())
            .field("t", &self.params.t_cost())
            .field("p", &self.params.p_cost())
            .field("permits", &self.permits.available_permits())
            .finish()
    }
}

impl Argon2Hasher {
    /// Builds a hasher from validated configuration.
    pub fn new(cfg: &PasswordConfig) -> Result<Self, HashError> {
        let params = Params::new(
            cfg.argon2_memory_kib,
            cfg.argon2_iterations,
            cfg.argon2_parallelism,
            None,
        )
        .map_err(|e| HashError::Failed(e.to_string()))?;
        let bound = cfg
            .max_concurrent_hashes
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
            .max(1);
        Ok(Self {
            pool: Arc::new(BlockPool {
                blocks: params.block_count(),
                keep: bound,
                free: Mutex::default(),
            }),
            params,
            permits: Arc::new(Semaphore::new(bound)),
            dummy: OnceCell::new(),
            running: Arc::default(),
            peak: Arc::default(),
            queue: Arc::default(),
        })
    }

    /// The queue right now and the waits so far. Wait times are measured
    /// on the monotonic clock, for metrics only: no decision reads them
    /// (decisions take time from the Clock port).
    pub fn stats(&self) -> HashingStats {
        HashingStats {
            waiting: self.queue.waiting.load(Ordering::Relaxed),
            running: self.running.load(Ordering::SeqCst),
            waits: self.queue.waits.load(Ordering::Relaxed),
            wait_micros: self.queue.wait_micros.load(Ordering::Relaxed),
        }
    }

    /// The most hashes or verifications that ever ran at the same time: the
    /// bound made observable (tests and the benchmark read it).
    pub fn peak_concurrency(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// Working-memory buffers kept for reuse: never more than the bound.
    pub fn pooled_buffers(&self) -> usize {
        self.pool.pooled()
    }

    /// Runs `f` on the blocking pool once a permit is free.
    async fn bounded<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let queued = std::time::Instant::now();
        let waiting = Waiting::enter(&self.queue);
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| HashError::Failed(e.to_string()))?;
        drop(waiting);
        let waited = u64::try_from(queued.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.queue.waits.fetch_add(1, Ordering::Relaxed);
        self.queue.wait_micros.fetch_add(waited, Ordering::Relaxed);
        let (running, peak) = (self.running.clone(), self.peak.clone());
        // The permit travels with the work: a caller that goes away (a
        // client disconnecting mid-login) drops this future, but the hash
        // already handed to the blocking pool runs to its end — and keeps
        // its permit until then, so disconnecting floods cannot run more
        // hashes (or hold more working memory) than the bound.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let out = f();
            running.fetch_sub(1, Ordering::SeqCst);
            out
        })
        .await
        .map_err(|e| HashError::Failed(e.to_string()))
    }

    async fn dummy_hash(&self) -> Result<&PasswordHash, HashError> {
        self.dummy
            .get_or_try_init(|| async {
                let random = hex::encode(crate::tokens::random_bytes::<24>());
                self.hash(&SecretString::from(random)).await
            })
            .await
    }

    fn weaker_than(&self, phc: &Phc<'_>) -> bool {
        if phc.algorithm.as_str() != "argon2id" {
            return true;
        }
        match Params::try_from(phc) {
            Ok(p) => {
                p.m_cost() < self.params.m_cost()
                    || p.t_cost() < self.params.t_cost()
                    || p.p_cost() < self.params.p_cost()
            }
            Err(_) => true,
        }
    }
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &SecretString) -> Result<PasswordHash, HashError> {
        let password = password.clone();
        let params = self.params.clone();
        let pool = self.pool.clone();
        self.bounded(move || {
            let salt = SaltString::encode_b64(&crate::tokens::random_bytes::<16>())
                .map_err(|e| HashError::Failed(e.to_string()))?;
            let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
            let nfkc = normalised(password.expose_secret());
            let output = derive(
                &pool,
                &argon,
                &params,
                nfkc.as_ref()
                    .unwrap_or(&password)
                    .expose_secret()
                    .as_bytes(),
                salt.as_salt(),
            )?;
            let phc = Phc {
                algorithm: Algorithm::Argon2id.ident(),
                version: Some(Version::V0x13.into()),
                params: ParamsString::try_from(&params)
                    .map_err(|e| HashError::Failed(e.to_string()))?,
                salt: Some(salt.as_salt()),
                hash: Some(output),
            };
            Ok(PasswordHash::new(phc.to_string()))
        })
        .await?
    }

    async fn verify(
        &self,
        password: &SecretString,
        hash: &PasswordHash,
    ) -> Result<Verification, HashError> {
        let needs_rehash = {
            let phc = Phc::new(hash.as_str()).map_err(|_| HashError::Malformed)?;
            self.weaker_than(&phc)
        };
        let password = password.clone();
        let stored = hash.as_str().to_owned();
        let pool = self.pool.clone();
        let (matches, unnormalised) = self
            .bounded(move || {
                let phc = Phc::new(&stored).map_err(|_| HashError::Malformed)?;
                // Variant, version and parameters come from the PHC string
                // itself, so hashes made with other settings (regstack's)
                // still verify.
                let algorithm =
                    Algorithm::try_from(phc.algorithm).map_err(|_| HashError::Malformed)?;
                let version = phc
                    .version
                    .map(Version::try_from)
                    .transpose()
                    .map_err(|_| HashError::Malformed)?
                    .unwrap_or_default();
                let params = Params::try_from(&phc).map_err(|_| HashError::Malformed)?;
                let (Some(salt), Some(expected)) = (phc.salt, phc.hash) else {
                    return Err(HashError::Malformed);
                };
                let argon = Argon2::new(algorithm, version, params.clone());
                // Argon2 refuses only inputs outside its limits (a salt
                // shorter than 8 bytes, say): a stored hash no password
                // can match, not a server failure. `Output` compares in
                // constant time.
                let matches_form = |form: &SecretString| {
                    derive(
                        &pool,
                        &argon,
                        &params,
                        form.expose_secret().as_bytes(),
                        salt,
                    )
                    .map(|computed| computed == expected)
                    .map_err(|_| HashError::Malformed)
                };
                let Some(nfkc) = normalised(password.expose_secret()) else {
                    return Ok::<_, HashError>((matches_form(&password)?, false));
                };
                if matches_form(&nfkc)? {
                    return Ok((true, false));
                }
                // A hash of the form as typed (regstack's, or ours before
                // normalisation).
                let legacy = matches_form(&password)?;
                Ok((legacy, legacy))
            })
            .await??;
        Ok(Verification {
            matches,
            needs_rehash: matches && (needs_rehash || unnormalised),
        })
    }

    async fn verify_dummy(&self, password: &SecretString) -> Result<(), HashError> {
        let dummy = self.dummy_hash().await?.clone();
        self.verify(password, &dummy).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn floor() -> PasswordConfig {
        PasswordConfig {
            argon2_memory_kib: 19456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            max_concurrent_hashes: Some(2),
            ..PasswordConfig::default()
        }
    }

    /// Made by argon2-cffi (regstack 0.9.3's hasher, its default profile)
    /// for the password `correct-horse-battery`.
    const REGSTACK_HASH: &str = include_str!("../tests/fixtures/regstack_argon2.phc");

    #[tokio::test]
    async fn hashes_are_argon2id_phc_with_configured_parameters() {
        let h = Argon2Hasher::new(&PasswordConfig::default()).unwrap();
        let hash = h
            .hash(&SecretString::from("correct-horse-battery"))
            .await
            .unwrap();
        assert!(hash.as_str().starts_with("$argon2id$v=19$m=65536,t=3,p=4$"));
    }

    #[tokio::test]
    async fn regstack_hashes_verify() {
        let h = Argon2Hasher::new(&PasswordConfig::default()).unwrap();
        let stored = PasswordHash::new(REGSTACK_HASH.trim().to_owned());
        let ok = h
            .verify(&SecretString::from("correct-horse-battery"), &stored)
            .await
            .unwrap();
        assert_eq!(
            ok,
            Verification {
                matches: true,
                needs_rehash: false
            }
        );
        let bad = h
            .verify(&SecretString::from("correct-horse-batterY"), &stored)
            .await
            .unwrap();
        assert!(!bad.matches);
    }

    /// "Crème brûlée" with precomposed letters (NFC) and with combining
    /// accents (NFD), and with the "ﬀ" ligature NFKC spells "ff".
    const NFC: &str = "Cr\u{e8}me br\u{fb}l\u{e9}e 42";
    const NFD: &str = "Cre\u{300}me bru\u{302}le\u{301}e 42";

    /// Made by argon2-cffi (regstack 0.9.3's hasher) for [`NFD`] as typed.
    const REGSTACK_NFD_HASH: &str = include_str!("../tests/fixtures/regstack_argon2_nfd.phc");

    #[tokio::test]
    async fn a_regstack_hash_of_a_non_ascii_password_verifies_and_is_renewed_in_normal_form() {
        let h = Argon2Hasher::new(&PasswordConfig::default()).unwrap();
        let stored = PasswordHash::new(REGSTACK_NFD_HASH.trim().to_owned());
        let v = h.verify(&SecretString::from(NFD), &stored).await.unwrap();
        assert_eq!(
            v,
            Verification {
                matches: true,
                needs_rehash: true
            }
        );
        let v = h
            .verify(&SecretString::from("Creme brulee 42"), &stored)
            .await
            .unwrap();
        assert!(!v.matches);
    }

    #[tokio::test]
    async fn every_unicode_form_of_a_password_is_the_same_password() {
        let h = Argon2Hasher::new(&floor()).unwrap();
        assert_ne!(NFC, NFD);
        for (set, typed) in [(NFC, NFD), (NFD, NFC), ("e\u{fb00}ort-1234", "effort-1234")] {
            let hash = h.hash(&SecretString::from(set)).await.unwrap();
            let v = h.verify(&SecretString::from(typed), &hash).await.unwrap();
            assert_eq!(
                v,
                Verification {
                    matches: true,
                    needs_rehash: false
                },
                "set {set:?}, typed {typed:?}"
            );
            let wrong = format!("{typed}x");
            assert!(
                !h.verify(&SecretString::from(wrong), &hash)
                    .await
                    .unwrap()
                    .matches
            );
        }
    }

    #[tokio::test]
    async fn a_hash_of_the_password_as_typed_verifies_and_asks_for_the_normal_form() {
        use password_hash::PasswordHasher as _;
        let h = Argon2Hasher::new(&floor()).unwrap();
        // As regstack hashed: the raw UTF-8 of what was typed.
        let salt = SaltString::encode_b64(b"sixteen-byte-slt").unwrap();
        let argon = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(19456, 2, 1, None).unwrap(),
        );
        let legacy = PasswordHash::new(
            argon
                .hash_password(NFD.as_bytes(), &salt)
                .unwrap()
                .to_string(),
        );
        let v = h.verify(&SecretString::from(NFD), &legacy).await.unwrap();
        assert_eq!(
            v,
            Verification {
                matches: true,
                needs_rehash: true
            }
        );
        // The rehash is of the normal form, which every spelling then meets.
        let upgraded = h.hash(&SecretString::from(NFD)).await.unwrap();
        let phc = Phc::new(upgraded.as_str()).unwrap();
        let nfc_raw = argon
            .hash_password(NFC.as_bytes(), phc.salt.unwrap())
            .unwrap();
        assert_eq!(nfc_raw.hash, phc.hash, "hashed in NFKC (here equal to NFC)");
        assert!(
            !h.verify(&SecretString::from("Creme brulee 42"), &legacy)
                .await
                .unwrap()
                .matches
        );
    }

    #[tokio::test]
    async fn weaker_hashes_ask_for_a_rehash_only_when_they_match() {
        let weak = Argon2Hasher::new(&floor()).unwrap();
        let strong = Argon2Hasher::new(&PasswordConfig::default()).unwrap();
        let hash = weak.hash(&SecretString::from("pass-word-1")).await.unwrap();
        let v = strong
            .verify(&SecretString::from("pass-word-1"), &hash)
            .await
            .unwrap();
        assert_eq!(
            v,
            Verification {
                matches: true,
                needs_rehash: true
            }
        );
        let v = strong
            .verify(&SecretString::from("pass-word-2"), &hash)
            .await
            .unwrap();
        assert_eq!(
            v,
            Verification {
                matches: false,
                needs_rehash: false
            }
        );
    }

    /// The pooled path computes exactly what the argon2 crate's own
    /// `hash_password`/`verify_password` do: each verifies the other's hash.
    #[tokio::test]
    async fn pooled_hashes_interoperate_with_the_stock_implementation() {
        use password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let h = Argon2Hasher::new(&floor()).unwrap();
        let ours = h.hash(&SecretString::from("pass-word-1")).await.unwrap();
        let parsed = Phc::new(ours.as_str()).unwrap();
        assert!(Argon2::default()
            .verify_password(b"pass-word-1", &parsed)
            .is_ok());
        assert!(Argon2::default()
            .verify_password(b"pass-word-2", &parsed)
            .is_err());

        let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
        for algorithm in [Algorithm::Argon2id, Algorithm::Argon2i, Algorithm::Argon2d] {
            let params = Params::new(8192, 1, 2, Some(40)).unwrap();
            let stock = Argon2::new(algorithm, Version::V0x13, params)
                .hash_password(b"pass-word-1", &salt)
                .unwrap()
                .to_string();
            let stored = PasswordHash::new(stock);
            for (pw, expected) in [("pass-word-1", true), ("pass-word-2", false)] {
                let v = h.verify(&SecretString::from(pw), &stored).await.unwrap();
                assert_eq!(v.matches, expected, "{algorithm:?} {pw}");
            }
        }
    }

    /// However many hashes run, the pool keeps at most one buffer per
    /// permit; a stored hash that needs more memory than configured does
    /// not grow it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn working_memory_is_pooled_up_to_the_bound() {
        let h = Arc::new(Argon2Hasher::new(&floor()).unwrap());
        assert_eq!(h.pooled_buffers(), 0, "nothing is allocated up front");
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let h = h.clone();
                tokio::spawn(
                    async move { h.hash(&SecretString::from(format!("pw-{i}-xyz"))).await },
                )
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let pooled = h.pooled_buffers();
        assert!(
            (1..=2).contains(&pooled),
            "{pooled} buffers for a bound of 2"
        );

        let bigger = Argon2Hasher::new(&PasswordConfig {
            argon2_memory_kib: 32768,
            ..floor()
        })
        .unwrap()
        .hash(&SecretString::from("big-memory-1"))
        .await
        .unwrap();
        assert!(
            h.verify(&SecretString::from("big-memory-1"), &bigger)
                .await
                .unwrap()
                .matches
        );
        assert_eq!(h.pooled_buffers(), pooled, "the larger buffer was not kept");
    }

    #[tokio::test]
    async fn no_truncation_and_no_case_folding() {
        let h = Argon2Hasher::new(&floor()).unwrap();
        let pw: String = "Ab3".repeat(34); // 102 chars
        let hash = h.hash(&SecretString::from(pw.clone())).await.unwrap();
        for other in [pw[..72].to_owned(), format!("{pw}x"), pw.to_uppercase()] {
            assert!(
                !h.verify(&SecretString::from(other), &hash)
                    .await
                    .unwrap()
                    .matches
            );
        }
        assert!(
            h.verify(&SecretString::from(pw), &hash)
                .await
                .unwrap()
                .matches
        );
    }

    #[tokio::test]
    async fn a_malformed_stored_hash_is_an_error_not_a_match() {
        let h = Argon2Hasher::new(&floor()).unwrap();
        let r = h
            .verify(
                &SecretString::from("whatever-1"),
                &PasswordHash::new("nope".into()),
            )
            .await;
        assert!(matches!(r, Err(HashError::Malformed)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_more_hashes_run_at_once_than_the_bound() {
        let h = Arc::new(Argon2Hasher::new(&floor()).unwrap()); // bound 2
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let h = h.clone();
                tokio::spawn(
                    async move { h.hash(&SecretString::from(format!("password-{i}"))).await },
                )
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(h.peak_concurrency(), 2);
    }

    /// Callers that give up (a client disconnecting mid-login drops the
    /// request's future) do not free their permit while their hash still
    /// runs: a flood of abandoned logins cannot run more hashes, or hold
    /// more working memory, than the bound.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn abandoned_hashes_keep_their_permit_until_they_finish() {
        let h = Arc::new(Argon2Hasher::new(&floor()).unwrap()); // bound 2
        let abandoned: Vec<_> = (0..8)
            .map(|i| {
                let h = h.clone();
                tokio::spawn(async move {
                    let pw = SecretString::from(format!("abandoned-{i}"));
                    tokio::time::timeout(Duration::from_millis(1), h.hash(&pw)).await
                })
            })
            .collect();
        for t in abandoned {
            assert!(t.await.unwrap().is_err(), "each caller gave up");
        }
        for i in 0..2 {
            let pw = SecretString::from(format!("patient-{i}"));
            h.hash(&pw).await.unwrap();
        }
        assert_eq!(h.peak_concurrency(), 2, "never more than the bound at once");
        assert!(h.pooled_buffers() <= 2);
    }

    /// The queue is visible while a flood waits (what the
    /// `regstack_password_hash_queue_depth` gauge shows), and empties
    /// afterwards, callers that gave up included; every granted permit is
    /// one counted wait.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_queue_shows_callers_waiting_and_empties_after() {
        let h = Arc::new(Argon2Hasher::new(&floor()).unwrap()); // bound 2
        assert_eq!(h.stats(), HashingStats::default());
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let h = h.clone();
                tokio::spawn(
                    async move { h.hash(&SecretString::from(format!("queued-{i}"))).await },
                )
            })
            .collect();
        let mut most_waiting = 0;
        while !tasks.iter().all(|t| t.is_finished()) {
            most_waiting = most_waiting.max(h.stats().waiting);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert!(most_waiting >= 1, "six hashes over two permits queue");
        let gave_up: Vec<_> = (0..4)
            .map(|i| {
                let h = h.clone();
                tokio::spawn(async move {
                    let pw = SecretString::from(format!("gave-up-{i}"));
                    tokio::time::timeout(Duration::from_micros(1), h.hash(&pw)).await
                })
            })
            .collect();
        for t in gave_up {
            assert!(t.await.unwrap().is_err(), "each caller gave up");
        }
        let stats = h.stats();
        assert_eq!(stats.waiting, 0, "a caller that left is not counted");
        assert!(stats.waits >= 6);
        assert!(stats.wait_micros > 0);
    }
}
