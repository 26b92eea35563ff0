//! Timing: `POST /forgot-password` answers a known address as fast as an
//! unknown one (issue 19).
//!
//! Timing properties are otherwise proven structurally (a counting
//! hasher) and spreads left to the benchmark, since wall-time assertions
//! flake on a shared machine; this is the one exception the issue asks for,
//! and it is built so that it cannot flake: it compares *medians* of many
//! interleaved requests against a bound several times wider than the noise
//! of a loaded 2-core machine, yet well below the cost of the work that
//! used to sit on the request path for a known address (a write
//! transaction for the mail quota, another for the link token, composing
//! the mail). The test's doc comment states the bound and why.
//!
//! It runs on SQLite and PostgreSQL (`TEST_BACKEND`); on MongoDB it says
//! SKIPPED (the request path it times is the same code on every backend).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

/// Requests per address that count (after [`WARM_UP`] each that do not).
const SAMPLES: usize = 200;
/// Requests per address first, unmeasured: pools, caches, first-use
/// allocations.
const WARM_UP: usize = 20;

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort_unstable();
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2
    }
}

/// One `POST /forgot-password`, timed from the client: the whole round
/// trip an attacker would measure.
async fn timed(app: &TestApp, email: &str) -> Duration {
    let started = Instant::now();
    let r = app
        .post("/forgot-password", json!({ "email": email }))
        .await;
    let took = started.elapsed();
    assert_eq!(r.status, 202, "{:?}", r.body);
    took
}

/// Known and unknown addresses take the same time: the medians of 200
/// requests each, interleaved in alternating order (known–unknown, then
/// unknown–known, so drift and the previous request's after-effects fall
/// on both equally), differ by less than the bound.
///
/// The bound: half the unknown address's median, but at least 500 µs —
/// relative, because on a loaded machine every request slows down and its
/// noise with it. Measured on this 2-core machine (debug build, medians of
/// 200), the old code, with a known address's quota hit, token issue and
/// mail composition on the request path, answered a known address 1.3–1.4
/// ms slower than an unknown one on SQLite (0.9 ms) and 2.5–3.8 ms slower
/// on PostgreSQL (1.2–1.4 ms) idle, and 7.6–15 ms slower (on 2.8–9 ms)
/// beside two busy loops: always more than 1.4 times the unknown median,
/// so the bound fails it every time. The present code's medians differ by
/// under 70 µs idle and under 400 µs beside the busy loops, well inside.
/// Every known request is let finish (its mail arrives) before the next
/// one starts, so one request's background job never lands on the next
/// one's clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgot_password_answers_a_known_and_an_unknown_address_in_the_same_time() {
    if backend_name() == "mongo" {
        eprintln!(
            "SKIPPED on mongo: SecantusDB, a Python test server, is too slow and uneven to \
             time; the request path is the same code on every backend"
        );
        return;
    }
    // Every request for the known address does the whole job: no quota
    // cuts it short.
    let app = spawn_app_with(
        |s| s.config.email.max_per_address_per_hour = 1_000_000,
        false,
    )
    .await;
    let known = "known@example.com";
    let unknown = "nobody@example.com";
    app.create_user(known, PW).await;
    let mut mails = app.mailer.sent_to(known).len();
    let mut known_times = Vec::with_capacity(SAMPLES);
    let mut unknown_times = Vec::with_capacity(SAMPLES);
    for i in 0..WARM_UP + SAMPLES {
        let known_first = i % 2 == 0;
        for is_known in [known_first, !known_first] {
            let took = timed(&app, if is_known { known } else { unknown }).await;
            if is_known {
                mails += 1;
                app.mailer
                    .wait_for(known, mails, Duration::from_secs(10))
                    .await;
            }
            if i >= WARM_UP {
                if is_known {
                    known_times.push(took);
                } else {
                    unknown_times.push(took);
                }
            }
        }
    }
    assert!(app.mailer.sent_to(unknown).is_empty());
    let (k, u) = (median(known_times), median(unknown_times));
    let diff = k.abs_diff(u);
    let bound = (u / 2).max(Duration::from_micros(500));
    eprintln!(
        "forgot-password medians on {}: known {k:?}, unknown {u:?}, difference {diff:?} (bound {bound:?})",
        backend_name()
    );
    assert!(
        diff < bound,
        "a known address answers in {k:?}, an unknown one in {u:?} (medians of {SAMPLES}): \
         {diff:?} apart, over the {bound:?} bound"
    );
}
