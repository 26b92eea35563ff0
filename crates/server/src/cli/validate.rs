//! `regstack validate <base_url>`: a black-box probe of a deployed
//! instance, through its public HTTP API only — register, verify, sign in,
//! `/me`, refresh rotation and reuse detection, logout-all, a TOTP second
//! factor (enrol with a code computed from the returned secret, sign out,
//! sign in through the challenge with a fresh code, remove it), password
//! change, forgot/reset, and finally deleting the account it made.
//!
//! It exists to answer "does this deployment work end to end?" after a
//! deploy or a configuration change, the way a user would find out, and
//! to fail a pipeline when it does not: one line per check, exit 0 only
//! when none failed. Links that arrive by mail are read from the server's
//! console log (`--token-from-log`, for instances whose console mailer
//! logs bodies); without it the checks that need a mailed token are
//! skipped (shown as SKIP) or, where everything after depends on them,
//! failed.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use regstack_core::factors::{TotpSecret, TotpStep};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::{Failure, Outcome};

/// How long a mailed link may take to appear in the log.
const MAIL_WAIT: Duration = Duration::from_secs(15);
/// Where the console mailer's body starts in the log.
const BODY_MARKER: &str = "[regstack/console-email] text body:";

/// `regstack validate` arguments.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit codes: 0 every check passed (skips allowed); 1 a check \
                        failed or the instance is unreachable; 2 usage error."
)]
pub struct Args {
    /// The instance's origin, e.g. https://id.example.com.
    pub base_url: String,
    /// The server's console log, to read verification and reset links
    /// from (development mode, or `email.log_bodies = true`).
    #[arg(long, value_name = "FILE")]
    pub token_from_log: Option<PathBuf>,
    /// Mount point of the JSON API.
    #[arg(long, default_value = "/api/auth")]
    pub api_prefix: String,
    /// The throw-away account's address (default: a random one at
    /// example.com). It is deleted at the end.
    #[arg(long)]
    pub email: Option<String>,
    /// Seconds one request may take.
    #[arg(long, default_value_t = 15)]
    pub timeout: u64,
}

struct Probe {
    http: reqwest::Client,
    api: String,
    log: Option<PathBuf>,
    passed: usize,
    failed: usize,
    skipped: usize,
}

/// A response: status and JSON body (`Null` if none).
type Answer = (StatusCode, Value);

