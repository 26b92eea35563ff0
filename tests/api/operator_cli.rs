//! The operator commands through the real `regstack` binary, on the
//! backend under test (`TEST_BACKEND`: SQLite, PostgreSQL or MongoDB) —
//! `crates/server/tests/cli.rs` covers each command's every answer on
//! SQLite; this shows the commands that write to the database do so on
//! every backend: migrate, create-admin, promote, set-password-change,
//! invite create/list/revoke, audit export and purge, read back through
//! the stores and through a server on the same database.

use std::process::{Command, Output, Stdio};

use regstack_ports::Email;
use serde_json::Value;

use crate::support::*;

struct Operator {
    dir: tempfile::TempDir,
    _db: Option<tempfile::TempDir>,
    database_url: String,
    mongodb_database: String,
}

impl Operator {
    async fn new() -> Self {
        let (database_url, mongodb_database, db) = fresh_database().await;
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "base_url = \"http://app.test\"\n\
             database_url = \"{database_url}\"\n\
             mongodb_database = \"{mongodb_database}\"\n\
             jwt_secret = \"operator-secret-operator-secret-0123456789\"\n\
             [password]\n\
             argon2_memory_kib = 19456\n\
             argon2_iterations = 2\n\
             argon2_parallelism = 1\n"
        );
        std::fs::write(dir.path().join("regstack.toml"), config).unwrap();
        Self {
            dir,
            _db: db,
            database_url,
            mongodb_database,
        }
    }

    /// `regstack <args> --config …` with `stdin`, no `REGSTACK_*` inherited.
    fn run(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let config = self.dir.path().join("regstack.toml");
        let mut cmd = Command::new(regstack_binary());
        cmd.args(args)
            .arg("--config")
            .arg(&config)
            .current_dir(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("REGSTACK_") {
                cmd.env_remove(&key);
            }
        }
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    #[track_caller]
    fn ok(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run(args, stdin);
        assert_eq!(
            out.status.code(),
            Some(0),
            "regstack {args:?}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    async fn stores(&self) -> regstack_ports::Stores {
        regstack::open_stores(&self.database_url, &self.mongodb_database)
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn the_operator_commands_write_through_on_this_backend() {
    let op = Operator::new().await;
    op.ok(&["migrate"], "");
    op.ok(
        &["create-admin", "root@example.com", "--password-stdin"],
        "an-admin-password-9\n",
    );
    let stores = op.stores().await;
    let root = stores
        .users
        .find_by_email(&Email::parse("root@example.com").unwrap())
        .await
        .unwrap()
        .expect("create-admin made the account");
    assert!(root.is_superuser && root.is_verified);

    op.ok(&["promote", "root@example.com", "--revoke"], "");
    op.ok(&["set-password-change", "root@example.com"], "");
    let root = stores.users.get(&root.id).await.unwrap().unwrap();
    assert!(!root.is_superuser, "promote --revoke took the right away");
    assert!(root.must_change_password);
    // An unknown account is exit 1, on every backend.
    let out = op.run(&["promote", "nobody@example.com"], "");
    assert_eq!(out.status.code(), Some(1));

    // Invitations: made, listed (never with the code), revoked once.
    let made = op.ok(&["invite", "create", "--email", "bob@example.com"], "");
    let field = |name: &str| {
        made.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in {made}"))
            .to_owned()
    };
    let (code, id) = (field("code"), field("id"));
    let listed = op.ok(&["invite", "list"], "");
    assert!(listed.contains(&id) && !listed.contains(&code), "{listed}");
    op.ok(&["invite", "revoke", &id], "");
    assert_eq!(
        op.run(&["invite", "revoke", &id], "").status.code(),
        Some(1)
    );

    // The audit log holds each command's change, naming the CLI.
    let exported = op.ok(&["audit", "export", "--format", "jsonl"], "");
    let entries: Vec<Value> = exported
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "user_registered",
        "admin_user_updated",
        "admin_password_change_required",
    ] {
        let entry = entries.iter().find(|e| e["kind"] == kind);
        let entry = entry.unwrap_or_else(|| panic!("{kind} missing: {kinds:?}"));
        assert_eq!(entry["detail"]["via"], "cli", "{entry}");
        assert_eq!(entry["email"], "root@example.com");
    }
    assert!(!exported.contains("an-admin-password-9"));
    op.ok(&["purge"], "");
}
