//! Prometheus metrics: what an operator watches a sign-in service by.
//!
//! Each [`RegStack`](crate::RegStack) owns one registry (never the
//! process-global one), so two instances in one process — a host running
//! two, or the test suite — never mix their counts. The numbers come from
//! three places, none of which needs `core` to know about metrics:
//!
//! - the **event bus**: sign-in outcomes, lockouts, second-factor
//!   challenges and failures, refresh rotations and reuse (handlers run in
//!   their own tasks, so a counter moves a moment after the answer);
//! - **decorators** around the ports the server hands to the engine: the
//!   mailer, the SMS sender and the password hasher (sent / failed /
//!   in the transport's hands; hashing time);
//! - an **HTTP layer** on [`RegStack::router`](crate::RegStack::router):
//!   latency by route template (axum's `MatchedPath`, never the raw path),
//!   method and status class.
//!
//! **Labels are bounded**: route templates, methods, status classes and a
//! fixed list of reasons. No user id, address, token or raw path ever
//! becomes a label, so a scrape tells nothing about any one person.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use async_trait::async_trait;
use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    Counter, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use regstack_core::password::{Argon2Hasher, HashingStats};
use regstack_core::{EventBus, EventKind};
use regstack_ports::{
    HashError, Mailer, NotifyError, OutgoingMail, OutgoingSms, PasswordHash, PasswordHasher,
    SmsSender, Verification,
};
use secrecy::SecretString;

/// The `login_failed` reasons a label may carry; anything else counts as
/// `other`, so the label's values stay a fixed, short list.
const FAILURE_REASONS: [&str; 6] = [
    "no_account",
    "no_password",
    "wrong_password",
    "disabled",
    "unverified",
    "wrong_current_password",
];

/// Latency buckets, seconds: a `/me` answers in well under a millisecond,
/// a login spends tens to hundreds of milliseconds hashing, a queued one
/// can wait seconds.
const SECONDS_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One instance's metrics. Cheap to clone (handles to one registry).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

struct Inner {
    registry: Registry,
    logins: IntCounterVec,
    lockouts: IntCounter,
    mfa_challenges: IntCounter,
    mfa_failures: IntCounterVec,
    refresh_rotations: IntCounter,
    refresh_reuse: IntCounter,
    deliveries: IntCounterVec,
    queued: IntGaugeVec,
    hashing: IntGauge,
    hash_seconds: HistogramVec,
    http: HistogramVec,
    /// The built-in hasher's queue, read at each scrape (absent when the
    /// host handed in a hasher of its own).
    argon2: Mutex<Option<ArgonGauges>>,
}

/// The built-in hasher and the metrics its stats are copied into.
struct ArgonGauges {
    hasher: Arc<Argon2Hasher>,
    queue_depth: IntGauge,
    running: IntGauge,
    waits: IntCounter,
    wait_seconds: Counter,
}

impl ArgonGauges {
    /// Copies the hasher's cumulative stats in (the counters only ever move
    /// forward: each scrape adds what happened since the last).
    fn refresh(&self) {
        let HashingStats {
            waiting,
            running,
            waits,
            wait_micros,
        } = self.hasher.stats();
        self.queue_depth
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        self.running.set(i64::try_from(running).unwrap_or(i64::MAX));
        self.waits.inc_by(waits.saturating_sub(self.waits.get()));
        #[allow(clippy::cast_precision_loss)]
        let seconds = wait_micros as f64 / 1e6;
        let delta = seconds - self.wait_seconds.get();
        if delta > 0.0 {
            self.wait_seconds.inc_by(delta);
        }
    }
}

// Names, help texts and labels below are constants of this file, each
// registered once in a fresh registry: the only errors possible are bugs in
// this file, which `every_metric_registers_and_renders` catches. Hence the
// `expect`s.

#[allow(clippy::expect_used)]
fn register(registry: &Registry, c: impl prometheus::core::Collector + 'static) {
    registry
        .register(Box::new(c))
        .expect("a metric name registered twice");
}

#[allow(clippy::expect_used)]
fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("a valid metric name");
    register(registry, c.clone());
    c
}

#[allow(clippy::expect_used)]
fn float_counter(registry: &Registry, name: &str, help: &str) -> Counter {
    let c = Counter::new(name, help).expect("a valid metric name");
    register(registry, c.clone());
    c
}

#[allow(clippy::expect_used)]
fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric name");
    register(registry, c.clone());
    c
}