impl Probe {
    async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> Result<Answer, String> {
        let mut req = self.http.request(method, format!("{}{path}", self.api));
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| describe(&e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| describe(&e))?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    async fn post(&self, path: &str, body: Value) -> Result<Answer, String> {
        self.call(Method::POST, path, None, Some(body)).await
    }

    fn pass(&mut self, name: &str, detail: &str) {
        self.passed += 1;
        println!("PASS  {name:<24} {detail}");
    }

    fn fail(&mut self, name: &str, detail: &str) {
        self.failed += 1;
        println!("FAIL  {name:<24} {detail}");
    }

    fn skip(&mut self, name: &str, detail: &str) {
        self.skipped += 1;
        println!("SKIP  {name:<24} {detail}");
    }

    /// Records `got` as a pass when its status is `want`.
    fn expect(&mut self, name: &str, got: &Result<Answer, String>, want: StatusCode) -> bool {
        match got {
            Ok((s, _)) if *s == want => {
                self.pass(name, &format!("{}", s.as_u16()));
                true
            }
            Ok((s, body)) => {
                self.fail(
                    name,
                    &format!("got {s}, wanted {}: {}", want.as_u16(), brief(body)),
                );
                false
            }
            Err(e) => {
                self.fail(name, e);
                false
            }
        }
    }

    async fn refresh(&self, token: &str) -> Result<Answer, String> {
        self.post("/refresh", json!({ "refresh_token": token }))
            .await
    }

    async fn login(&self, email: &str, password: &str) -> Result<Answer, String> {
        self.post("/login", json!({ "email": email, "password": password }))
            .await
    }

    /// The token of the first link containing `path` in a mail to `email`
    /// that appears in the log after byte `since`.
    async fn mailed_token(&self, email: &str, path: &str, since: u64) -> Result<String, String> {
        let Some(file) = &self.log else {
            return Err("no --token-from-log".into());
        };
        let deadline = Instant::now() + MAIL_WAIT;
        loop {
            let text =
                std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let tail = String::from_utf8_lossy(text.get(since as usize..).unwrap_or_default())
                .into_owned();
            if let Some(token) = find_token(&tail, email, path) {
                return Ok(token);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no mail to {email} with a `{path}` link in {} within {}s (are mail bodies logged?)",
                    file.display(),
                    MAIL_WAIT.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_len(&self) -> u64 {
        self.log
            .as_ref()
            .and_then(|f| std::fs::metadata(f).ok())
            .map_or(0, |m| m.len())
    }
}

/// Finds, after a mail header naming `email`, the first body line with a
/// link containing `path` (`/verify?token=`), and returns its token.
fn find_token(log: &str, email: &str, path: &str) -> Option<String> {
    let header = format!("To: {email} ");
    let mut rest = log;
    while let Some(at) = rest.find(&header) {
        rest = &rest[at + header.len()..];
        let Some(body_at) = rest.find(BODY_MARKER) else {
            continue;
        };
        let body = &rest[body_at + BODY_MARKER.len()..];
        // The body ends where the next mail header starts.
        let body = body
            .find("[regstack/console-email] To:")
            .map_or(body, |end| &body[..end]);
        if let Some(token) = body
            .lines()
            .find_map(|l| l.split_once(path).map(|(_, after)| after))
            .map(|after| {
                after
                    .split(|c: char| c.is_whitespace() || c == '&' || c == '"' || c == '<')
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .filter(|t| !t.is_empty())
        {
            return Some(token);
        }
    }
    None
}

/// A short, secret-free view of an error body.
fn brief(body: &Value) -> String {
    let s = body.to_string();
    if s.len() > 160 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(160).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text = format!("{text}: {c}");
        cause = c.source();
    }
    text
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Runs the checks in order; a check whose precondition failed is not
/// attempted. The account is deleted at the end whenever it was made.
pub async fn run(args: Args) -> Outcome {
    let base = args.base_url.trim_end_matches('/').to_owned();
    if reqwest::Url::parse(&base).is_err() {
        return Err(Failure::Usage(format!("`{}` is not a URL", args.base_url)));
    }
    if let Some(f) = &args.token_from_log {
        if !f.is_file() {
            return Err(Failure::Usage(format!(
                "{} is not a readable file",
                f.display()
            )));
        }
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout))
        .build()
        .map_err(|e| Failure::Failed(describe(&e)))?;
    let mut p = Probe {
        http,
        api: format!("{base}{}", args.api_prefix.trim_end_matches('/')),
        log: args.token_from_log,
        passed: 0,
        failed: 0,
        skipped: 0,
    };
    // The canonical form (trimmed, lower-case) is what the mail log shows.
    let email = args
        .email
        .map(|e| e.trim().to_lowercase())
        .unwrap_or_else(|| {
            use rand::Rng;
            format!(
                "regstack-validate-{:016x}@example.com",
                rand::thread_rng().gen::<u64>()
            )
        });
    let mut password = format!("Validate-{:x}", rand::random::<u64>());

    // Reachability.
    match p.http.get(format!("{base}/healthz")).send().await {
        Ok(r) if r.status().is_success() => p.pass("reachable", &format!("{base}/healthz")),
        Ok(r) => {
            // A host app may not mount the health routes: the API decides.
            p.skip("reachable", &format!("/healthz answered {}", r.status()));
        }
        Err(e) => {
            p.fail("reachable", &describe(&e));
            return summary(&p);
        }
    }

    // Registration and verification.
    let since = p.log_len();
    let registered = p
        .post(
            "/register",
            json!({ "email": email, "password": password, "full_name": "regstack validate" }),
        )
        .await;
    let created = match &registered {
        Ok((s, _)) if s.is_success() => {
            p.pass("register", &format!("{} {email}", s.as_u16()));
            true
        }
        Ok((s, b)) => {
            p.fail("register", &format!("got {s}: {}", brief(b)));
            false
        }
        Err(e) => {
            p.fail("register", e);
            false
        }
    };
    if !created {
        return summary(&p);
    }
    let pending = matches!(&registered, Ok((_, b)) if str_field(b, "status") == Some("pending_verification") || b.get("expires_at").is_some());
    if pending {
        match p.mailed_token(&email, "/verify?token=", since).await {
            Ok(token) => {
                let got = p.post("/verify", json!({ "token": token })).await;
                p.expect("verify", &got, StatusCode::OK);
            }
            Err(e) => p.fail("verify", &e),
        }
    } else {
        p.skip("verify", "the instance does not require verification");
    }

    // Sign-in and /me.
    let first = p.login(&email, &password).await;
    if !p.expect("login", &first, StatusCode::OK) {
        return summary(&p);
    }
    let tokens = first.map(|(_, b)| b).unwrap_or_default();
    let access = str_field(&tokens, "access_token")
        .unwrap_or_default()
        .to_owned();
    let refresh_a = str_field(&tokens, "refresh_token").map(str::to_owned);
    match p.call(Method::GET, "/me", Some(&access), None).await {
        Ok((StatusCode::OK, me)) if str_field(&me, "email") == Some(email.as_str()) => {
            p.pass("me", "200, the registered address")
        }
        other => {
            let shown = match other {
                Ok((s, b)) => format!("got {s}: {}", brief(&b)),
                Err(e) => e,
            };
            p.fail("me", &shown);
        }
    }

    // Refresh rotation and reuse detection.
    match refresh_a {
        None => p.skip(
            "refresh rotation",
            "no refresh token in the body (cookie mode?)",
        ),
        Some(a) => {
            let b = p.refresh(&a).await;
            let b_token = b
                .as_ref()
                .ok()
                .and_then(|(_, v)| str_field(v, "refresh_token"))
                .map(str::to_owned);
            let rotated =
                matches!(&b, Ok((StatusCode::OK, _))) && b_token.as_deref().is_some_and(|t| t != a);
            if rotated {
                p.pass("refresh rotation", "200, a new refresh token");
            } else {
                p.fail("refresh rotation", &format!("{:?}", b.map(|(s, _)| s)));
            }
            if let Some(b_token) = b_token {
                let c = p.refresh(&b_token).await;
                let c_token = c
                    .as_ref()
                    .ok()
                    .and_then(|(_, v)| str_field(v, "refresh_token"))
                    .map(str::to_owned);
                p.expect("refresh again", &c, StatusCode::OK);
                // A is spent and its successor too: presenting it is theft.
                let reused = p.refresh(&a).await;
                p.expect("refresh reuse refused", &reused, StatusCode::UNAUTHORIZED);
                if let Some(c_token) = c_token {
                    let after = p.refresh(&c_token).await;
                    p.expect("reuse ends the family", &after, StatusCode::UNAUTHORIZED);
                }
            }
        }
    }

    // Logout everywhere.
    let one = p.login(&email, &password).await;
    let two = p.login(&email, &password).await;
    match (one, two) {
        (Ok((StatusCode::OK, one)), Ok((StatusCode::OK, two))) => {
            let t1 = str_field(&one, "access_token")
                .unwrap_or_default()
                .to_owned();
            let t2 = str_field(&two, "access_token")
                .unwrap_or_default()
                .to_owned();
            let out = p.call(Method::POST, "/logout-all", Some(&t1), None).await;
            if p.expect("logout-all", &out, StatusCode::OK) {
                let other = p.call(Method::GET, "/me", Some(&t2), None).await;
                p.expect("other session ended", &other, StatusCode::UNAUTHORIZED);
            }
        }
        _ => p.fail("logout-all", "could not sign in twice"),
    }

    // A second factor: TOTP.
    totp(&mut p, &email, &password).await;

    // Password change.
    let changed_to = format!("Changed-{:x}", rand::random::<u64>());
    match p.login(&email, &password).await {
        Ok((StatusCode::OK, s)) => {
            let t = str_field(&s, "access_token").unwrap_or_default().to_owned();
            let got = p
                .call(
                    Method::POST,
                    "/change-password",
                    Some(&t),
                    Some(json!({ "current_password": password, "new_password": changed_to })),
                )
                .await;
            if p.expect("change password", &got, StatusCode::OK) {
                let old = p.login(&email, &password).await;
                password = changed_to;
                p.expect("old password refused", &old, StatusCode::UNAUTHORIZED);
                let new = p.login(&email, &password).await;
                p.expect("new password works", &new, StatusCode::OK);
            }
        }
        other => p.fail(
            "change password",
            &format!("sign-in failed: {:?}", other.map(|(s, _)| s)),
        ),
    }

    // Forgot / reset.
    if p.log.is_none() {
        p.skip("forgot/reset", "needs --token-from-log for the mailed link");
    } else {
        let since = p.log_len();
        let asked = p.post("/forgot-password", json!({ "email": email })).await;
        if p.expect("forgot password", &asked, StatusCode::ACCEPTED) {
            match p
                .mailed_token(&email, "/reset-password?token=", since)
                .await
            {
                Ok(token) => {
                    let reset_to = format!("Reset-{:x}", rand::random::<u64>());
                    let got = p
                        .post(
                            "/reset-password",
                            json!({ "token": token, "new_password": reset_to }),
                        )
                        .await;
                    if p.expect("reset password", &got, StatusCode::OK) {
                        password = reset_to;
                        let new = p.login(&email, &password).await;
                        p.expect("reset password works", &new, StatusCode::OK);
                    }
                }
                Err(e) => p.fail("reset password", &e),
            }
        }
    }

    // Cleanup.
    match p.login(&email, &password).await {
        Ok((StatusCode::OK, s)) => {
            let t = str_field(&s, "access_token").unwrap_or_default().to_owned();
            let got = p
                .call(
                    Method::DELETE,
                    "/account",
                    Some(&t),
                    Some(json!({ "current_password": password })),
                )
                .await;
            if p.expect("delete account", &got, StatusCode::OK) {
                let gone = p.login(&email, &password).await;
                p.expect("deleted account refused", &gone, StatusCode::UNAUTHORIZED);
            }
        }
        other => p.fail(
            "delete account",
            &format!(
                "could not sign in to delete {email}: {:?}",
                other.map(|(s, _)| s)
            ),
        ),
    }
    summary(&p)
}

/// The TOTP step the probe's own clock is in.
fn current_step() -> Option<TotpStep> {
    TotpStep::at(chrono::Utc::now())
}

/// Enrols a TOTP factor as an authenticator app would (the code computed
/// from the secret `/totp/setup` returns), signs out, signs in again
/// through the second-factor challenge, and removes the factor, so the
/// checks after it sign in with the password alone. Skipped only when the
/// server says TOTP is off: `/totp/setup` answers 404.
///
/// A code is accepted once per 30-second step and never an earlier one,
/// so the sign-in presents the step after the enrolment's (or the
/// current one, if later) — inside the server's ±1 step window as long as
/// the two clocks agree within about 30 s.
async fn totp(p: &mut Probe, email: &str, password: &str) {
    let access = match p.login(email, password).await {
        Ok((StatusCode::OK, s)) => str_field(&s, "access_token").unwrap_or_default().to_owned(),
        other => {
            p.fail(
                "totp setup",
                &format!("sign-in failed: {:?}", other.map(|(s, _)| s)),
            );
            return;
        }
    };
    let with_password = json!({ "current_password": password });
    let setup = p
        .call(
            Method::POST,
            "/totp/setup",
            Some(&access),
            Some(with_password.clone()),
        )
        .await;
    let (secret, pending) = match &setup {
        Ok((StatusCode::NOT_FOUND, _)) => {
            p.skip("totp", "(TOTP not enabled)");
            return;
        }
        Ok((StatusCode::OK, b)) => {
            let secret = str_field(b, "secret").map(TotpSecret::from_base32);
            match (secret, str_field(b, "pending_token")) {
                (Some(Ok(secret)), Some(pending)) => {
                    p.pass("totp setup", "200, a secret and a pending token");
                    (secret, pending.to_owned())
                }
                _ => {
                    p.fail(
                        "totp setup",
                        "200 without a readable base32 secret and pending token",
                    );
                    return;
                }
            }
        }
        _ => {
            p.expect("totp setup", &setup, StatusCode::OK);
            return;
        }
    };
    let Some(enrolled_at) = current_step() else {
        p.fail("totp confirm", "the probe's clock is before 1970");
        return;
    };
    let code = secret.code_for(enrolled_at);
    let confirmed = p
        .call(
            Method::POST,
            "/totp/confirm",
            Some(&access),
            Some(json!({ "pending_token": pending, "code": code.expose_secret() })),
        )
        .await;
    let has_backup_codes = matches!(&confirmed, Ok((StatusCode::OK, b))
        if b.get("backup_codes").and_then(Value::as_array).is_some_and(|c| !c.is_empty()));
    if !p.expect("totp confirm", &confirmed, StatusCode::OK) {
        return;
    }
    if !has_backup_codes {
        p.fail(
            "totp backup codes",
            "the confirmation listed no backup codes",
        );
    }
    let out = p.call(Method::POST, "/logout", Some(&access), None).await;
    p.expect("totp sign out", &out, StatusCode::OK);

    let challenged = p.login(email, password).await;
    let token = match &challenged {
        Ok((StatusCode::OK, b)) if str_field(b, "status") == Some("mfa_required") => {
            p.pass("totp challenge", "200 mfa_required, no tokens yet");
            str_field(b, "mfa_pending_token")
                .unwrap_or_default()
                .to_owned()
        }
        Ok((s, b)) => {
            p.fail(
                "totp challenge",
                &format!("got {s}, wanted mfa_required: {}", brief(b)),
            );
            return;
        }
        Err(e) => {
            p.fail("totp challenge", e);
            return;
        }
    };
    let step = current_step().map_or(enrolled_at, |now| {
        now.max(TotpStep::from_counter(enrolled_at.counter() + 1))
    });
    let code = secret.code_for(step);
    let signed_in = p
        .post(
            "/login/mfa-confirm",
            json!({ "mfa_pending_token": token, "code": code.expose_secret(), "method": "totp" }),
        )
        .await;
    let access = match &signed_in {
        Ok((StatusCode::OK, b)) if str_field(b, "access_token").is_some() => {
            p.pass("totp sign-in", "200, signed in with a fresh code");
            str_field(b, "access_token").unwrap_or_default().to_owned()
        }
        _ => {
            p.expect("totp sign-in", &signed_in, StatusCode::OK);
            return;
        }
    };
    let removed = p
        .call(Method::DELETE, "/totp", Some(&access), Some(with_password))
        .await;
    if p.expect("totp disable", &removed, StatusCode::OK) {
        match p.login(email, password).await {
            Ok((StatusCode::OK, b)) if str_field(&b, "access_token").is_some() => {
                p.pass("totp gone", "the password alone signs in again")
            }
            other => p.fail(
                "totp gone",
                &format!(
                    "still challenged: {:?}",
                    other.map(|(s, b)| (s, str_field(&b, "status").map(str::to_owned)))
                ),
            ),
        }
    }
}

fn summary(p: &Probe) -> Outcome {
    println!(
        "{} passed, {} failed, {} skipped",
        p.passed, p.failed, p.skipped
    );
    if p.failed == 0 {
        Ok(())
    } else {
        Err(Failure::Failed(format!("{} check(s) failed", p.failed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_read_from_the_mail_to_the_address() {
        let log = "\
INFO [regstack/console-email] To: other@example.com | From: x | Subject: Verify
INFO [regstack/console-email] text body:
Open http://h/verify?token=OTHER to verify.
INFO [regstack/console-email] To: me@example.com | From: x | Subject: Verify
INFO [regstack/console-email] text body:
Hello,
Open http://h/verify?token=MINE&x=1 to verify.
";
        assert_eq!(
            find_token(log, "me@example.com", "/verify?token=").as_deref(),
            Some("MINE")
        );
        assert_eq!(
            find_token(log, "other@example.com", "/verify?token=").as_deref(),
            Some("OTHER")
        );
        assert_eq!(
            find_token(log, "me@example.com", "/reset-password?token="),
            None
        );
        assert_eq!(
            find_token(log, "nobody@example.com", "/verify?token="),
            None
        );
    }
}
