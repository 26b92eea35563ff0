//! A host protects its own routes with `CurrentUser` and
//! `Option<CurrentUser>`, next to the mounted regstack router.

use axum::routing::get;
use axum::Router;
use regstack::CurrentUser;
use reqwest::StatusCode;

use crate::support::*;

#[tokio::test]
async fn host_routes_see_the_signed_in_user() {
    let app = spawn_app().await;
    app.create_user("host@example.com", PW).await;
    let token = app.access_token("host@example.com", PW).await;

    let host = Router::new()
        .route(
            "/private",
            get(|u: CurrentUser| async move { format!("hello {}", u.user.email) }),
        )
        .route(
            "/maybe",
            get(|u: Option<CurrentUser>| async move {
                u.map_or_else(
                    || "hello stranger".to_owned(),
                    |u| format!("hello {}", u.user.email),
                )
            }),
        )
        .layer(app.rs.auth_layer())
        .merge(app.rs.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, host).await.unwrap() });
    let url = |p: &str| format!("http://{addr}{p}");
    let http = reqwest::Client::new();

    let r = http
        .get(url("/private"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "hello host@example.com");
    let r = http.get(url("/private")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["detail"],
        "Authentication required."
    );
    let r = http.get(url("/maybe")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "hello stranger");
    let r = http
        .get(url("/maybe"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "hello host@example.com");
    // A dead token is refused, not downgraded to anonymous.
    let r = http
        .get(url("/maybe"))
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The regstack API is mounted alongside.
    let r = http
        .get(url("/api/auth/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}
