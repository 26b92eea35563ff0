//! The providers against stand-ins on 127.0.0.1: generic OpenID Connect
//! (every way an ID token is refused), the Google and Microsoft presets
//! with recorded discovery documents, GitHub's token and user APIs, and
//! the configuration as the server reads it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod config;
mod github;
mod google;
mod microsoft;
mod oidc;
mod support;
