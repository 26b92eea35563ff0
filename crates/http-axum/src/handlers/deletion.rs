//! Account deletion.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::delete;
use axum::Router;
use regstack_core::Engine;
use secrecy::SecretString;

use super::{message, Answer, Engine_};
use crate::body::{Fields, FromJsonObject, JsonBody, Len};
use crate::extract::{Client, CurrentUser};

/// This capability's routes, relative to the API prefix.
pub fn router() -> Router<Arc<Engine>> {
    Router::new().route("/account", delete(delete_account))
}

/// `DeleteAccountRequest`.
pub struct DeleteAccountRequest {
    current_password: SecretString,
}
impl FromJsonObject for DeleteAccountRequest {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        Some(Self {
            current_password: f.secret("current_password", Len::CURRENT_PASSWORD)?,
        })
    }
}

/// `DELETE /account` → 200.
#[utoipa::path(delete, path = "/account", tag = "account", request_body = DeleteAccountRequest, security(("bearer" = []), ("password" = [])), responses((status = 200, description = "Deleted.", body = crate::wire::MessageResponse), (status = 400, description = "Wrong current password.", body = super::doc::Detail), (status = 404, description = "Account deletion is disabled.", body = super::doc::Detail)))]
pub async fn delete_account(
    State(e): Engine_,
    Client(c): Client,
    user: CurrentUser,
    JsonBody(b): JsonBody<DeleteAccountRequest>,
) -> Answer {
    e.delete_account(&user, &b.current_password, &c).await?;
    message(StatusCode::OK, "Account deleted.")
}
