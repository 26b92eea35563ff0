//! A host app embedding regstack: `cargo run -p regstack --example host`.
use axum::{routing::get, Router};
use regstack::{Config, CurrentUser, MailTransport, RegStack};

const DEV_SECRET: &str = "dev-only-secret-set-APP_JWT_SECRET-in-production";

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
    tracing_subscriber::fmt().with_env_filter("info").init();
    let secret = std::env::var("APP_JWT_SECRET").unwrap_or_else(|_| DEV_SECRET.into());
    let config = Config {
        jwt_secret: secret.into(),
        base_url: "http://127.0.0.1:3000".into(),
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    let service = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service).await?;
    Ok(())
}
