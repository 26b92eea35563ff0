//! The OpenAPI 3.1 document of the JSON API, generated from the handlers'
//! own `#[utoipa::path]` annotations (each next to its handler), the
//! response types (`ToSchema` derives) and the request readers
//! ([`crate::body::request_schema`]: a request body's schema is what its
//! parser enforces, field for field).
//!
//! Paths are relative to the API prefix, which the document names as its
//! one server, so a host mounting the API elsewhere still gets a correct
//! document. Errors every route can answer are added here once
//! (`CommonErrors`) rather than repeated on each handler.

use std::borrow::Cow;
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

/// `{"detail": "…"}`: every refusal except request validation.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct Detail {
    /// What went wrong, in words a user can be shown.
    detail: String,
}

/// `{"detail": [{type, loc, msg, ctx?}]}`: pydantic's request validation
/// list (422). `input` is never sent (it could echo a secret) but is
/// allowed, as regstack sends it.
pub(crate) struct ValidationError;

fn validation_error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["detail"],
        "properties": {
            "detail": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["type", "loc", "msg"],
                    "properties": {
                        "type": { "type": "string" },
                        "loc": {
                            "type": "array",
                            "items": { "type": ["string", "integer"] }
                        },
                        "msg": { "type": "string" },
                        "ctx": { "type": "object" },
                        "input": {}
                    }
                }
            }
        }
    })
}

fn from_json(v: Value) -> RefOr<Schema> {
    serde_json::from_value(v).unwrap_or_else(|_| RefOr::T(Schema::default()))
}

impl PartialSchema for ValidationError {
    fn schema() -> RefOr<Schema> {
        from_json(validation_error_schema())
    }
}
impl ToSchema for ValidationError {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("HTTPValidationError")
    }
}

/// Makes a request model (a [`crate::body::FromJsonObject`]) a named
/// OpenAPI schema, under regstack's model name. The exact schema is
/// written into the document by [`document`] from the reader itself.
macro_rules! request_models {
    ($($ty:ty => $name:literal),* $(,)?) => {
        $(
            impl utoipa::PartialSchema for $ty {
                fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
                    from_json($crate::body::request_schema::<$ty>())
                }
            }
            impl utoipa::ToSchema for $ty {
                fn name() -> std::borrow::Cow<'static, str> {
                    std::borrow::Cow::Borrowed($name)
                }
            }
        )*
        /// Every request model's name and exact schema.
        fn request_schemas() -> Vec<(&'static str, Value)> {
            vec![$(($name, $crate::body::request_schema::<$ty>())),*]
        }
    };
}

request_models! {
    super::registration::UserCreate => "UserCreate",
    super::TokenBody => "TokenRequest",
    super::EmailBody => "EmailRequest",
    super::sign_in::LoginRequest => "LoginRequest",
    super::sign_in::ForcedPasswordChangeRequest => "ForcedPasswordChangeRequest",
    super::sign_in::TokenForm => "OAuth2PasswordRequestForm",
    super::mfa::MfaConfirmRequest => "MfaConfirmRequest",
    super::mfa::CurrentPasswordBody => "CurrentPasswordRequest",
    super::mfa::TotpConfirmRequest => "TotpConfirmRequest",
    super::account::UpdateProfileRequest => "UpdateProfileRequest",
    super::account::ChangePasswordRequest => "ChangePasswordRequest",
    super::account::ChangeEmailRequest => "ChangeEmailRequest",
    super::deletion::DeleteAccountRequest => "DeleteAccountRequest",
    super::recovery::ResetPasswordRequest => "ResetPasswordRequest",
    super::sessions::RefreshRequest => "RefreshRequest",
    super::phone::PhoneStartRequest => "PhoneStartRequest",
    super::phone::PhoneConfirmRequest => "PhoneConfirmRequest",
    super::oauth::ExchangeRequest => "ExchangeRequest",
    super::admin::AdminUserUpdate => "AdminUserUpdate",
    super::admin::InviteCreate => "InviteCreate",
}

