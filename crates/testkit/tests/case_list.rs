//! The contract case list in `store_contract!` is written by hand; a case
//! missing from it would run on no backend at all. This test reads the case
//! files and the list and fails on any difference, naming it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::Path;

/// Every `pub async fn NAME(stores: Stores)` in `src/contract/*.rs`.
fn cases_defined() -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/contract");
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for chunk in text.split("pub async fn ").skip(1) {
            let Some((name, rest)) = chunk.split_once('(') else {
                continue;
            };
            let params = rest.split(')').next().unwrap_or("");
            if params.trim().trim_end_matches(',') == "stores: Stores" {
                found.insert(name.trim().to_owned());
            }
        }
    }
    found
}

/// The identifiers listed in `__store_contract_cases!`.
fn cases_listed() -> BTreeSet<String> {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let start = lib
        .find("$crate::__store_contract_tests!($mode $factory;")
        .expect("the case list in lib.rs");
    let list = &lib[start..];
    let list = &list[list.find(';').unwrap() + 1..list.find(");").unwrap()];
    list.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .map(|l| l.trim_end_matches(',').to_owned())
        .collect()
}

#[test]
fn every_contract_case_is_listed_and_every_listed_case_exists() {
    let defined = cases_defined();
    let listed = cases_listed();
    assert!(defined.len() > 40, "found only {} cases", defined.len());
    let unlisted: Vec<_> = defined.difference(&listed).collect();
    let unknown: Vec<_> = listed.difference(&defined).collect();
    assert!(
        unlisted.is_empty(),
        "contract cases no backend runs (add them to __store_contract_cases! in \
         crates/testkit/src/lib.rs): {unlisted:?}"
    );
    assert!(unknown.is_empty(), "listed but not defined: {unknown:?}");
}
