//! Asymmetric access tokens (`jwt_algorithm = "EdDSA"` / `"RS256"`): the
//! keys published at `/.well-known/jwks.json`, checked with an independent
//! JWT implementation (`jwt-compact`, not the `jsonwebtoken` regstack signs
//! with), across a key rotation done by `regstack::keys` (the code behind
//! `regstack keys rotate`), and the forgeries a published public key
//! invites.

use chrono::{DateTime, TimeDelta, Utc};
use jwt_compact::alg::{Ed25519, Rsa, RsaPublicKey};
use jwt_compact::jwk::JsonWebKey;
use jwt_compact::{AlgorithmExt as _, Claims, TimeOptions, UntrustedToken};
use regstack::keys;
use regstack_core::config::JwtAlgorithm;
use secrecy::SecretString;
use serde_json::Value;

use crate::support::*;

/// The test RSA key of core's unit tests (made with openssl for tests only).
const RSA_PEM: &str = include_str!("../../crates/core/src/testdata/rsa2048.pem");

fn asymmetric(alg: JwtAlgorithm, keys: Vec<SecretString>) -> impl FnOnce(&mut regstack::Settings) {
    move |s| {
        s.config.jwt_algorithm = alg;
        s.config.jwt_private_keys = keys;
    }
}

async fn jwks_of(app: &TestApp) -> (reqwest::StatusCode, reqwest::header::HeaderMap, Value) {
    let r = app
        .http
        .get(format!("{}/.well-known/jwks.json", app.base))
        .send()
        .await
        .unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    let text = r.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Verifies `token` as a relying party would, with nothing but the JWKS
/// and `jwt-compact`: the key its `kid` names, that `kid` being the key's
/// RFC 7638 thumbprint, the signature under the key's algorithm, and
/// `exp` against `now`. Returns the claims.
fn verify_independently(jwks: &Value, token: &str, now: DateTime<Utc>) -> Result<Value, String> {
    use base64::Engine as _;
    let untrusted = UntrustedToken::new(token).map_err(|e| format!("parse: {e}"))?;
    let kid = untrusted
        .header()
        .key_id
        .clone()
        .ok_or("the token names no key")?;
    let published = jwks["keys"]
        .as_array()
        .ok_or("no keys array")?
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .ok_or_else(|| format!("kid {kid} is not in the JWKS"))?;
    if published["alg"] != untrusted.algorithm() {
        return Err(format!(
            "the JWKS says {} but the token {}",
            published["alg"],
            untrusted.algorithm()
        ));
    }
    // The key alone, as RFC 7638 hashes it.
    let mut bare = published.clone();
    for member in ["kid", "alg", "use"] {
        bare.as_object_mut().unwrap().remove(member);
    }
    let jwk: JsonWebKey<'_> = serde_json::from_value(bare).map_err(|e| format!("jwk: {e}"))?;
    let thumbprint =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(jwk.thumbprint::<sha2::Sha256>());
    if thumbprint != kid {
        return Err(format!(
            "kid {kid} is not the key's thumbprint {thumbprint}"
        ));
    }
    let token = match untrusted.algorithm() {
        "EdDSA" => {
            let key = <Ed25519 as jwt_compact::Algorithm>::VerifyingKey::try_from(&jwk)
                .map_err(|e| format!("ed25519 key: {e}"))?;
            Ed25519
                .validator::<Value>(&key)
                .validate(&untrusted)
                .map_err(|e| format!("signature: {e}"))?
        }
        "RS256" => {
            let key = RsaPublicKey::try_from(&jwk).map_err(|e| format!("rsa key: {e}"))?;
            Rsa::rs256()
                .validator::<Value>(&key)
                .validate(&untrusted)
                .map_err(|e| format!("signature: {e}"))?
        }
        other => return Err(format!("unexpected alg {other}")),
    };
    let claims: &Claims<Value> = token.claims();
    claims
        .validate_expiration(&TimeOptions::new(TimeDelta::zero(), move || now))
        .map_err(|e| format!("expiry: {e}"))?;
    Ok(claims.custom.clone())
}

#[tokio::test]
async fn hs256_publishes_no_keys_and_tokens_are_unchanged() {
    let app = spawn_app().await;
    let (status, _, body) = jwks_of(&app).await;
    assert_eq!(status, 404, "{body}");
    app.create_user("hs@example.com", PW).await;
    let token = app.access_token("hs@example.com", PW).await;
    let header = token.split('.').next().unwrap();
    use base64::Engine as _;
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "HS256");
    assert_eq!(app.me(&token).await.status, 200);
}

