//! What a request is, per API: gRPC `livora.v1.FeatureService/GetOnlineFeatures` (tonic, several
//! HTTP/2 connections), and a JSON `POST` (Livora's `/v1/features/online` and Feast's
//! `/get-online-features` take the same body). Every answer is checked: all features, every
//! entity row, every status `PRESENT`.

use std::time::Duration;

use anyhow::{Context, Result};
use bytes::{BufMut, BytesMut};
use http_body_util::{BodyExt, Full};
use livora_proto::livora::v1 as pb;
use pb::feature_service_client::FeatureServiceClient;
use pb::get_online_features_request::Kind;
use pb::value::Val;
use prost::Message as _;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use tonic::client::GrpcService;
use tonic::codegen::http;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::data::{FEATURE_COUNT, feature_refs, user_id};
use crate::load::REQUEST_TIMEOUT;

/// How one request ended.
pub(crate) enum Outcome {
    /// Answered in full, every value `PRESENT`.
    Ok,
    /// Failed: the kind (for the tally) and a message (for the log).
    Failed(&'static str, String),
}

/// The failure kinds, by code (`0` is unused, `1` is success).
const KINDS: [&str; 8] =
    ["?", "ok", "grpc status", "http status", "transport", "timeout", "not all PRESENT", "bad answer"];

impl Outcome {
    /// A small code for the tally's slots.
    pub(crate) fn code(&self) -> u8 {
        match self {
            Outcome::Ok => 1,
            Outcome::Failed(kind, _) => KINDS.iter().position(|k| k == kind).map_or(0, |i| i as u8),
        }
    }

    /// The failure kind of a code; `None` for success.
    pub(crate) fn kind(code: u8) -> Option<&'static str> {
        match code {
            1 => None,
            c => Some(KINDS.get(usize::from(c)).copied().unwrap_or("?")),
        }
    }
}

/// Where and how requests go.
pub(crate) enum Target {
    /// Livora's gRPC API.
    Grpc(Grpc),
    /// A JSON API over HTTP/1.1 keep-alive.
    Json(Json),
}

impl Target {
    /// Sends request `n` (its users are drawn from a generator seeded with `n`).
    pub(crate) async fn call(&self, n: u64) -> Outcome {
        match self {
            Target::Grpc(g) => g.call(n).await,
            Target::Json(j) => j.call(n).await,
        }
    }

    /// Entity rows per request.
    pub(crate) fn entities(&self) -> usize {
        match self {
            Target::Grpc(g) => g.entities,
            Target::Json(j) => j.entities,
        }
    }
}

/// `entities` user ids drawn at random among `users`, for request `n`.
fn users_of(n: u64, users: usize, entities: usize) -> impl Iterator<Item = String> {
    let mut rng = SmallRng::seed_from_u64(n);
    (0..entities).map(move |_| user_id(rng.random_range(0..users)))
}

/// The answer as the load generator reads it under load: the statuses only. The generated
/// `GetOnlineFeaturesResponse` would allocate every value, name and timestamp; prost skips the
/// fields this message does not declare, so checking an answer costs the load generator (which
/// takes its CPU from the server's cores) a fraction of that. One answer is decoded in full, with
/// the generated client, before any timing.
#[derive(Clone, PartialEq, prost::Message)]
struct StatusesOnly {
    /// `GetOnlineFeaturesResponse.results`.
    #[prost(message, repeated, tag = "2")]
    results: Vec<Statuses>,
}

/// `FeatureVector.statuses`.
#[derive(Clone, PartialEq, prost::Message)]
struct Statuses {
    /// `FeatureStatus` values.
    #[prost(int32, repeated, tag = "2")]
    statuses: Vec<i32>,
}

/// The method's path.
const GET_ONLINE_FEATURES: &str = "/livora.v1.FeatureService/GetOnlineFeatures";

/// gRPC `GetOnlineFeatures` of the 25 features, round-robin over several connections.
pub(crate) struct Grpc {
    channels: Vec<Channel>,
    /// `http://ADDR/livora.v1.FeatureService/GetOnlineFeatures`.
    uri: http::Uri,
    features: pb::FeatureList,
    auth: MetadataValue<Ascii>,
    client_id: MetadataValue<Ascii>,
    users: usize,
    entities: usize,
}

