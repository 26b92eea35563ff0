//! Black-box tests: a real server on port 0, a fresh database per test,
//! driven over HTTP. One binary, modules per area; `model` drives the
//! stores of the same backend directly, with `core`'s machines as oracle.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin;
mod audit;
mod bad_input;
mod browser;
mod embedding;
mod enumeration;
mod faults;
mod invites;
mod jwks;
mod layering;
mod lifecycle;
mod lockout;
mod mfa;
mod model;
mod multi_instance;
mod notices;
mod oauth;
mod observability;
mod openapi;
mod operator_cli;
mod otel;
mod pages;
mod password_policy;
mod phone;
mod rate_limits;
mod security;
mod sessions;
mod support;
mod timing;
