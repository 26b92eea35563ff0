//! Request bodies: content type, size, JSON syntax and field rules, with
//! regstack's (pydantic's) 422 shapes.
//!
//! Every request model refuses unknown fields (regstack's `extra=forbid`,
//! which also stops mass assignment) and checks types strictly: an object
//! or array where a string belongs is a 422, so operator-injection payloads
//! such as `{"$ne": null}` never reach a store. Secret fields go straight
//! into `SecretString` and are never echoed back.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use regstack_core::{AuthError, Engine};
use regstack_ports::{DisableReason, DisplayName, Email, NewPassword, Timestamp};
use secrecy::SecretString;
use serde_json::{json, Map, Value};

use crate::error::{validation_entry, ApiError};
use crate::settings::HttpSettings;

/// A request model read from a JSON object.
pub trait FromJsonObject: Sized {
    /// Reads the fields; problems are collected into `obj`.
    fn read(obj: &mut Fields<'_>) -> Option<Self>;
}

/// A validated JSON body.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

/// How a request declares its body.
enum BodyType {
    /// `application/json` or `application/…+json`.
    Json,
    /// No `Content-Type` at all (regstack's clients may send none).
    Missing,
    /// Anything else: 415.
    Other,
}

fn body_type(req: &Request) -> BodyType {
    let Some(v) = req.headers().get(header::CONTENT_TYPE) else {
        return BodyType::Missing;
    };
    let json = v
        .to_str()
        .ok()
        .and_then(|s| s.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        });
    if json {
        BodyType::Json
    } else {
        BodyType::Other
    }
}

/// Whether a body without a `Content-Type` comes from another site. A page
/// elsewhere can send exactly that (`fetch` with `mode: "no-cors"`) without
/// a CORS preflight, so such a body is read as JSON only when the browser
/// says the request is not cross-site: an `Origin` that is
/// neither ours nor a configured CORS origin (`null` included), or
/// `Sec-Fetch-Site: cross-site`, refuses it. Clients that send no `Origin`
/// (curl, servers, regstack's own clients) keep regstack parity.
fn untyped_body_is_cross_site(req: &Request) -> bool {
    let headers = req.headers();
    let engine = req.extensions().get::<Arc<Engine>>();
    let own = engine.map_or("", |e| crate::cookie::origin_of(e.config().base()));
    if !crate::cookie::is_cross_site(headers, own) {
        return false;
    }
    // A CORS-allowed origin is trusted like our own.
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let http = req.extensions().get::<Arc<HttpSettings>>();
    let allowed_origin = match (origin, http) {
        (Some(o), Some(h)) => h.allows_origin(o),
        _ => false,
    };
    !allowed_origin
}

fn byte_offset(src: &[u8], line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (i, l) in src.split(|b| *b == b'\n').enumerate() {
        if i + 1 == line {
            return offset + column.saturating_sub(1);
        }
        offset += l.len() + 1;
    }
    src.len()
}

/// Parses bytes into a validated model (shared by the extractor and tests).
pub fn parse<T: FromJsonObject>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::Validation(vec![validation_entry(
            "missing",
            &[json!("body")],
            "Field required",
            None,
        )]));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::Validation(vec![validation_entry(
            "json_invalid",
            &[
                json!("body"),
                json!(if e.is_eof() {
                    bytes.len()
                } else {
                    byte_offset(bytes, e.line(), e.column())
                }),
            ],
            "JSON decode error",
            Some(json!({ "error": e.to_string() })),
        )])
    })?;
    let Value::Object(map) = value else {
        return Err(ApiError::Validation(vec![validation_entry(
            "model_attributes_type",
            &[json!("body")],
            "Input should be a valid dictionary or object to extract fields from",
            None,
        )]));
    };
    read_map(&map)
}