/// Adds the answers every route can give: 422 (and 413, 415) to routes
/// with a body, 401 to routes behind a bearer token, 429 where route
/// limits apply, and a `default` error body for the rest (500, 503, a
/// 404 for a capability that is switched off).
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let detail = |what: &str| {
            ResponseBuilder::new()
                .description(what)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Detail")))
                        .build(),
                )
                .build()
        };
        let invalid = ResponseBuilder::new()
            .description("The request was malformed (pydantic's list of problems).")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("HTTPValidationError")))
                    .build(),
            )
            .build();
        for item in api.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
                &mut item.put,
            ]
            .into_iter()
            .flatten()
            {
                let r = &mut op.responses.responses;
                let mut add = |status: &str, response: utoipa::openapi::Response| {
                    r.entry(status.to_owned())
                        .or_insert_with(|| RefOr::T(response));
                };
                let has_body = op.request_body.is_some();
                let has_query = op.parameters.as_ref().is_some_and(|p| {
                    p.iter()
                        .any(|p| p.parameter_in == utoipa::openapi::path::ParameterIn::Query)
                });
                if has_body || has_query {
                    add("422", invalid.clone());
                }
                if has_body {
                    add("413", detail("The body is over the size limit."));
                    add("415", detail("The body is not of the documented type."));
                }
                if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    add(
                        "401",
                        detail("No valid bearer token (missing, expired, revoked)."),
                    );
                }
                add(
                    "429",
                    detail("A route limit or the sign-in lockout refused; see Retry-After."),
                );
                add(
                    "default",
                    detail("Any other refusal or failure (e.g. 503 with Retry-After)."),
                );
            }
        }
    }
}

/// The bearer token, and the OAuth2 password flow through `POST /token`
/// that gets one (what `/docs`' Authorize button uses).
struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            Flow, HttpAuthScheme, HttpBuilder, OAuth2, Password, Scopes, SecurityScheme,
        };
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        // The token URL is made absolute (prefixed) by `document`.
        components.add_security_scheme(
            "password",
            SecurityScheme::OAuth2(OAuth2::new([Flow::Password(Password::new(
                "token",
                Scopes::new(),
            ))])),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "regstack-rs",
        description = "Account management API (regstack 0.9.3 wire-compatible). \
            Paths are relative to the API prefix (the server URL).",
    ),
    paths(
        super::registration::register,
        super::registration::verify,
        super::registration::resend_verification,
        super::sign_in::login,
        super::sign_in::change_password_to_sign_in,
        super::sign_in::token,
        super::mfa::mfa_confirm,
        super::mfa::totp_setup,
        super::mfa::totp_confirm,
        super::mfa::totp_disable,
        super::mfa::regenerate_backup_codes,
        super::sessions::logout,
        super::sessions::logout_all,
        super::sessions::refresh,
        super::sessions::sessions,
        super::sessions::revoke_session,
        super::account::me,
        super::account::update_me,
        super::account::change_password,
        super::account::change_email,
        super::account::confirm_email_change,
        super::account::revert_email_change,
        super::deletion::delete_account,
        super::recovery::forgot_password,
        super::recovery::reset_password,
        super::phone::phone_start,
        super::phone::phone_confirm,
        super::phone::phone_disable,
        super::oauth::providers,
        super::oauth::exchange,
        super::oauth::start,
        super::oauth::link_start,
        super::oauth::unlink,
        super::oauth::callback,
        super::admin::stats,
        super::admin::list_users,
        super::admin::get_user,
        super::admin::update_user,
        super::admin::delete_user,
        super::admin::resend_verification,
        super::admin::promote_pending,
        super::admin::require_password_change,
        super::admin::list_sessions,
        super::admin::revoke_sessions,
        super::admin::reset_mfa,
        super::admin::unlock,
        super::admin::list_invites,
        super::admin::create_invite,
        super::admin::revoke_invite,
        super::audit::list,
        openapi_json,
    ),
    components(schemas(Detail, ValidationError)),
    modifiers(&Security, &CommonErrors),
)]
struct ApiDoc;