#[allow(clippy::expect_used)]
fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("a valid metric name");
    register(registry, g.clone());
    g
}

#[allow(clippy::expect_used)]
fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid metric name");
    register(registry, g.clone());
    g
}

#[allow(clippy::expect_used)]
fn histogram_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(SECONDS_BUCKETS.to_vec()),
        labels,
    )
    .expect("a valid metric name");
    register(registry, h.clone());
    h
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric, at zero, in a registry of its own.
    pub fn new() -> Self {
        let r = Registry::new();
        let logins = counter_vec(
            &r,
            "regstack_logins_total",
            "Password sign-ins by outcome (success, failure, locked) and, for failures, reason.",
            &["outcome", "reason"],
        );
        let mfa_failures = counter_vec(
            &r,
            "regstack_mfa_failures_total",
            "Second-factor codes refused: wrong (the challenge stays) or exhausted (it is gone).",
            &["kind"],
        );
        let deliveries = counter_vec(
            &r,
            "regstack_notifications_total",
            "Mail and SMS handed to the transport, by channel (mail, sms) and outcome (sent, failed).",
            &["channel", "outcome"],
        );
        let queued = gauge_vec(
            &r,
            "regstack_notifications_queued",
            "Mail and SMS in the transport's hands right now, not yet sent or failed.",
            &["channel"],
        );
        // Every label value that exists, at zero from the start: a rate
        // over a series that appears only on its first event misses it.
        for reason in FAILURE_REASONS.iter().chain(&["other"]) {
            logins.with_label_values(&["failure", reason]);
        }
        logins.with_label_values(&["success", ""]);
        logins.with_label_values(&["locked", ""]);
        for kind in ["wrong_code", "exhausted"] {
            mfa_failures.with_label_values(&[kind]);
        }
        for channel in ["mail", "sms"] {
            queued.with_label_values(&[channel]);
            for outcome in ["sent", "failed"] {
                deliveries.with_label_values(&[channel, outcome]);
            }
        }
        let inner = Inner {
            logins,
            lockouts: counter(
                &r,
                "regstack_login_lockouts_total",
                "Sign-ins refused because the address (or device) is locked out.",
            ),
            mfa_challenges: counter(
                &r,
                "regstack_mfa_challenges_total",
                "Second-factor challenges opened (sign-ins whose password was right).",
            ),
            mfa_failures,
            refresh_rotations: counter(
                &r,
                "regstack_refresh_rotations_total",
                "Refresh tokens exchanged for their successor.",
            ),
            refresh_reuse: counter(
                &r,
                "regstack_refresh_reuse_detected_total",
                "Spent refresh tokens presented again: each revoked its session.",
            ),
            deliveries,
            queued,
            hashing: gauge(
                &r,
                "regstack_password_hash_in_flight",
                "Password hashes and verifications asked for and not yet answered (queued or running).",
            ),
            hash_seconds: histogram_vec(
                &r,
                "regstack_password_hash_duration_seconds",
                "Time to answer a hash or verify (op), queueing for a permit included.",
                &["op"],
            ),
            http: histogram_vec(
                &r,
                "regstack_http_request_duration_seconds",
                "Request latency by route template, method and status class.",
                &["route", "method", "status"],
            ),
            argon2: Mutex::new(None),
            registry: r,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Reads the built-in Argon2 hasher's queue at every scrape:
    /// `regstack_password_hash_queue_depth`, `…_running`, `…_waits_total`
    /// and `…_wait_seconds_total`.
    pub fn watch_hasher(&self, hasher: Arc<Argon2Hasher>) {
        let mut watched = self
            .inner
            .argon2
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if watched.is_some() {
            return;
        }
        let r = &self.inner.registry;
        let wait_seconds = float_counter(
            r,
            "regstack_password_hash_wait_seconds_total",
            "Time callers spent waiting for a hashing permit, in all.",
        );
        let gauges = ArgonGauges {
            hasher,
            queue_depth: gauge(
                r,
                "regstack_password_hash_queue_depth",
                "Callers waiting for a hashing permit right now.",
            ),
            running: gauge(
                r,
                "regstack_password_hash_running",
                "Hashes or verifications running right now (at most the bound).",
            ),
            waits: counter(
                r,
                "regstack_password_hash_waits_total",
                "Hashing permits granted (each ends one wait).",
            ),
            wait_seconds,
        };
        *watched = Some(gauges);
    }

    /// Counts what the engine's events say. Subscribes once per kind it
    /// counts; the bus runs handlers in their own tasks.
    pub fn subscribe(&self, events: &EventBus) {
        for kind in [
            EventKind::UserLoggedIn,
            EventKind::LoginFailed,
            EventKind::LoginLocked,
            EventKind::MfaChallengeStarted,
            EventKind::MfaChallengeFailed,
            EventKind::MfaChallengeExhausted,
            EventKind::SessionRefreshed,
            EventKind::RefreshTokenReused,
        ] {
            let metrics = self.clone();
            events.subscribe(kind, move |event| {
                metrics.count(event.kind, event.reason);
                std::future::ready(Ok(()))
            });
        }
    }

    fn count(&self, kind: EventKind, reason: Option<&str>) {
        let m = &self.inner;
        match kind {
            EventKind::UserLoggedIn => m.logins.with_label_values(&["success", ""]).inc(),
            EventKind::LoginFailed => {
                let reason = reason
                    .and_then(|r| FAILURE_REASONS.iter().find(|k| **k == r))
                    .copied()
                    .unwrap_or("other");
                m.logins.with_label_values(&["failure", reason]).inc();
            }
            EventKind::LoginLocked => {
                m.logins.with_label_values(&["locked", ""]).inc();
                m.lockouts.inc();
            }
            EventKind::MfaChallengeStarted => m.mfa_challenges.inc(),
            EventKind::MfaChallengeFailed => {
                m.mfa_failures.with_label_values(&["wrong_code"]).inc()
            }
            EventKind::MfaChallengeExhausted => {
                m.mfa_failures.with_label_values(&["exhausted"]).inc();
            }
            EventKind::SessionRefreshed => m.refresh_rotations.inc(),
            EventKind::RefreshTokenReused => m.refresh_reuse.inc(),
            _ => {}
        }
    }

    /// The whole registry in Prometheus' text format.
    pub fn render(&self) -> String {
        if let Some(a) = &*self
            .inner
            .argon2
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            a.refresh();
        }
        TextEncoder::new()
            .encode_to_string(&self.inner.registry.gather())
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "metrics not encoded");
                String::new()
            })
    }

    /// `GET /metrics` answering [`Self::render`].
    pub fn router(&self) -> axum::Router {
        let metrics = self.clone();
        axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                        )],
                        metrics.render(),
                    )
                        .into_response()
                }
            }),
        )
    }

    /// Wraps every route of `router` (its fallback included) in the latency
    /// histogram. Add it last, so the time covers every other layer.
    pub fn instrument(&self, router: axum::Router) -> axum::Router {
        let metrics = self.clone();
        router.layer(axum::middleware::from_fn(
            move |request: Request, next: Next| {
                let metrics = metrics.clone();
                async move { metrics.time_request(request, next).await }
            },
        ))
    }

    async fn time_request(&self, request: Request, next: Next) -> Response {
        let started = Instant::now();
        let route = route_label(request.extensions().get::<MatchedPath>());
        let method = method_label(request.method());
        let response = next.run(request).await;
        self.inner
            .http
            .with_label_values(&[&route, method, status_class(response.status())])
            .observe(started.elapsed().as_secs_f64());
        response
    }

    /// Wraps a mailer so its sends are counted.
    pub fn mailer(&self, inner: Arc<dyn Mailer>) -> Arc<dyn Mailer> {
        Arc::new(Metered {
            inner,
            metrics: self.clone(),
            channel: "mail",
        })
    }

    /// Wraps an SMS sender so its sends are counted.
    pub fn sms(&self, inner: Arc<dyn SmsSender>) -> Arc<dyn SmsSender> {
        Arc::new(Metered {
            inner,
            metrics: self.clone(),
            channel: "sms",
        })
    }

    /// Wraps a hasher so its calls are timed and counted in flight.
    pub fn hasher(&self, inner: Arc<dyn PasswordHasher>) -> Arc<dyn PasswordHasher> {
        Arc::new(MeteredHasher {
            inner,
            metrics: self.clone(),
        })
    }

    /// Runs one send, counting it queued until it ends and then sent or
    /// failed. A send the engine abandons (its timeout) counts as failed.
    async fn delivery<F>(&self, channel: &'static str, send: F) -> Result<(), NotifyError>
    where
        F: std::future::Future<Output = Result<(), NotifyError>>,
    {
        let mut guard = Delivery {
            metrics: self,
            channel,
            outcome: "failed",
        };
        self.inner.queued.with_label_values(&[channel]).inc();
        let result = send.await;
        if result.is_ok() {
            guard.outcome = "sent";
        }
        result
    }
}

