//! Breached-password screens: the [`BreachedPasswords`] port over a
//! k-anonymity range API ([`RangeApiScreen`]) or over a local copy of the
//! ranges ([`RangeFileScreen`]).
//!
//! **The range API** (the shape of Have I Been Pwned's Pwned Passwords):
//! `GET <base>/range/<PREFIX>` where `PREFIX` is the first five hex digits
//! of the password's SHA-1, upper case; the answer is one line per known
//! hash with that prefix, `SUFFIX:COUNT` (the other 35 hex digits, a colon,
//! how often it was seen), CRLF or LF. We send `Add-Padding: true`, so the
//! answer is padded with made-up suffixes whose count is 0 — an observer of
//! the (encrypted) answer's size learns nothing about the prefix — and such
//! entries never count as breached. Only the prefix leaves the process.
//!
//! **The range directory** (`password.breach_file`): a directory holding
//! one file per prefix, named `<PREFIX>.txt` (or just `<PREFIX>`), five
//! upper-case hex digits, each file holding exactly what the range API
//! answers for that prefix: `SUFFIX:COUNT` lines. That is the layout the
//! Pwned Passwords downloader writes in its one-file-per-prefix mode, so a
//! full offline mirror is its output as it is; a curated list works too.
//! A prefix without a file is **unavailable**, not "not breached": a
//! partial mirror then follows `password.breach_fail_closed` like an outage.
//!
//! Either screen answers [`BreachVerdict::Unavailable`] — never an error,
//! never a panic — when it cannot answer: connection refused, timeout
//! (the whole exchange is bounded by the configured timeout), a non-2xx
//! answer, an answer over [`MAX_RANGE_BYTES`], a missing or unreadable
//! range file. The reason names the step, never the hash or password.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use regstack_ports::{BreachVerdict, BreachedPasswords, PasswordSha1};
use reqwest::Url;

use crate::http::{client, endpoint, join, TransportConfigError};

/// The largest range answer or file read. Real ranges are about 40 KiB
/// (around 1,000 lines, padded); a mirror's file is the same size.
pub const MAX_RANGE_BYTES: usize = 4 * 1024 * 1024;

/// Whether `range` (lines of `SUFFIX:COUNT`) lists `suffix` with a count
/// above zero. Lines that do not parse are skipped; padding (count 0) never
/// matches.
fn listed(range: &str, suffix: &str) -> bool {
    range.lines().any(|line| {
        let Some((s, count)) = line.trim().split_once(':') else {
            return false;
        };
        s.trim().eq_ignore_ascii_case(suffix) && count.trim().parse::<u64>().is_ok_and(|n| n > 0)
    })
}

/// Screens passwords against a range API (`password.breach_check = "range"`).
#[derive(Debug, Clone)]
pub struct RangeApiScreen {
    client: reqwest::Client,
    base: Url,
    timeout: Duration,
}

impl RangeApiScreen {
    /// A screen asking `base_url` (`https://`, or plain `http://` only on
    /// this host — a tampered answer could wave a breached password
    /// through), each query bounded by `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, TransportConfigError> {
        const KEY: &str = "password.breach_range_url";
        let base = endpoint(KEY, base_url)?;
        let client = client("password.breach_timeout_ms", timeout)?;
        Ok(Self {
            client,
            base,
            timeout,
        })
    }

    async fn fetch(&self, prefix: &str) -> Result<String, String> {
        let url = join(&self.base, &format!("/range/{prefix}"));
        let mut response = self
            .client
            .get(url)
            .header("Add-Padding", "true")
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    "range API timed out".to_owned()
                } else if e.is_connect() {
                    "could not connect to the range API".to_owned()
                } else {
                    "range API request failed".to_owned()
                }
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("range API answered {}", status.as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|_| "range API answer broke off".to_owned())?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_RANGE_BYTES {
                return Err("range API answer too large".to_owned());
            }
        }
        String::from_utf8(body).map_err(|_| "range API answer is not text".to_owned())
    }
}

#[async_trait]
impl BreachedPasswords for RangeApiScreen {
    async fn check(&self, password: &PasswordSha1) -> BreachVerdict {
        let fetched = tokio::time::timeout(self.timeout, self.fetch(&password.prefix())).await;
        match fetched {
            Ok(Ok(range)) if listed(&range, &password.suffix()) => BreachVerdict::Breached,
            Ok(Ok(_)) => BreachVerdict::NotBreached,
            Ok(Err(reason)) => BreachVerdict::Unavailable(reason),
            Err(_) => BreachVerdict::Unavailable("range API timed out".to_owned()),
        }
    }
}

/// Screens passwords against a local range directory
/// (`password.breach_check = "file"`; layout in the module doc).
#[derive(Debug, Clone)]
pub struct RangeFileScreen {
    dir: PathBuf,
}

impl RangeFileScreen {
    /// A screen reading `dir`, which must be a readable directory now.
    pub fn new(dir: &Path) -> Result<Self, TransportConfigError> {
        const KEY: &str = "password.breach_file";
        match std::fs::read_dir(dir) {
            Ok(_) => Ok(Self {
                dir: dir.to_owned(),
            }),
            Err(e) => Err(TransportConfigError::new(
                KEY,
                format!("{} is not a readable range directory: {e}", dir.display()),
            )),
        }
    }

    fn read(dir: &Path, prefix: &str) -> Result<String, String> {
        for name in [format!("{prefix}.txt"), prefix.to_owned()] {
            let path = dir.join(name);
            match std::fs::metadata(&path) {
                Ok(m) if m.len() > MAX_RANGE_BYTES as u64 => {
                    return Err("range file too large".to_owned())
                }
                Ok(_) => {
                    return std::fs::read_to_string(&path)
                        .map_err(|e| format!("range file unreadable: {}", e.kind()))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(format!("range file unreadable: {}", e.kind())),
            }
        }
        Err("no range file for this prefix".to_owned())
    }
}

#[async_trait]
impl BreachedPasswords for RangeFileScreen {
    async fn check(&self, password: &PasswordSha1) -> BreachVerdict {
        let (dir, prefix, suffix) = (self.dir.clone(), password.prefix(), password.suffix());
        let read = tokio::task::spawn_blocking(move || Self::read(&dir, &prefix)).await;
        match read {
            Ok(Ok(range)) if listed(&range, &suffix) => BreachVerdict::Breached,
            Ok(Ok(_)) => BreachVerdict::NotBreached,
            Ok(Err(reason)) => BreachVerdict::Unavailable(reason),
            Err(_) => BreachVerdict::Unavailable("range file read failed".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_listed_suffix_with_a_positive_count_is_breached() {
        let range = "0018A45C4D1DEF81644B54AB7F969B88D65:3\r\n\
                     1E4C9B93F3F0682250B6CF8331B7EE68FD8:0\r\n\
                     garbage\r\n\
                     1e4c9b93f3f0682250b6cf8331b7ee68fd9:12\n";
        assert!(listed(range, "0018A45C4D1DEF81644B54AB7F969B88D65"));
        assert!(
            !listed(range, "1E4C9B93F3F0682250B6CF8331B7EE68FD8"),
            "padding"
        );
        assert!(
            listed(range, "1E4C9B93F3F0682250B6CF8331B7EE68FD9"),
            "any case"
        );
        assert!(!listed(range, "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"));
        assert!(!listed("", "0018A45C4D1DEF81644B54AB7F969B88D65"));
    }
}
