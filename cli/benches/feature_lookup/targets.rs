//! What a request is, per API: gRPC `livora.v1.FeatureService/GetOnlineFeatures` (tonic, several
//! HTTP/2 connections), and a JSON `POST` (Livora's `/v1/features/online` and Feast's
//! `/get-online-features` take the same body). Every answer is checked: all features, every
//! entity row, every status `PRESENT`.

use std::time::Duration;

use anyhow::{Context, Result};
use livora_proto::livora::v1 as pb;
use pb::feature_service_client::FeatureServiceClient;
use pb::get_online_features_request::Kind;
use pb::value::Val;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
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

/// gRPC `GetOnlineFeatures` of the 25 features, round-robin over several connections.
pub(crate) struct Grpc {
    clients: Vec<FeatureServiceClient<Channel>>,
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
        let mut clients = Vec::with_capacity(connections);
        for _ in 0..connections {
            let channel = Endpoint::from_shared(format!("http://{addr}"))?
                .tcp_nodelay(true)
                .timeout(REQUEST_TIMEOUT)
                .connect_timeout(Duration::from_secs(5))
                .connect()
                .await
                .with_context(|| format!("cannot connect to the gRPC server at {addr}"))?;
            // Answers of 100 entity rows are ~100 KB; the default 4 MB limit is far above.
            clients.push(FeatureServiceClient::new(channel));
        }
        Ok(Self {
            clients,
            features: pb::FeatureList { val: feature_refs() },
            auth: format!("Bearer {key}").parse().context("bad api key")?,
            client_id: client.parse().context("bad client id")?,
            users,
            entities,
        })
    }

    async fn call(&self, n: u64) -> Outcome {
        let values = users_of(n, self.users, self.entities).map(|u| pb::Value { val: Some(Val::StringVal(u)) });
        let mut request = tonic::Request::new(pb::GetOnlineFeaturesRequest {
            kind: Some(Kind::Features(self.features.clone())),
            entities: [("user_id".to_owned(), pb::RepeatedValue { val: values.collect() })].into_iter().collect(),
            full_feature_names: false,
        });
        request.metadata_mut().insert("authorization", self.auth.clone());
        request.metadata_mut().insert("x-client-id", self.client_id.clone());
        let mut client = self.clients[n as usize % self.clients.len()].clone();
        let answer = match client.get_online_features(request).await {
            Ok(answer) => answer.into_inner(),
            Err(status) if status.code() == tonic::Code::Unavailable || status.code() == tonic::Code::Unknown => {
                return Outcome::Failed("transport", status.to_string());
            }
            Err(status) => return Outcome::Failed("grpc status", status.to_string()),
        };
        if answer.results.len() != FEATURE_COUNT || answer.results.iter().any(|r| r.values.len() != self.entities) {
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