impl Grpc {
    /// `connections` HTTP/2 connections to `addr`, authenticated as `client` with `key`.
    pub(crate) async fn connect(
        addr: std::net::SocketAddr,
        connections: usize,
        client: &str,
        key: &str,
        users: usize,
        entities: usize,
    ) -> Result<Self> {
        let mut channels = Vec::with_capacity(connections);
        for _ in 0..connections {
            let channel = Endpoint::from_shared(format!("http://{addr}"))?
                .tcp_nodelay(true)
                .timeout(REQUEST_TIMEOUT)
                .connect_timeout(Duration::from_secs(5))
                .connect()
                .await
                .with_context(|| format!("cannot connect to the gRPC server at {addr}"))?;
            // Answers of 100 entity rows are ~100 KB; the default 4 MB limit is far above.
            channels.push(channel);
        }
        let grpc = Self {
            channels,
            uri: format!("http://{addr}{GET_ONLINE_FEATURES}").parse().context("bad uri")?,
            features: pb::FeatureList { val: feature_refs() },
            auth: format!("Bearer {key}").parse().context("bad api key")?,
            client_id: client.parse().context("bad client id")?,
            users,
            entities,
        };
        grpc.check_in_full().await?;
        Ok(grpc)
    }

    /// The request `n`.
    fn request(&self, n: u64) -> tonic::Request<pb::GetOnlineFeaturesRequest> {
        let values = users_of(n, self.users, self.entities).map(|u| pb::Value { val: Some(Val::StringVal(u)) });
        let mut request = tonic::Request::new(pb::GetOnlineFeaturesRequest {
            kind: Some(Kind::Features(self.features.clone())),
            entities: [("user_id".to_owned(), pb::RepeatedValue { val: values.collect() })].into_iter().collect(),
            full_feature_names: false,
        });
        request.metadata_mut().insert("authorization", self.auth.clone());
        request.metadata_mut().insert("x-client-id", self.client_id.clone());
        request
    }

    /// One request decoded in full by the generated client: the 25 features by name, a value and
    /// `PRESENT` for every one.
    async fn check_in_full(&self) -> Result<()> {
        let mut client = FeatureServiceClient::new(self.channels[0].clone());
        let answer = client.get_online_features(self.request(7)).await?.into_inner();
        let names: Vec<String> =
            feature_refs().iter().map(|r| r.split_once(':').map_or(r.clone(), |(_, f)| f.into())).collect();
        anyhow::ensure!(answer.feature_names == names, "answered the features {:?}", answer.feature_names);
        let present = pb::FeatureStatus::Present as i32;
        for (name, vector) in names.iter().zip(&answer.results) {
            anyhow::ensure!(
                vector.values.len() == self.entities
                    && vector.values.iter().all(|v| v.val.is_some())
                    && vector.statuses.iter().all(|&s| s == present),
                "feature {name}: {vector:?}"
            );
        }
        Ok(())
    }