#[tokio::test]
async fn tokens_from_before_and_after_a_rotation_verify_against_the_jwks_until_the_old_key_is_dropped(
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(keys::KEYS_FILE);
    let alg = JwtAlgorithm::EdDSA;
    // First start: the key file is generated.
    let first_keys = keys::read_keys(&path, alg, true).unwrap();
    let before_app = spawn_app_with(asymmetric(alg, first_keys), false).await;
    before_app.create_user("rot@example.com", PW).await;
    let before = before_app.access_token("rot@example.com", PW).await;
    let (status, headers, jwks_before) = jwks_of(&before_app).await;
    assert_eq!(status, 200);
    assert_eq!(headers["cache-control"], "public, max-age=300");
    assert_eq!(jwks_before["keys"].as_array().unwrap().len(), 1);
    let claims = verify_independently(&jwks_before, &before, Utc::now()).unwrap();
    assert_eq!(claims["purpose"], "access");
    // The independent check does check: one claim changed, it refuses.
    {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
        use base64::Engine as _;
        let mut parts: Vec<String> = before.split('.').map(str::to_owned).collect();
        let mut c: Value = serde_json::from_slice(&B64.decode(&parts[1]).unwrap()).unwrap();
        c["sub"] = Value::from("someone-else");
        parts[1] = B64.encode(c.to_string());
        let tampered = parts.join(".");
        assert!(verify_independently(&jwks_before, &tampered, Utc::now())
            .unwrap_err()
            .contains("signature"));
        assert_eq!(before_app.me(&tampered).await.status, 401);
    }
    for private in ["d", "p", "q"] {
        assert!(jwks_before["keys"][0].get(private).is_none());
    }

    // Rotate, restart on the same database.
    let rotated = keys::rotate(&path, alg, None).unwrap();
    assert_eq!(
        rotated.previous.as_deref(),
        jwks_before["keys"][0]["kid"].as_str()
    );
    let app = spawn_app_on(
        before_app.stores.clone(),
        Backend::Memory,
        asymmetric(alg, keys::read_keys(&path, alg, true).unwrap()),
        false,
    )
    .await;
    let after = app.access_token("rot@example.com", PW).await;
    let (_, _, jwks) = jwks_of(&app).await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(
        kids,
        [
            rotated.signing.as_str(),
            rotated.previous.as_deref().unwrap()
        ]
    );
    assert_eq!(
        UntrustedToken::new(&after)
            .unwrap()
            .header()
            .key_id
            .as_deref(),
        Some(rotated.signing.as_str())
    );
    for token in [&before, &after] {
        verify_independently(&jwks, token, Utc::now()).unwrap();
        assert_eq!(app.me(token).await.status, 200);
    }

    // The old key dropped: its live token is refused, by us and by a
    // relying party holding the new JWKS.
    keys::drop_previous(&path, alg).unwrap();
    let dropped = spawn_app_on(
        before_app.stores.clone(),
        Backend::Memory,
        asymmetric(alg, keys::read_keys(&path, alg, true).unwrap()),
        false,
    )
    .await;
    let (_, _, jwks_dropped) = jwks_of(&dropped).await;
    assert_eq!(jwks_dropped["keys"].as_array().unwrap().len(), 1);
    assert_eq!(dropped.me(&before).await.status, 401);
    assert!(verify_independently(&jwks_dropped, &before, Utc::now())
        .unwrap_err()
        .contains("not in the JWKS"));
    assert_eq!(dropped.me(&after).await.status, 200);
    verify_independently(&jwks_dropped, &after, Utc::now()).unwrap();
}

