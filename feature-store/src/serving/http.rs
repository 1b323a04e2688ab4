//! The JSON twin of the gRPC API: `POST /v1/features/online`.
//!
//! Same authentication headers as ingestion (`Authorization: Bearer <api key>`, `X-Client-Id`),
//! `Content-Type: application/json`, a body of at most [`MAX_BODY_BYTES`] mirroring the protobuf
//! request:
//!
//! ```json
//! {"features": ["user_activity:orders_30d", "customer_profile:*"],
//!  "entities": {"user_id": ["u-1", "u-2"]},
//!  "full_feature_names": false}
//! ```
//!
//! (or `"feature_service": "churn"` instead of `features`). Entity values are JSON strings,
//! integers or booleans, as the entity's key type says. The answer mirrors the protobuf response:
//!
//! ```json
//! {"feature_names": ["orders_30d", …],
//!  "results": [{"values": [3, null], "statuses": ["PRESENT", "MISSING"],
//!               "event_timestamps": ["2025-03-01T10:00:00.000000Z", null]}, …]}
//! ```
//!
//! Values are typed JSON (bool, number, string; timestamps and event times as RFC 3339 with
//! microseconds, UTC; non-finite floats as null). Errors answer with the HTTP status of their
//! class and the collector's body, `{"error": {"code": "not_found", "message": "…"}}`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, SecondsFormat};
use livora_common::ErrorCode;
use livora_ingest::ClientStore;
use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value as Json;

use super::auth::authenticate;
use super::keys::KeyValue;
use super::server::{EntityColumn, FeatureColumn, FeatureServer, FeatureStatus, OnlineFeatures, Selection};
use crate::error::Error;
use crate::value::Value;

/// The largest request body accepted (413 above it).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

struct HttpState {
    server: Arc<FeatureServer>,
    clients: Arc<ClientStore>,
}

/// The route `POST /v1/features/online`, to merge into an HTTP server's router.
pub fn router(server: Arc<FeatureServer>, clients: Arc<ClientStore>) -> Router {
    Router::new().route("/v1/features/online", post(post_online)).with_state(Arc::new(HttpState { server, clients }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRequest {
    #[serde(default)]
    features: Option<Vec<String>>,
    #[serde(default)]
    feature_service: Option<String>,
    #[serde(default)]
    entities: BTreeMap<String, Vec<Json>>,
    #[serde(default)]
    full_feature_names: bool,
}

async fn post_online(State(state): State<Arc<HttpState>>, headers: HeaderMap, body: Body) -> Response {
    match serve(&state, &headers, body).await {
        Ok(features) => (StatusCode::OK, axum::Json(JsonAnswer(&features))).into_response(),
        Err((code, message)) => error_response(code, message),
    }
}

async fn serve(state: &HttpState, headers: &HeaderMap, body: Body) -> Result<OnlineFeatures, (ErrorCode, String)> {
    let client = authenticate(
        &state.clients,
        headers.get(header::AUTHORIZATION).map(HeaderValue::as_bytes),
        headers.get("x-client-id").map(HeaderValue::as_bytes),
    )
    .await
    .map_err(fail)?;
    check_content_type(headers)?;
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|e| {
        let too_large = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
            .any(|e| e.is::<http_body_util::LengthLimitError>());
        if too_large {
            (ErrorCode::PayloadTooLarge, format!("request body exceeds the limit of {MAX_BODY_BYTES} bytes"))
        } else {
            (ErrorCode::InvalidArgument, format!("body: could not be read: {e}"))
        }
    })?;
    let request: JsonRequest = serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&body))
        .map_err(|e| {
            let path = e.path().to_string();
            let at = if path == "." { "body".to_owned() } else { path };
            (ErrorCode::InvalidArgument, format!("{at}: {}", e.inner()))
        })?;
    let selection = match (&request.features, &request.feature_service) {
        (Some(features), None) => Selection::Features(features),
        (None, Some(service)) => Selection::Service(service),
        (Some(_), Some(_)) => return Err(invalid("features: give `features` or `feature_service`, not both")),
        (None, None) => {
            return Err(invalid("features: give `features` (a list of `view:feature`) or `feature_service`"));
        }
    };
    let entities: Vec<EntityColumn<'_>> = request
        .entities
        .iter()
        .map(|(join_key, values)| EntityColumn { join_key, values: values.iter().map(key_value).collect() })
        .collect();
    let mut answer = OnlineFeatures::default();
    state
        .server
        .get_online_features(&client, selection, &entities, request.full_feature_names, &mut answer)
        .await
        .map_err(fail)?;
    Ok(answer)
}