/// The document for an API mounted at `prefix`, as served at
/// `{prefix}/openapi.json`.
pub fn document(prefix: &str) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null);
    // The exact request schemas, from the readers (see `request_models!`).
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for (name, schema) in request_schemas() {
            schemas.insert(name.to_owned(), schema);
        }
        schemas.insert("HTTPValidationError".into(), validation_error_schema());
    }
    let server = if prefix.is_empty() { "/" } else { prefix };
    doc["servers"] = json!([{ "url": server, "description": "the API prefix" }]);
    if let Some(flow) =
        doc.pointer_mut("/components/securitySchemes/password/flows/password/tokenUrl")
    {
        *flow = json!(format!("{prefix}/token"));
    }
    doc
}

/// Every documented operation as `(METHOD, path)`, path relative to the
/// prefix (for the route-coverage test and schemathesis' bounds).
pub fn operations() -> Vec<(String, String)> {
    let doc = document("");
    let mut out = Vec::new();
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        for (path, item) in paths {
            for method in item.as_object().into_iter().flat_map(Map::keys) {
                if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                    out.push((method.to_ascii_uppercase(), path.clone()));
                }
            }
        }
    }
    out
}

/// `GET /openapi.json` → this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "documentation",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API.", content_type = "application/json", body = Object)),
)]
pub async fn openapi_json(axum::Extension(http): super::Http) -> Response {
    static DOC: std::sync::OnceLock<(String, Arc<Value>)> = std::sync::OnceLock::new();
    let (prefix, doc) = DOC.get_or_init(|| {
        (
            http.api_prefix.clone(),
            Arc::new(document(&http.api_prefix)),
        )
    });
    if *prefix == http.api_prefix {
        Json(doc.as_ref()).into_response()
    } else {
        Json(document(&http.api_prefix)).into_response()
    }
}

/// The documentation routes: the document, and the Swagger UI page at
/// `/docs/` (served from the binary: no CDN), whose Authorize button signs
/// in through `POST {prefix}/token`. `/docs` redirects to `/docs/` under
/// the prefix, so the page's relative asset links resolve.
pub fn router(prefix: &str) -> axum::Router<Arc<regstack_core::Engine>> {
    use axum::extract::Path;
    use axum::routing::get;
    use utoipa_swagger_ui::Config;
    let config: Arc<Config<'static>> = Arc::new(
        Config::new([format!("{prefix}/openapi.json")])
            .validator_url("none")
            .persist_authorization(false)
            .try_it_out_enabled(true),
    );
    let home = format!("{prefix}/docs/");
    let index = config.clone();
    axum::Router::new()
        .route("/openapi.json", get(openapi_json))
        .route(
            "/docs",
            get(move || async move { axum::response::Redirect::to(&home) }),
        )
        .route("/docs/", get(move || docs_file(String::new(), index)))
        .route(
            "/docs/{*file}",
            get(move |Path(file): Path<String>| docs_file(file, config)),
        )
}