/// Reads a model from an object's fields, with every problem listed.
fn read_map<T: FromJsonObject>(map: &Map<String, Value>) -> Result<T, ApiError> {
    let mut fields = Fields {
        map,
        errors: Vec::new(),
        known: Vec::new(),
        shape: None,
    };
    let model = T::read(&mut fields);
    fields.forbid_extra();
    match (model, fields.errors.is_empty()) {
        (Some(m), true) => Ok(m),
        _ => Err(ApiError::Validation(fields.errors)),
    }
}

async fn json_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    match body_type(&req) {
        BodyType::Json => {}
        BodyType::Missing if untyped_body_is_cross_site(&req) => {
            return Err(AuthError::CrossSiteRefused.into());
        }
        BodyType::Missing => {}
        BodyType::Other => return Err(ApiError::UnsupportedMediaType),
    }
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::Internal(rejection.body_text())
        }
    })
}

impl<S: Send + Sync, T: FromJsonObject> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        parse(&json_bytes(req, state).await?).map(JsonBody)
    }
}

/// A validated `application/x-www-form-urlencoded` body (the OAuth2
/// password form of `POST /token`), read by the same field rules as a
/// JSON body: every value is a string, unknown fields are refused.
///
/// A form post is a request any page can make without a CORS preflight,
/// so one that the browser marks as cross-site (an `Origin` that is
/// neither ours nor a configured CORS origin, or `Sec-Fetch-Site:
/// cross-site`) is refused before the body is read.
#[derive(Debug)]
pub struct FormBody<T>(pub T);

/// Whether a `Content-Type` names a form body.
fn is_form(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Whether a form post comes from another site's page: the browser says
/// `Sec-Fetch-Site: cross-site`, or sends an `Origin` that is neither this
/// server as the request addresses it (`Host`: the `/docs` page served
/// here), nor `base_url`'s origin, nor a configured CORS origin.
fn form_is_cross_site(req: &Request) -> bool {
    let headers = req.headers();
    let fetch_cross = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"));
    if fetch_cross {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let authority = origin.split_once("://").map(|(_, a)| a);
    if host.is_some() && authority.is_some_and(|a| Some(a) == host.map(str::trim)) {
        return false;
    }
    untyped_body_is_cross_site(req)
}

/// Parses form bytes into a validated model (shared by the extractor and
/// tests). A repeated field keeps its last value.
pub fn parse_form<T: FromJsonObject>(bytes: &[u8]) -> Result<T, ApiError> {
    let map: Map<String, Value> = url::form_urlencoded::parse(bytes)
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    read_map(&map)
}

impl<S: Send + Sync, T: FromJsonObject> FromRequest<S> for FormBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_form(&req) {
            return Err(ApiError::FormExpected);
        }
        if form_is_cross_site(&req) {
            return Err(AuthError::CrossSiteRefused.into());
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::Internal(rejection.body_text())
            }
        })?;
        parse_form(&bytes).map(FormBody)
    }
}

/// A JSON body that may be absent altogether (an empty body is `None`;
/// anything else must be a valid model).
#[derive(Debug)]
pub struct OptionalJsonBody<T>(pub Option<T>);

impl<S: Send + Sync, T: FromJsonObject> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = json_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(None));
        }
        parse(&bytes).map(|m| OptionalJsonBody(Some(m)))
    }
}

/// The fields of one JSON object being read, with the errors found so far.
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    errors: Vec<Value>,
    known: Vec<&'static str>,
    /// When describing rather than reading ([`request_schema`]): each
    /// field's JSON Schema and whether it is required, in reading order.
    shape: Option<Vec<(&'static str, Value, bool)>>,
}