fn fail(e: Error) -> (ErrorCode, String) {
    let code = e.code();
    if matches!(code, ErrorCode::Unavailable | ErrorCode::Internal) {
        tracing::error!(error = %e, "feature serving request failed");
    }
    (code, e.to_string())
}

fn invalid(message: &str) -> (ErrorCode, String) {
    (ErrorCode::InvalidArgument, message.to_owned())
}

fn check_content_type(headers: &HeaderMap) -> Result<(), (ErrorCode, String)> {
    let value = headers.get(header::CONTENT_TYPE).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let mime = value.as_deref().and_then(|v| v.split(';').next()).unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    Err((
        ErrorCode::UnsupportedMediaType,
        format!("content type must be application/json, got `{}`", value.as_deref().unwrap_or("(none)")),
    ))
}

fn key_value(json: &Json) -> KeyValue<'_> {
    match json {
        Json::String(s) => KeyValue::String(s),
        Json::Number(n) => n.as_i64().map_or(KeyValue::Other("a non-integer number"), KeyValue::Int64),
        Json::Bool(b) => KeyValue::Bool(*b),
        Json::Null => KeyValue::Null,
        Json::Array(_) => KeyValue::Other("an array"),
        Json::Object(_) => KeyValue::Other("an object"),
    }
}

#[derive(Serialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize)]
struct ErrorDetail {
    code: ErrorCode,
    message: String,
}

fn error_response(code: ErrorCode, message: String) -> Response {
    let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(ErrorBody { error: ErrorDetail { code, message } })).into_response();
    match code {
        ErrorCode::Unauthenticated => {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        ErrorCode::Unavailable => {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        _ => {}
    }
    response
}

/// The JSON form of an answer.
struct JsonAnswer<'a>(&'a OnlineFeatures);

impl Serialize for JsonAnswer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("GetOnlineFeaturesResponse", 2)?;
        st.serialize_field("feature_names", &self.0.feature_names)?;
        st.serialize_field("results", &Seq(&self.0.results, JsonColumn))?;
        st.end()
    }
}

struct JsonColumn<'a>(&'a FeatureColumn);

impl Serialize for JsonColumn<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("FeatureVector", 3)?;
        st.serialize_field("values", &Seq(&self.0.values, JsonValue))?;
        st.serialize_field("statuses", &Seq(&self.0.statuses, |s: &FeatureStatus| s.as_str()))?;
        st.serialize_field("event_timestamps", &Seq(&self.0.event_times, |t: &Option<i64>| t.and_then(rfc3339)))?;
        st.end()
    }
}

struct JsonValue<'a>(&'a Value);

impl Serialize for JsonValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => s.serialize_none(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int64(i) => s.serialize_i64(*i),
            Value::Float64(f) if f.is_finite() => s.serialize_f64(*f),
            Value::Float64(_) => s.serialize_none(),
            Value::String(text) => s.serialize_str(text),
            Value::Timestamp(t) => rfc3339(*t).serialize(s),
        }
    }
}

/// A slice serialized element by element through `f`.
struct Seq<'a, T, F>(&'a [T], F);

impl<'a, T, F, R> Serialize for Seq<'a, T, F>
where
    F: Fn(&'a T) -> R,
    R: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for item in self.0 {
            seq.serialize_element(&(self.1)(item))?;
        }
        seq.end()
    }
}

/// µs since the epoch as RFC 3339 with microseconds, UTC; `None` out of chrono's range.
fn rfc3339(micros: i64) -> Option<String> {
    DateTime::from_timestamp_micros(micros).map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
}
