//! `regstack invite create|list|revoke` through the real binary, against
//! a server started from the same configuration with
//! `registration_mode = "invite"`: the printed code registers once, the
//! list never shows a code, a revoked invitation admits nobody, and the
//! exit codes are 0 done, 1 failed, 2 usage or configuration.

use std::process::Output;

use serde_json::{json, Value};

use super::{assert_code, initialised, regstack, stderr, stdout, Server};

/// `init` on a SQLite file, then the mode switched to invitations.
fn initialised_invite_only() -> tempfile::TempDir {
    let dir = initialised();
    let toml = dir.path().join("regstack.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    assert!(text.contains("registration_mode = \"open\""), "{text}");
    std::fs::write(
        &toml,
        text.replace(
            "registration_mode = \"open\"",
            "registration_mode = \"invite\"",
        ),
    )
    .unwrap();
    dir
}

async fn register(server: &Server, email: &str, code: Option<&str>) -> (u16, Value) {
    let mut body = json!({ "email": email, "password": "invited-password-1" });
    if let Some(code) = code {
        body["invite_code"] = json!(code);
    }
    let resp = reqwest::Client::new()
        .post(format!("{}/api/auth/register", server.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// `code: …` and `id: …` from `invite create`'s output.
fn created(out: &Output) -> (String, String) {
    let text = stdout(out);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} line:\n{text}"))
            .trim()
            .to_owned()
    };
    (field("code:"), field("id:"))
}

#[tokio::test]
async fn invite_create_list_and_revoke_drive_invite_only_registration() {
    let dir = initialised_invite_only();
    let d = dir.path();
    let out = regstack(
        d,
        &[
            "invite",
            "create",
            "--email",
            "Guest@Example.com",
            "--expires-in",
            "7d",
            "--note",
            "for the guest",
        ],
        "",
    );
    assert_code(&out, 0);
    let (code, id) = created(&out);
    assert!(stdout(&out).contains("email: guest@example.com"));

    let out = regstack(d, &["invite", "list"], "");
    assert_code(&out, 0);
    let list = stdout(&out);
    assert!(list.contains(&id) && list.contains("open"), "{list}");
    assert!(list.contains("guest@example.com") && list.contains("for the guest"));
    assert!(!list.contains(&code), "the list never shows a code");

    let server = Server::start(d, &["serve", "--port", "0"]);
    let (status, body) = register(&server, "guest@example.com", None).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = register(&server, "other@example.com", Some(&code)).await;
    assert_eq!(status, 403, "bound to the guest");
    let (status, body) = register(&server, "guest@example.com", Some(&code)).await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = register(&server, "guest@example.com", Some(&code)).await;
    assert_eq!(status, 403, "spent");

    let out = regstack(d, &["invite", "list"], "");
    assert_code(&out, 0);
    assert!(!stdout(&out).contains(&id), "{}", stdout(&out));
    let out = regstack(d, &["invite", "list", "--all"], "");
    assert_code(&out, 0);
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.contains(&id) && l.contains("used")),
        "{}",
        stdout(&out)
    );

    // A revoked invitation admits nobody; revoking twice is exit 1.
    let out = regstack(d, &["invite", "create", "--expires-in", "3600"], "");
    assert_code(&out, 0);
    let (code2, id2) = created(&out);
    assert_code(&regstack(d, &["invite", "revoke", &id2], ""), 0);
    let out = regstack(d, &["invite", "revoke", &id2], "");
    assert_code(&out, 1);
    assert!(stderr(&out).contains(&id2), "{}", stderr(&out));
    let (status, _) = register(&server, "late@example.com", Some(&code2)).await;
    assert_eq!(status, 403);
    assert_code(&regstack(d, &["invite", "revoke", &id], ""), 1);
}

#[test]
fn invite_usage_and_configuration_errors_are_exit_2() {
    let dir = initialised_invite_only();
    let d = dir.path();
    for bad in [
        &["invite", "create", "--expires-in", "7w"][..],
        &["invite", "create", "--expires-in", "91d"],
        &["invite", "create", "--expires-in", "30"],
        &["invite", "create", "--email", "not an address"],
        &["invite", "create", "--note", "bell\u{7}"],
        &["invite"],
        &["invite", "revoke"],
    ] {
        let out = regstack(d, bad, "");
        assert_code(&out, 2);
    }
    assert!(!d.join("app.db").exists(), "usage errors touch no database");
    let out = regstack(d, &["invite", "--help"], "");
    assert_code(&out, 0);
    assert!(stdout(&out).contains("Exit codes: 0"), "{}", stdout(&out));

    // regstack's allow_registration contradicting registration_mode stops
    // every command that reads the configuration.
    let toml = d.join("regstack.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, format!("allow_registration = false\n{text}")).unwrap();
    let out = regstack(d, &["invite", "list"], "");
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("registration_mode") && stderr(&out).contains("allow_registration"),
        "{}",
        stderr(&out)
    );
}
