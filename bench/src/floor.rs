//! The hashing floor: how many Argon2id verifications per second this
//! machine can do with the configured parameters, one thread per core.
//! A login costs exactly one verification, so this is the most logins per
//! second any server could serve here.
//!
//! Each thread hashes into one working-memory buffer it reuses (as the
//! server's pooled hasher does), so the floor is the hash function's own
//! cost, without an allocation and its page faults per call.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use password_hash::{PasswordHash, PasswordHasher, SaltString};

#[derive(Clone, Copy, Debug)]
pub struct Argon2Params {
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

impl Argon2Params {
    /// The server's configuration variables for these parameters, so every
    /// server a scenario starts hashes as the floor measured.
    pub fn server_env(&self) -> [(&'static str, String); 3] {
        [
            (
                "REGSTACK_PASSWORD__ARGON2_MEMORY_KIB",
                self.m_kib.to_string(),
            ),
            ("REGSTACK_PASSWORD__ARGON2_ITERATIONS", self.t.to_string()),
            ("REGSTACK_PASSWORD__ARGON2_PARALLELISM", self.p.to_string()),
        ]
    }

    fn argon2(&self) -> Result<Argon2<'static>> {
        let params = Params::new(self.m_kib, self.t, self.p, None).map_err(|e| anyhow!("{e}"))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

pub struct Floor {
    pub threads: usize,
    pub verifications: u64,
    /// Verifications per second, all threads together.
    pub per_sec: f64,
    /// One verification on an otherwise idle machine, in milliseconds.
    pub single_ms: f64,
}

pub fn measure(params: Argon2Params, threads: usize, duration: Duration) -> Result<Floor> {
    let argon2 = params.argon2()?;
    let salt = SaltString::encode_b64(b"regstack-bench-salt").map_err(|e| anyhow!("{e}"))?;
    let phc = argon2
        .hash_password(crate::load::PASSWORD.as_bytes(), &salt)
        .map_err(|e| anyhow!("{e}"))?
        .to_string();

    let verify_loop = move |phc: String, until: Option<Duration>| -> Result<(u64, f64)> {
        let argon2 = params.argon2()?;
        let parsed = PasswordHash::new(&phc).map_err(|e| anyhow!("{e}"))?;
        let expected = parsed.hash.ok_or_else(|| anyhow!("no hash output"))?;
        let mut salt_buf = [0u8; 64];
        let salt = parsed
            .salt
            .ok_or_else(|| anyhow!("no salt"))?
            .decode_b64(&mut salt_buf)
            .map_err(|e| anyhow!("{e}"))?;
        let mut memory = vec![Block::default(); argon2.params().block_count()];
        let mut out = vec![0u8; expected.len()];
        let mut verify = || -> Result<()> {
            argon2
                .hash_password_into_with_memory(
                    crate::load::PASSWORD.as_bytes(),
                    salt,
                    &mut out,
                    &mut memory,
                )
                .map_err(|e| anyhow!("{e}"))?;
            if out.as_slice() != expected.as_bytes() {
                return Err(anyhow!("the floor's verification did not match"));
            }
            Ok(())
        };
        // The buffer's first use faults its pages in; not part of the cost.
        verify()?;
        let start = Instant::now();
        let mut n = 0u64;
        loop {
            verify()?;
            n += 1;
            if until.is_none_or(|d| start.elapsed() >= d) {
                break;
            }
        }
        Ok((n, start.elapsed().as_secs_f64()))
    };

    // One verification alone, for the per-request cost.
    let (_, secs) = verify_loop(phc.clone(), None)?;
    let single_ms = secs * 1000.0;

    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let phc = phc.clone();
            std::thread::spawn(move || verify_loop(phc, Some(duration)))
        })
        .collect();
    let (mut verifications, mut per_sec) = (0u64, 0.0f64);
    for h in handles {
        let (n, secs) = h.join().map_err(|_| anyhow!("argon2 thread panicked"))??;
        verifications += n;
        per_sec += n as f64 / secs;
    }
    Ok(Floor {
        threads,
        verifications,
        per_sec,
        single_ms,
    })
}
