//! Black-box tests: a real server on port 0, a fresh database per test,
//! driven over HTTP. One binary, modules per area.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bad_input;
mod embedding;
mod faults;
mod layering;
mod lifecycle;
mod security;
mod sessions;
mod support;
