//! Every decision about whether an account may be used asks
//! `User::is_active_at(now)`: a timed disabling ends at its instant whether
//! or not housekeeping wrote the re-enabling down yet. A bare read of the
//! stored flag in `core`'s code (tests aside) would keep such an account
//! locked out past its end, so this test refuses one.

#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            out.push(path);
        }
    }
}

#[test]
fn core_decides_on_activity_only_through_is_active_at() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    assert!(files.len() > 10, "found the sources");
    let mut bare = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read source");
        // Unit tests build accounts with either flag; only the code counts.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (n, line) in code.lines().enumerate() {
            let mut rest = line;
            while let Some(at) = rest.find(".is_active") {
                let before = &rest[..at];
                let after = &rest[at + ".is_active".len()..];
                let is_method = after.starts_with("_at");
                // An administrator's change names the flag it sets.
                let is_change = before.ends_with("change");
                if !is_method && !is_change {
                    bare.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
                rest = after;
            }
        }
    }
    assert!(
        bare.is_empty(),
        "read the flag through User::is_active_at(now):\n{}",
        bare.join("\n")
    );
}