/// Ends a delivery's count however the send ends (dropped included).
struct Delivery<'a> {
    metrics: &'a Metrics,
    channel: &'static str,
    outcome: &'static str,
}

impl Drop for Delivery<'_> {
    fn drop(&mut self) {
        let m = &self.metrics.inner;
        m.queued.with_label_values(&[self.channel]).dec();
        m.deliveries
            .with_label_values(&[self.channel, self.outcome])
            .inc();
    }
}

/// The route label: the template the request matched (`/api/auth/login`,
/// never a raw path, which could carry a token or an id), else `unmatched`.
fn route_label(matched: Option<&MatchedPath>) -> String {
    match matched {
        // axum names a nested router's fallback with a private wildcard.
        Some(p) if !p.as_str().contains("__private__") => p.as_str().to_owned(),
        _ => "unmatched".to_owned(),
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// A mailer or SMS sender whose sends are counted.
struct Metered<T: ?Sized> {
    inner: Arc<T>,
    metrics: Metrics,
    channel: &'static str,
}

#[async_trait]
impl Mailer for Metered<dyn Mailer> {
    async fn send(&self, mail: &OutgoingMail) -> Result<(), NotifyError> {
        self.metrics
            .delivery(self.channel, self.inner.send(mail))
            .await
    }
}

#[async_trait]
impl SmsSender for Metered<dyn SmsSender> {
    async fn send(&self, sms: &OutgoingSms) -> Result<(), NotifyError> {
        self.metrics
            .delivery(self.channel, self.inner.send(sms))
            .await
    }
}

/// A hasher whose calls are timed.
struct MeteredHasher {
    inner: Arc<dyn PasswordHasher>,
    metrics: Metrics,
}

/// Counts one hashing call in flight until dropped, then records its time.
struct Hashing<'a> {
    metrics: &'a Metrics,
    op: &'static str,
    started: Instant,
}

impl<'a> Hashing<'a> {
    fn start(metrics: &'a Metrics, op: &'static str) -> Self {
        metrics.inner.hashing.inc();
        Self {
            metrics,
            op,
            started: Instant::now(),
        }
    }
}

impl Drop for Hashing<'_> {
    fn drop(&mut self) {
        let m = &self.metrics.inner;
        m.hashing.dec();
        m.hash_seconds
            .with_label_values(&[self.op])
            .observe(self.started.elapsed().as_secs_f64());
    }
}

