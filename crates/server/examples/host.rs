//! A host app embedding regstack: `cargo run -p regstack --example host`.
//!
//! It exists to show, in one file, everything a service needs to mount
//! regstack in its own axum router: the builder, the API routes, its own
//! routes behind [`CurrentUser`], and a clean stop — Ctrl-C or SIGTERM
//! finishes the requests in flight, then [`RegStack::shutdown`] closes the
//! database so `host-example.db` is left as one file (no `-wal`/`-shm`).
//! Mailed links are logged (console mail with bodies), so the sign-up can
//! be finished from the log, as with `regstack serve`.
use std::io::IsTerminal;

use axum::{routing::get, Router};
use regstack::{Config, CurrentUser, MailTransport, RegStack};

/// Used when `APP_JWT_SECRET` is unset: fine on a laptop, never in
/// production (anyone who reads it can mint tokens).
const DEV_SECRET: &str = "dev-only-secret-set-APP_JWT_SECRET-in-production";
/// Where the example listens; also the base of every mailed link.
const ADDR: &str = "127.0.0.1:3000";

async fn private(me: CurrentUser) -> String {
    format!("you are {}", me.user.email)
}

async fn maybe(me: Option<CurrentUser>) -> String {
    match me {
        Some(me) => format!("hello, {}", me.user.email),
        None => "hello, anonymous".into(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Colour only on a terminal: a log piped to a file stays greppable.
    tracing_subscriber::fmt()
        .with_env_filter("info,sqlx=warn")
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    let secret = std::env::var("APP_JWT_SECRET").unwrap_or_else(|_| DEV_SECRET.into());
    let base_url = format!("http://{ADDR}");
    let config = Config {
        jwt_secret: secret.into(),
        base_url: base_url.clone(),
        ..Config::default()
    };
    let rs = RegStack::builder(config)
        .database_url("sqlite:./host-example.db")
        // development: mailed links appear in the log
        .mail_transport(MailTransport::Console { log_bodies: true })
        .build()
        .await?;
    let app = Router::new()
        .route("/private", get(private))
        .route("/maybe", get(maybe))
        .layer(rs.auth_layer()) // wraps the routes added before it: /private, /maybe
        .merge(rs.router());
    let listener = tokio::net::TcpListener::bind(ADDR).await?;
    println!("host example listening on {base_url}");
    println!("  API:      {base_url}/api/auth (register, login, me, …)");
    println!("  yours:    {base_url}/private (bearer token), {base_url}/maybe");
    println!("  database: ./host-example.db — Ctrl-C to stop");
    let service = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(regstack::shutdown_signal())
        .await?;
    // After the last request: checkpoints SQLite's log into the database.
    rs.shutdown().await;
    Ok(())
}