/// The JSON Schema (2020-12, as OpenAPI 3.1 uses it) of the bodies `T`
/// accepts, taken from `T`'s own reader: every reader runs once on an
/// empty object while each field rule describes itself, so the published
/// schema cannot drift from what the parser enforces. Unknown fields are
/// refused (`additionalProperties: false`), as [`parse`] does.
pub fn request_schema<T: FromJsonObject>() -> Value {
    let map = Map::new();
    let mut fields = Fields {
        map: &map,
        errors: Vec::new(),
        known: Vec::new(),
        shape: Some(Vec::new()),
    };
    let _ = T::read(&mut fields);
    let shape = fields.shape.unwrap_or_default();
    let required: Vec<&str> = shape.iter().filter(|f| f.2).map(|f| f.0).collect();
    let properties: Map<String, Value> = shape
        .into_iter()
        .map(|(name, schema, _)| (name.to_owned(), schema))
        .collect();
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

fn string_schema(len: Len, nullable: bool) -> Value {
    let mut s =
        json!({ "type": if nullable { json!(["string", "null"]) } else { json!("string") } });
    if let Some(min) = len.min {
        s["minLength"] = json!(min);
    }
    if let Some(max) = len.max {
        s["maxLength"] = json!(max);
    }
    s
}

/// Length rule of a string field, in Unicode code points (as pydantic).
#[derive(Clone, Copy, Debug)]
pub struct Len {
    /// Minimum.
    pub min: Option<usize>,
    /// Maximum.
    pub max: Option<usize>,
}

impl Len {
    /// No limits.
    pub const ANY: Len = Len {
        min: None,
        max: None,
    };
    /// regstack's password rule ([`NewPassword`]).
    pub const PASSWORD: Len = Len {
        min: Some(NewPassword::MIN_CHARS),
        max: Some(NewPassword::MAX_CHARS),
    };
    /// Display names ([`DisplayName`]).
    pub const NAME: Len = Len {
        min: None,
        max: Some(DisplayName::MAX_CHARS),
    };
    /// Opaque tokens (IN-5).
    pub const TOKEN: Len = Len {
        min: None,
        max: Some(regstack_core::tokens::MAX_TOKEN_CHARS),
    };
    /// A current password being re-checked: bounded so nothing huge is hashed.
    pub const CURRENT_PASSWORD: Len = Len {
        min: None,
        max: Some(1024),
    };
}

impl Fields<'_> {
    /// Records a field's schema when describing; the outermost rule that
    /// names a field describes it (a rule built on another keeps its own).
    fn describe(&mut self, name: &'static str, required: bool, schema: impl FnOnce() -> Value) {
        if let Some(shape) = &mut self.shape {
            if !shape.iter().any(|f| f.0 == name) {
                shape.push((name, schema(), required));
            }
        }
    }

    fn loc(name: &str) -> [Value; 2] {
        [json!("body"), json!(name)]
    }

    fn push(&mut self, kind: &str, name: &str, msg: impl Into<String>, ctx: Option<Value>) {
        self.errors
            .push(validation_entry(kind, &Self::loc(name), msg, ctx));
    }

    fn check_len(&mut self, name: &str, s: &str, len: Len) -> bool {
        let n = s.chars().count();
        if let Some(min) = len.min {
            if n < min {
                let plural = if min == 1 { "" } else { "s" };
                self.push(
                    "string_too_short",
                    name,
                    format!("String should have at least {min} character{plural}"),
                    Some(json!({ "min_length": min })),
                );
                return false;
            }
        }
        if let Some(max) = len.max {
            if n > max {
                let plural = if max == 1 { "" } else { "s" };
                self.push(
                    "string_too_long",
                    name,
                    format!("String should have at most {max} character{plural}"),
                    Some(json!({ "max_length": max })),
                );
                return false;
            }
        }
        true
    }

    fn raw(&mut self, name: &'static str) -> Option<&Value> {
        self.known.push(name);
        self.map.get(name)
    }

    fn string_value(&mut self, name: &'static str, required: bool) -> Option<Option<String>> {
        match self.raw(name).cloned() {
            None if required => {
                self.push("missing", name, "Field required", None);
                None
            }
            None => Some(None),
            Some(Value::String(s)) => Some(Some(s)),
            Some(_) => {
                self.push("string_type", name, "Input should be a valid string", None);
                None
            }
        }
    }

    /// A required string.
    pub fn string(&mut self, name: &'static str, len: Len) -> Option<String> {
        self.describe(name, true, || string_schema(len, false));
        let s = self.string_value(name, true)??;
        self.check_len(name, &s, len).then_some(s)
    }

    /// An optional secret string: `None` when absent or null.
    pub fn optional_secret(
        &mut self,
        name: &'static str,
        len: Len,
    ) -> Option<Option<SecretString>> {
        Some(
            self.optional_nullable(name, len)?
                .flatten()
                .map(SecretString::from),
        )
    }

    /// A required secret string (password, token): never echoed.
    pub fn secret(&mut self, name: &'static str, len: Len) -> Option<SecretString> {
        self.string(name, len).map(SecretString::from)
    }

    /// An optional, nullable string: `None` = absent, `Some(None)` = null.
    pub fn optional_nullable(
        &mut self,
        name: &'static str,
        len: Len,
    ) -> Option<Option<Option<String>>> {
        self.describe(name, false, || string_schema(len, true));
        match self.raw(name).cloned() {
            None => Some(None),
            Some(Value::Null) => Some(Some(None)),
            Some(Value::String(s)) => self.check_len(name, &s, len).then_some(Some(Some(s))),
            Some(_) => {
                self.push("string_type", name, "Input should be a valid string", None);
                None
            }
        }
    }

    /// An optional, nullable boolean: `None` when absent or null. Strict:
    /// only JSON `true` / `false` (no `"yes"`, no `1`).
    pub fn optional_bool(&mut self, name: &'static str) -> Option<Option<bool>> {
        self.describe(name, false, || json!({ "type": ["boolean", "null"] }));
        match self.raw(name).cloned() {
            None | Some(Value::Null) => Some(None),
            Some(Value::Bool(b)) => Some(Some(b)),
            Some(_) => {
                self.push("bool_type", name, "Input should be a valid boolean", None);
                None
            }
        }
    }

    /// An optional string that must be one of `allowed` (pydantic's
    /// `Literal`): `None` when absent or null, a `literal_error` naming the
    /// choices otherwise.
    pub fn optional_choice(
        &mut self,
        name: &'static str,
        allowed: &[&'static str],
    ) -> Option<Option<&'static str>> {
        self.describe(name, false, || {
            let mut choices: Vec<Value> = allowed.iter().map(|a| json!(a)).collect();
            choices.push(Value::Null);
            json!({ "enum": choices })
        });
        let longest = allowed.iter().map(|a| a.chars().count()).max();
        let given = self.optional_nullable(
            name,
            Len {
                min: None,
                max: longest,
            },
        )?;
        let Some(given) = given.flatten() else {
            return Some(None);
        };
        if let Some(found) = allowed.iter().find(|a| **a == given) {
            return Some(Some(*found));
        }
        let quoted: Vec<String> = allowed.iter().map(|a| format!("'{a}'")).collect();
        let choices = match quoted.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        self.push(
            "literal_error",
            name,
            format!("Input should be {choices}"),
            Some(json!({ "expected": choices })),
        );
        None
    }

    /// A password to set ([`NewPassword`]): regstack's 422 when its length
    /// is out of range.
    pub fn new_password(&mut self, name: &'static str) -> Option<NewPassword> {
        let s = self.string(name, Len::PASSWORD)?;
        // The length was checked against the same constants just now.
        NewPassword::parse(SecretString::from(s)).ok()
    }

    /// A display name ([`DisplayName`]): optional, nullable; too long is
    /// pydantic's `string_too_long`, a control character a `value_error`.
    pub fn full_name(&mut self, name: &'static str) -> Option<Option<Option<DisplayName>>> {
        self.describe(name, false, || string_schema(Len::NAME, true));
        match self.optional_nullable(name, Len::NAME)? {
            None => Some(None),
            Some(None) => Some(Some(None)),
            Some(Some(s)) => match DisplayName::parse(&s) {
                Ok(n) => Some(Some(Some(n))),
                // The length was refused above with pydantic's own shape, so
                // what is left is a control character.
                Err(_) => {
                    self.push(
                        "value_error",
                        name,
                        "Value error, must not contain control characters",
                        Some(json!({ "error": {} })),
                    );
                    None
                }
            },
        }
    }

    /// An administrator's reason for a disabling ([`DisableReason`]):
    /// `None` when absent or null; too long is pydantic's
    /// `string_too_long`, a control character a `value_error`.
    pub fn disable_reason(&mut self, name: &'static str) -> Option<Option<String>> {
        let len = Len {
            min: None,
            max: Some(DisableReason::MAX_CHARS),
        };
        let Some(s) = self.optional_nullable(name, len)?.flatten() else {
            return Some(None);
        };
        match DisableReason::parse(&s) {
            Ok(r) => Some(Some(r.into_string())),
            // The length was refused above with pydantic's own shape.
            Err(_) => {
                self.push(
                    "value_error",
                    name,
                    "Value error, must not contain control characters",
                    Some(json!({ "error": {} })),
                );
                None
            }
        }
    }

    /// An optional, nullable instant: ISO 8601 / RFC 3339 with a UTC
    /// offset (`2026-12-31T23:59:59Z`, `…+00:00`, or any other offset —
    /// each names one instant). `None` when absent or null. A time without
    /// an offset is refused: it names no instant.
    pub fn optional_instant(&mut self, name: &'static str) -> Option<Option<Timestamp>> {
        self.describe(
            name,
            false,
            || json!({ "type": ["string", "null"], "format": "date-time", "maxLength": 64 }),
        );
        let Some(s) = self
            .optional_nullable(
                name,
                Len {
                    min: None,
                    max: Some(64),
                },
            )?
            .flatten()
        else {
            return Some(None);
        };
        match chrono::DateTime::parse_from_rfc3339(s.trim()) {
            Ok(t) => Some(Some(t.with_timezone(&chrono::Utc))),
            Err(_) => {
                self.push(
                    "datetime_from_date_parsing",
                    name,
                    "Input should be an ISO 8601 instant with a UTC offset, e.g. 2026-12-31T23:59:59Z",
                    None,
                );
                None
            }
        }
    }

    /// An optional, nullable email address, canonicalised: `None` when
    /// absent or null.
    pub fn optional_email(&mut self, name: &'static str) -> Option<Option<Email>> {
        self.describe(
            name,
            false,
            || json!({ "type": ["string", "null"], "format": "email" }),
        );
        let Some(s) = self.optional_nullable(name, Len::ANY)?.flatten() else {
            return Some(None);
        };
        match Email::parse(&s) {
            Ok(e) => Some(Some(e)),
            Err(reason) => {
                self.push(
                    "value_error",
                    name,
                    format!("value is not a valid email address: {reason}"),
                    Some(json!({ "reason": reason.to_string() })),
                );
                None
            }
        }
    }

    /// An optional, nullable integer within `min..=max`: `None` when
    /// absent or null. Strict: a JSON integer (no `"60"`, no `60.0`).
    pub fn optional_int(&mut self, name: &'static str, min: u64, max: u64) -> Option<Option<u64>> {
        self.describe(
            name,
            false,
            || json!({ "type": ["integer", "null"], "minimum": min, "maximum": max }),
        );
        let n = match self.raw(name).cloned() {
            None | Some(Value::Null) => return Some(None),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {
                n.as_i64().map_or(i128::MAX, i128::from)
            }
            Some(_) => {
                self.push("int_type", name, "Input should be a valid integer", None);
                return None;
            }
        };
        if n < i128::from(min) {
            self.push(
                "greater_than_equal",
                name,
                format!("Input should be greater than or equal to {min}"),
                Some(json!({ "ge": min })),
            );
            return None;
        }
        if n > i128::from(max) {
            self.push(
                "less_than_equal",
                name,
                format!("Input should be less than or equal to {max}"),
                Some(json!({ "le": max })),
            );
            return None;
        }
        Some(u64::try_from(n).ok())
    }

    /// A required email address, canonicalised.
    pub fn email(&mut self, name: &'static str) -> Option<Email> {
        self.describe(
            name,
            true,
            || json!({ "type": "string", "format": "email" }),
        );
        let s = self.string_value(name, true)??;
        match Email::parse(&s) {
            Ok(e) => Some(e),
            Err(reason) => {
                self.push(
                    "value_error",
                    name,
                    format!("value is not a valid email address: {reason}"),
                    Some(json!({ "reason": reason.to_string() })),
                );
                None
            }
        }
    }

    fn forbid_extra(&mut self) {
        let extra: Vec<String> = self
            .map
            .keys()
            .filter(|k| !self.known.contains(&k.as_str()))
            .cloned()
            .collect();
        for k in extra {
            self.errors.push(validation_entry(
                "extra_forbidden",
                &[json!("body"), json!(k)],
                "Extra inputs are not permitted",
                None,
            ));
        }
    }
}