#[async_trait]
impl PasswordHasher for MeteredHasher {
    async fn hash(&self, password: &SecretString) -> Result<PasswordHash, HashError> {
        let _timing = Hashing::start(&self.metrics, "hash");
        self.inner.hash(password).await
    }

    async fn verify(
        &self,
        password: &SecretString,
        hash: &PasswordHash,
    ) -> Result<Verification, HashError> {
        let _timing = Hashing::start(&self.metrics, "verify");
        self.inner.verify(password, hash).await
    }

    // A dummy verification is a verification: told apart here, the
    // metrics would count unknown addresses.
    async fn verify_dummy(&self, password: &SecretString) -> Result<(), HashError> {
        let _timing = Hashing::start(&self.metrics, "verify");
        self.inner.verify_dummy(password).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_registers_and_renders() {
        let m = Metrics::new();
        m.watch_hasher(Arc::new(
            Argon2Hasher::new(&regstack_core::config::PasswordConfig::default()).unwrap(),
        ));
        m.count(EventKind::LoginFailed, Some("made_up_reason"));
        let text = m.render();
        for name in [
            "regstack_logins_total",
            "regstack_login_lockouts_total",
            "regstack_mfa_challenges_total",
            "regstack_mfa_failures_total",
            "regstack_refresh_rotations_total",
            "regstack_refresh_reuse_detected_total",
            "regstack_notifications_total",
            "regstack_notifications_queued",
            "regstack_password_hash_in_flight",
            "regstack_password_hash_queue_depth",
            "regstack_password_hash_wait_seconds_total",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} missing:\n{text}"
            );
        }
        assert!(
            text.contains(r#"regstack_logins_total{outcome="failure",reason="other"} 1"#),
            "an unknown reason is `other`, never a new label value:\n{text}"
        );
        assert!(!text.contains("made_up_reason"));
    }

    #[test]
    fn labels_are_bounded() {
        assert_eq!(route_label(None), "unmatched");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
        assert_eq!(status_class(StatusCode::IM_A_TEAPOT), "4xx");
    }
}