    /// Sends request `n` through tonic's channel (HTTP/2) as one encoded message with a known
    /// end, and reads back the statuses.
    ///
    /// tonic's generated client sends a unary request as a stream body: HEADERS, then DATA, then
    /// an empty DATA frame that ends the stream, three writes and up to three wake-ups of the
    /// server for one request. A client that has its whole message up front (as this one has)
    /// ends the stream on the DATA frame; that is what is sent here, so the load generator does
    /// not charge the server for its own framing.
    async fn call(&self, n: u64) -> Outcome {
        let request = self.request(n);
        let (metadata, _, message) = request.into_parts();
        let mut body = BytesMut::with_capacity(5 + message.encoded_len());
        body.put_u8(0);
        body.put_u32(u32::try_from(message.encoded_len()).unwrap_or(u32::MAX));
        if let Err(e) = message.encode(&mut body) {
            return Outcome::Failed("bad answer", format!("cannot encode the request: {e}"));
        }
        let mut http = http::Request::builder()
            .method(http::Method::POST)
            .uri(&self.uri)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers");
        for (name, value) in metadata.into_headers().iter() {
            http = http.header(name, value);
        }
        let http = match http.body(tonic::body::Body::new(Full::new(body.freeze()))) {
            Ok(http) => http,
            Err(e) => return Outcome::Failed("bad answer", format!("cannot build the request: {e}")),
        };
        let mut channel = self.channels[n as usize % self.channels.len()].clone();
        if let Err(e) = std::future::poll_fn(|cx| GrpcService::poll_ready(&mut channel, cx)).await {
            return Outcome::Failed("transport", e.to_string());
        }
        let response = match GrpcService::call(&mut channel, http).await {
            Ok(response) => response,
            Err(e) => return Outcome::Failed("transport", e.to_string()),
        };
        let (parts, body) = response.into_parts();
        let collected = match body.collect().await {
            Ok(collected) => collected,
            Err(e) => return Outcome::Failed("transport", e.to_string()),
        };
        let trailers = collected.trailers().cloned();
        let status = trailers.as_ref().and_then(|t| t.get("grpc-status")).or_else(|| parts.headers.get("grpc-status"));
        if parts.status != http::StatusCode::OK || status.map(|s| s.as_bytes()) != Some(b"0") {
            let message =
                trailers.as_ref().and_then(|t| t.get("grpc-message")).or_else(|| parts.headers.get("grpc-message"));
            return Outcome::Failed("grpc status", format!("{} {status:?} {message:?}", parts.status));
        }
        let bytes = collected.to_bytes();
        let Some(message) = bytes.get(5..) else {
            return Outcome::Failed("bad answer", format!("{} bytes answered", bytes.len()));
        };
        let answer = match StatusesOnly::decode(message) {
            Ok(answer) => answer,
            Err(e) => return Outcome::Failed("bad answer", e.to_string()),
        };
        if answer.results.len() != FEATURE_COUNT || answer.results.iter().any(|r| r.statuses.len() != self.entities) {
            return Outcome::Failed("bad answer", format!("{} features answered", answer.results.len()));
        }
        let present = pb::FeatureStatus::Present as i32;
        if answer.results.iter().any(|r| r.statuses.iter().any(|&s| s != present)) {
            return Outcome::Failed("not all PRESENT", format!("{:?}", answer.results.first()));
        }
        Outcome::Ok
    }
}

/// A JSON `POST` of `{"features": [...25], "entities": {"user_id": [...]}}`.
pub(crate) struct Json {
    http: reqwest::Client,
    url: String,
    /// The body up to the first user id.
    head: String,
    users: usize,
    entities: usize,
    /// `"PRESENT"` occurrences a full answer has at least.
    present: usize,
}

impl Json {
    /// Posts to `url` with `headers` (authentication, if any).
    pub(crate) fn new(url: String, mut headers: HeaderMap, users: usize, entities: usize) -> Result<Self> {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .http1_only()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(4_096)
            .timeout(REQUEST_TIMEOUT)
            .no_proxy()
            .build()
            .context("cannot build the HTTP client")?;
        let features = serde_json::to_string(&feature_refs())?;
        let head = format!(r#"{{"features":{features},"entities":{{"user_id":["#);
        Ok(Self { http, url, head, users, entities, present: FEATURE_COUNT * entities })
    }

    /// The `authorization` and `x-client-id` headers of Livora.
    pub(crate) fn livora_headers(client: &str, key: &str) -> Result<HeaderMap> {
        let mut headers = HeaderMap::new();
        let mut auth = HeaderValue::from_str(&format!("Bearer {key}")).context("bad api key")?;
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        headers.insert("x-client-id", HeaderValue::from_str(client).context("bad client id")?);
        Ok(headers)
    }

    async fn call(&self, n: u64) -> Outcome {
        let mut body = String::with_capacity(self.head.len() + 12 * self.entities + 4);
        body.push_str(&self.head);
        for (i, user) in users_of(n, self.users, self.entities).enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push('"');
            body.push_str(&user);
            body.push('"');
        }
        body.push_str("]}}");
        let response = match self.http.post(&self.url).body(body).send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Outcome::Failed("timeout", e.to_string()),
            Err(e) => return Outcome::Failed("transport", e.to_string()),
        };
        let status = response.status();
        let text = match response.bytes().await {
            Ok(t) => t,
            Err(e) => return Outcome::Failed("transport", e.to_string()),
        };
        if !status.is_success() {
            return Outcome::Failed("http status", format!("{status}: {}", String::from_utf8_lossy(&text)));
        }
        let present = text.windows(9).filter(|w| w == b"\"PRESENT\"").count();
        if present < self.present {
            return Outcome::Failed(
                "not all PRESENT",
                format!(
                    "{present} of {} PRESENT: {}",
                    self.present,
                    String::from_utf8_lossy(&text[..text.len().min(400)])
                ),
            );
        }
        Outcome::Ok
    }
}