/// One file of the vendored Swagger UI (its settings file names our
/// document); an unknown file is the API's JSON 404.
async fn docs_file(file: String, config: Arc<utoipa_swagger_ui::Config<'static>>) -> Response {
    match utoipa_swagger_ui::serve(&file, config) {
        Ok(Some(f)) => (
            [(axum::http::header::CONTENT_TYPE, f.content_type)],
            f.bytes.into_owned(),
        )
            .into_response(),
        Ok(None) => crate::ApiError::NotFound.into_response(),
        Err(e) => crate::ApiError::Internal(format!("swagger ui: {e}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `.route("path", method(handler)…)` in this crate's sources, as
    /// `(METHOD, path)`: the router's own route list, read from the code
    /// that builds it (axum cannot list a router's routes).
    fn mounted_routes() -> Vec<(String, String, String)> {
        let mut files = Vec::new();
        let mut dirs = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    // The account pages are HTML for browsers, not part of
                    // the JSON API the document describes.
                    if path.file_name().is_some_and(|n| n == "pages") {
                        continue;
                    }
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        let mut out = Vec::new();
        for file in files {
            // Code only: a doc comment may show a host's own route.
            let src: String = std::fs::read_to_string(&file)
                .unwrap()
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .map(|l| format!("{l}\n"))
                .collect();
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            let mut rest = src.as_str();
            while let Some(at) = rest.find(".route(") {
                rest = &rest[at + ".route(".len()..];
                let Some(path) = rest
                    .trim_start()
                    .strip_prefix('"')
                    .and_then(|p| p.split_once('"'))
                    .map(|(p, _)| p.to_owned())
                else {
                    continue; // not a literal path (e.g. the docs' own routes)
                };
                // The method router: up to this call's closing parenthesis.
                let mut depth = 1;
                let mut end = 0;
                for (i, c) in rest.char_indices() {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                let methods = &rest[..end];
                for m in ["get", "post", "put", "patch", "delete"] {
                    let needle = format!("{m}(");
                    let mut from = 0;
                    while let Some(i) = methods[from..].find(&needle) {
                        let at = from + i;
                        let before = methods[..at].chars().last();
                        if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                            out.push((m.to_ascii_uppercase(), path.clone(), name.clone()));
                        }
                        from = at + needle.len();
                    }
                }
            }
        }
        out
    }

    #[test]
    fn every_mounted_route_is_documented_and_every_documented_route_is_mounted() {
        let documented = operations();
        // The documentation page itself (HTML and its assets).
        let page = ["/docs", "/docs/", "/docs/{*file}"];
        let mounted: Vec<_> = mounted_routes()
            .into_iter()
            .filter(|(_, p, _)| !page.contains(&p.as_str()))
            .collect();
        assert!(
            mounted.len() > 40,
            "the route scan found too little: {mounted:?}"
        );
        let undocumented: Vec<String> = mounted
            .iter()
            .filter(|(m, p, _)| !documented.contains(&(m.clone(), p.clone())))
            .map(|(m, p, file)| {
                format!("{m} {p} (mounted in {file}): add #[utoipa::path] to its handler and list it in handlers/doc.rs")
            })
            .collect();
        assert!(
            undocumented.is_empty(),
            "routes without OpenAPI docs:\n{}",
            undocumented.join("\n")
        );
        let phantom: Vec<&(String, String)> = documented
            .iter()
            .filter(|(m, p)| !mounted.iter().any(|(mm, pp, _)| mm == m && pp == p))
            .collect();
        assert!(
            phantom.is_empty(),
            "documented but not mounted: {phantom:?}"
        );
    }

    #[test]
    fn the_document_is_openapi_3_1_with_exact_request_schemas() {
        let doc = document("/api/auth");
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["servers"][0]["url"], "/api/auth");
        assert_eq!(
            doc["components"]["securitySchemes"]["password"]["flows"]["password"]["tokenUrl"],
            "/api/auth/token"
        );
        let login = &doc["components"]["schemas"]["LoginRequest"];
        assert_eq!(login["additionalProperties"], false);
        assert_eq!(login["required"], json!(["email", "password"]));
        assert_eq!(login["properties"]["password"]["minLength"], 8);
        assert_eq!(login["properties"]["email"]["format"], "email");
        let form = &doc["paths"]["/token"]["post"]["requestBody"]["content"];
        assert!(
            form.get("application/x-www-form-urlencoded").is_some(),
            "{form}"
        );
        // Every $ref points at a schema that exists.
        let text = doc.to_string();
        for part in text.split("\"#/components/schemas/").skip(1) {
            let name = part.split('"').next().unwrap_or_default();
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "dangling $ref {name}"
            );
        }
    }
}
