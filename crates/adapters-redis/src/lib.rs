//! Rate-limit counters in Redis (`rate_limits.backend = "redis"`): the
//! [`RateLimitStore`] port for deployments that would rather not write a
//! row per counted request into the accounts database. Every instance
//! pointed at one Redis shares the counters, as with the database.
//!
//! **Sliding window, in one Lua script.** Each key is a sorted set of its
//! recorded hits scored by their time in microseconds. One `EVALSHA` drops
//! the hits that left the window (`score <= now - window`), counts the
//! rest and, below the limit, adds this hit and renews the key's expiry —
//! Redis runs a script alone, so twenty parallel hits against a limit of
//! five record exactly five. It is the same sliding window the database
//! stores keep, so moving a deployment between backends changes no
//! answer; a fixed window (`INCR` + `EXPIRE`) would be cheaper but lets a
//! client spend two windows' worth across a window boundary. `now` comes
//! from the caller (the engine's clock), never from Redis's `TIME`, so
//! tests drive it like every other store.
//!
//! Keys expire by themselves (`PEXPIRE` = the window after the latest hit),
//! so [`RateLimitStore::purge_expired`] has little to do; it still trims
//! old hits from every key under the prefix so that it answers like the
//! other stores.

use std::time::Duration;

use async_trait::async_trait;
use chrono::TimeDelta;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use regstack_ports::{RateLimitStore, StoreError, Timestamp};

/// The whole hit: trim, count, maybe record. `KEYS[1]` the counter;
/// `ARGV`: now (µs), window (µs), limit, a member unique to this hit.
const HIT: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]))
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
  redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) / 1000))
  return 1
end
return 0
";

/// Checks that `url` is a Redis URL this adapter can use, without
/// connecting (start-up checks every setting before touching anything).
pub fn check_url(url: &str) -> Result<(), String> {
    let scheme = url.split_once("://").map(|(s, _)| s);
    if scheme == Some("rediss") {
        return Err(
            "rediss:// (TLS) is not built in: reach a TLS Redis through a local \
                    TLS tunnel and give its redis:// address"
                .into(),
        );
    }
    if scheme != Some("redis") {
        return Err("expected redis://[:password@]host:port[/db]".into());
    }
    redis::Client::open(url)
        .map(|_| ())
        .map_err(|e| format!("not a usable Redis URL: {}", e.kind_description()))
}

trait KindDescription {
    fn kind_description(&self) -> String;
}

impl KindDescription for redis::RedisError {
    /// The error's category only: the message of a URL parse error may
    /// repeat the URL, password and all.
    fn kind_description(&self) -> String {
        format!("{:?}", self.kind())
    }
}

/// Counters in one Redis database, every key under `prefix:`. Cloning is
/// cheap and shares the connection.
#[derive(Clone)]
pub struct RedisRateLimits {
    conn: ConnectionManager,
    prefix: String,
    hit: Script,
}

impl std::fmt::Debug for RedisRateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimits")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn map_err(e: redis::RedisError) -> StoreError {
    if e.is_io_error() || e.is_timeout() || e.is_connection_refusal() || e.is_connection_dropped() {
        StoreError::unavailable(e)
    } else {
        StoreError::backend(e)
    }
}

fn micros(t: Timestamp) -> i64 {
    t.timestamp_micros()
}

impl RedisRateLimits {
    /// Connects to `url` (`redis://host:port[/db]`) and keeps the
    /// connection (re-established when it drops). Keys are
    /// `{prefix}:rl:{key}`, so several deployments can share one Redis.
    /// Connecting and each command time out after 2 s: a Redis that stops
    /// answering fails a request (503) instead of holding it.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(StoreError::backend)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(2))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(map_err)?;
        Ok(Self {
            conn,
            prefix: format!("{prefix}:rl:"),
            hit: Script::new(HIT),
        })
    }
}

#[async_trait]
impl RateLimitStore for RedisRateLimits {
    async fn hit(
        &self,
        key: &str,
        now: Timestamp,
        window: TimeDelta,
        limit: u32,
    ) -> Result<bool, StoreError> {
        if limit == 0 {
            return Ok(false);
        }
        let window_us = window.num_microseconds().unwrap_or(i64::MAX).max(1);
        let now_us = micros(now);
        let member = format!("{now_us}-{}", uuid::Uuid::new_v4().simple());
        let mut conn = self.conn.clone();
        let recorded: i64 = self
            .hit
            .key(format!("{}{key}", self.prefix))
            .arg(now_us)
            .arg(window_us)
            .arg(limit)
            .arg(member)
            .invoke_async(&mut conn)
            .await
            .map_err(map_err)?;
        Ok(recorded == 1)
    }

    async fn purge_expired(&self, before: Timestamp) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let pattern = format!("{}*", self.prefix);
        // Hits strictly older than `before`: the exclusive bound `(`.
        let bound = format!("({}", micros(before));
        let mut cursor: u64 = 0;
        let mut removed: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut conn)
                .await
                .map_err(map_err)?;
            for key in keys {
                let n: u64 = redis::cmd("ZREMRANGEBYSCORE")
                    .arg(&key)
                    .arg("-inf")
                    .arg(&bound)
                    .query_async(&mut conn)
                    .await
                    .map_err(map_err)?;
                removed += n;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_redis_urls_pass() {
        assert_eq!(check_url("redis://127.0.0.1:6379"), Ok(()));
        assert_eq!(check_url("redis://:pw@cache.internal:6380/2"), Ok(()));
        for bad in [
            "127.0.0.1:6379",
            "http://cache:6379",
            "",
            "redis://",
            "rediss://cache.example:6380",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bad_url_is_not_repeated_in_the_error() {
        let err = check_url("redis://user:s3cret@[bad").unwrap_err();
        assert!(!err.contains("s3cret"), "{err}");
    }
}