#[tokio::test]
async fn a_previous_keys_tokens_die_at_their_expiry_though_the_key_is_still_listed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(keys::KEYS_FILE);
    let alg = JwtAlgorithm::EdDSA;
    let old_app = spawn_app_with(
        asymmetric(alg, keys::read_keys(&path, alg, true).unwrap()),
        true,
    )
    .await;
    old_app.create_user("exp@example.com", PW).await;
    let old = old_app.access_token("exp@example.com", PW).await;
    keys::rotate(&path, alg, None).unwrap();
    let app = spawn_app_on(
        old_app.stores.clone(),
        Backend::Memory,
        asymmetric(alg, keys::read_keys(&path, alg, true).unwrap()),
        true,
    )
    .await;
    let (_, _, jwks) = jwks_of(&app).await;
    let clock = app.clock.clone().unwrap();
    let t0 = regstack_testkit::fixtures::t0();
    let ttl = TimeDelta::seconds(app.rs.engine().config().jwt_ttl_seconds as i64);
    clock.advance(ttl - TimeDelta::seconds(1));
    assert_eq!(app.me(&old).await.status, 200);
    verify_independently(&jwks, &old, t0 + ttl - TimeDelta::seconds(1)).unwrap();
    clock.advance(TimeDelta::seconds(1));
    assert_eq!(app.me(&old).await.status, 401);
    assert!(verify_independently(&jwks, &old, t0 + ttl)
        .unwrap_err()
        .contains("expiry"));
    // The new key's fresh token works at that time.
    let fresh = app.access_token("exp@example.com", PW).await;
    assert_eq!(app.me(&fresh).await.status, 200);
}

#[tokio::test]
async fn rs256_tokens_verify_against_the_published_modulus() {
    let app = spawn_app_with(
        asymmetric(JwtAlgorithm::RS256, vec![SecretString::from(RSA_PEM)]),
        false,
    )
    .await;
    app.create_user("rsa@example.com", PW).await;
    let token = app.access_token("rsa@example.com", PW).await;
    let (status, _, jwks) = jwks_of(&app).await;
    assert_eq!(status, 200);
    assert_eq!(jwks["keys"][0]["kty"], "RSA");
    assert_eq!(jwks["keys"][0]["alg"], "RS256");
    verify_independently(&jwks, &token, Utc::now()).unwrap();
    assert_eq!(app.me(&token).await.status, 200);
}

