//! The one list of store calls ([`every_store_call`]) against the fake's
//! operation names: the same names in the same order, and each call really
//! is the operation it is named after.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use regstack_ports::StoreError;
use regstack_testkit::calls::every_store_call;
use regstack_testkit::memory::OPERATIONS;
use regstack_testkit::{memory_stores, memory_stores_with_faults};

#[tokio::test]
async fn every_store_call_names_every_operation_once_in_order() {
    let mut names = Vec::new();
    for call in every_store_call(&memory_stores()) {
        names.push(call.await.0);
    }
    assert_eq!(names, OPERATIONS);
}

/// For each operation: make only it fail, run every call — exactly the
/// call of that name reports the injected fault.
#[tokio::test]
async fn each_call_is_the_operation_it_is_named_after() {
    for op in OPERATIONS {
        let (stores, faults) = memory_stores_with_faults();
        faults.fail_always(op);
        let mut failed = Vec::new();
        for call in every_store_call(&stores) {
            if let (name, Err(StoreError::Unavailable(_))) = call.await {
                failed.push(name);
            }
        }
        assert_eq!(failed, [*op], "failing only {op}");
    }
}