/// Runs every reader of a model even after a failure, so one response lists
/// every problem (as pydantic does).
#[macro_export]
macro_rules! read_all {
    ($($name:ident = $e:expr;)*) => {
        $(let $name = $e;)*
        $(let $name = $name?;)*
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Login {
        email: Email,
        #[allow(dead_code)]
        password: SecretString,
    }
    impl FromJsonObject for Login {
        fn read(f: &mut Fields<'_>) -> Option<Self> {
            read_all! {
                email = f.email("email");
                password = f.secret("password", Len::PASSWORD);
            }
            Some(Self { email, password })
        }
    }

    fn errors(body: &str) -> Value {
        match parse::<Login>(body.as_bytes()) {
            Err(ApiError::Validation(e)) => Value::Array(e),
            other => panic!("expected 422, got {other:?}"),
        }
    }

    #[test]
    fn missing_fields_are_listed_in_model_order() {
        let e = errors("{}");
        assert_eq!(e[0]["loc"], json!(["body", "email"]));
        assert_eq!(e[0]["type"], "missing");
        assert_eq!(e[1]["loc"], json!(["body", "password"]));
    }

    #[test]
    fn bad_email_and_short_password_are_both_reported_without_input() {
        let e = errors(r#"{"email":"not-an-email","password":"short"}"#);
        assert_eq!(
            e[0]["msg"],
            "value is not a valid email address: An email address must have an @-sign."
        );
        assert_eq!(e[1]["type"], "string_too_short");
        assert_eq!(e[1]["ctx"], json!({ "min_length": 8 }));
        assert!(e[1].get("input").is_none());
    }

    #[test]
    fn unknown_fields_and_operator_objects_are_refused() {
        let e = errors(r#"{"email":"a@example.com","password":"long-enough","remember_me":true}"#);
        assert_eq!(e[0]["type"], "extra_forbidden");
        assert_eq!(e[0]["loc"], json!(["body", "remember_me"]));
        let e = errors(r#"{"email":{"$ne":null},"password":{"$gt":""}}"#);
        assert_eq!(e[0]["type"], "string_type");
        assert_eq!(e[1]["type"], "string_type");
    }

    #[test]
    fn malformed_json_reports_the_byte_offset() {
        let e = errors("{\"email\": ");
        assert_eq!(e[0]["type"], "json_invalid");
        assert_eq!(e[0]["loc"], json!(["body", 10]));
    }

    #[test]
    fn empty_body_and_non_objects() {
        assert_eq!(
            errors("")[0],
            json!({"type":"missing","loc":["body"],"msg":"Field required"})
        );
        assert_eq!(errors("[1]")[0]["type"], "model_attributes_type");
    }

    #[test]
    fn emails_are_canonicalised() {
        let l = parse::<Login>(br#"{"email":"  Alice@Example.COM ","password":"long-enough"}"#)
            .unwrap();
        assert_eq!(l.email.as_str(), "alice@example.com");
    }
}