#[tokio::test]
async fn forgeries_a_published_key_invites_are_refused() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine as _;
    use hmac::Mac as _;
    let dir = tempfile::tempdir().unwrap();
    let alg = JwtAlgorithm::EdDSA;
    let app = spawn_app_with(
        asymmetric(
            alg,
            keys::read_keys(&dir.path().join("a.pem"), alg, true).unwrap(),
        ),
        false,
    )
    .await;
    app.create_user("forge@example.com", PW).await;
    let token = app.access_token("forge@example.com", PW).await;
    assert_eq!(app.me(&token).await.status, 200);
    let (_, _, jwks) = jwks_of(&app).await;
    let key = &jwks["keys"][0];
    let kid = key["kid"].as_str().unwrap();
    let x = key["x"].as_str().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let hs256 = |secret: &[u8]| {
        let input = format!(
            "{}.{payload}",
            B64.encode(format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{kid}"}}"#))
        );
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        mac.update(input.as_bytes());
        format!("{input}.{}", B64.encode(mac.finalize().into_bytes()))
    };
    // A token signed by another instance's key (a kid we do not hold).
    let other = spawn_app_with(
        asymmetric(
            alg,
            keys::read_keys(&dir.path().join("b.pem"), alg, true).unwrap(),
        ),
        false,
    )
    .await;
    other.create_user("forge@example.com", PW).await;
    let foreign = other.access_token("forge@example.com", PW).await;
    let forged = [
        // Algorithm confusion: HMAC keyed with the public key, as bytes,
        // as its base64url, as its JWK.
        hs256(&B64.decode(x).unwrap()),
        hs256(x.as_bytes()),
        hs256(key.to_string().as_bytes()),
        // alg none, with and without the kid.
        format!(
            "{}.{payload}.",
            B64.encode(format!(r#"{{"alg":"none","kid":"{kid}"}}"#))
        ),
        format!("{}.{payload}.", B64.encode(r#"{"alg":"none"}"#)),
        // The real signature, the kid removed.
        format!(
            "{}.{payload}.{}",
            B64.encode(r#"{"alg":"EdDSA","typ":"JWT"}"#),
            token.split('.').nth(2).unwrap()
        ),
        // A key we do not hold: unknown kid.
        foreign.clone(),
        // The same, claiming our kid.
        {
            let mut parts = foreign.split('.');
            let _ = parts.next();
            format!(
                "{}.{}.{}",
                B64.encode(format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{kid}"}}"#)),
                parts.next().unwrap(),
                parts.next().unwrap()
            )
        },
    ];
    for f in &forged {
        let r = app.me(f).await;
        assert_eq!(r.status, 401, "{f}: {:?}", r.body);
    }
    // The independent library agrees about the confusion attempts.
    assert!(verify_independently(&jwks, &forged[0], Utc::now()).is_err());
    assert!(verify_independently(&jwks, &foreign, Utc::now()).is_err());
}

/// `regstack keys …` through the real binary, on a configuration file.
fn keys_command(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    use std::path::Path;
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join(format!("regstack{}", std::env::consts::EXE_SUFFIX));
    let mut cmd = std::process::Command::new(bin);
    cmd.arg("keys")
        .args(args)
        .arg("--config")
        .arg(dir.join("regstack.toml"))
        .current_dir(dir);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("REGSTACK_") {
            cmd.env_remove(&key);
        }
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_keys_command_rotates_lists_and_drops_the_key_file_beside_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("regstack.toml"),
        "jwt_secret = \"operator-secret-operator-secret-0123456789\"\njwt_algorithm = \"EdDSA\"\n",
    )
    .unwrap();
    let (code, _, err) = keys_command(d, &["list"]);
    assert_eq!(code, Some(1), "no key file yet: {err}");
    let (code, out, err) = keys_command(d, &["rotate"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let file = d.join(keys::KEYS_FILE);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let first = keys_command(d, &["list"]).1;
    assert_eq!(first.lines().count(), 1, "{first}");
    let (code, out, _) = keys_command(d, &["rotate"]);
    assert_eq!(code, Some(0));
    assert!(out.contains(first.trim()), "the old key stays: {out}");
    let listed = keys_command(d, &["list"]).1;
    let kids: Vec<&str> = listed.lines().collect();
    assert_eq!(kids.len(), 2);
    assert_eq!(kids[1], first.trim(), "the rotated-out key comes second");
    // The server reads the same file.
    let loaded = keys::read_keys(&file, JwtAlgorithm::EdDSA, false).unwrap();
    assert_eq!(loaded.len(), 2);
    let (code, out, _) = keys_command(d, &["drop-previous"]);
    assert_eq!(code, Some(0));
    assert!(out.contains(first.trim()), "{out}");
    assert_eq!(keys_command(d, &["list"]).1.lines().count(), 1);
    // RS256 keys are never generated; HS256 has no key file.
    std::fs::write(
        d.join("regstack.toml"),
        "jwt_secret = \"operator-secret-operator-secret-0123456789\"\njwt_algorithm = \"RS256\"\njwt_keys_file = \"rsa.pem\"\n",
    )
    .unwrap();
    let (code, _, err) = keys_command(d, &["rotate"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--key"), "{err}");
    std::fs::write(d.join("new.pem"), RSA_PEM).unwrap();
    let (code, out, err) = keys_command(d, &["rotate", "--key", "new.pem"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(d.join("rsa.pem").exists());
    std::fs::write(
        d.join("regstack.toml"),
        "jwt_secret = \"operator-secret-operator-secret-0123456789\"\n",
    )
    .unwrap();
    assert_eq!(keys_command(d, &["rotate"]).0, Some(2));
}
