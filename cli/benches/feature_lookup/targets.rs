//! What a request is, per API: gRPC `livora.v1.FeatureService/GetOnlineFeatures` (`h2`, several
//! HTTP/2 connections), and a JSON `POST` (Livora's `/v1/features/online` and Feast's
//! `/get-online-features` take the same body). Every answer is checked: all features, every
//! entity row, every status `PRESENT`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use livora_models::Column;
use livora_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use livora_proto::inference::model_infer_request::InferInputTensor;
use livora_proto::inference::{InferTensorContents, ModelInferRequest, ModelInferResponse};
use livora_proto::livora::v1 as pb;
use pb::feature_service_client::FeatureServiceClient;
use pb::get_online_features_request::Kind;
use pb::value::Val;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use tonic::codegen::http;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::data::{FEATURE_COUNT, feature_refs, user_id};
use crate::load::REQUEST_TIMEOUT;
use crate::model::Inputs;

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
    /// `livora.v1.InferenceService/Predict`.
    Predict(Predict),
    /// KServe V2 `inference.GRPCInferenceService/ModelInfer`.
    Kserve(Kserve),
    /// `grpc.health.v1.Health/Check`: a call the server does no work for.
    Health(Health),
}

impl Target {
    /// Sends request `n` (its users are drawn from a generator seeded with `n`).
    pub(crate) async fn call(&self, n: u64) -> Outcome {
        match (self, self.grpc()) {
            (Target::Json(j), _) => j.call(n).await,
            (_, Some(grpc)) => match grpc.unary().call(n, grpc.message(n)).await {
                Ok(answer) => grpc.verify(&answer),
                Err(failed) => failed,
            },
            (_, None) => Outcome::Failed("bad answer", "a target that is neither gRPC nor JSON".into()),
        }
    }

    /// The target's gRPC calls, if it is a gRPC method (every target but the JSON twin).
    pub(crate) fn grpc(&self) -> Option<&dyn GrpcCall> {
        match self {
            Target::Grpc(g) => Some(g),
            Target::Json(_) => None,
            Target::Predict(p) => Some(p),
            Target::Kserve(k) => Some(k),
            Target::Health(h) => Some(h),
        }
    }

    /// Entity rows per request.
    pub(crate) fn entities(&self) -> usize {
        match self {
            Target::Grpc(g) => g.entities,
            Target::Json(j) => j.entities,
            Target::Predict(p) => p.entities,
            Target::Kserve(k) => k.entities,
            Target::Health(_) => 0,
        }
    }
}

/// `entities` user ids drawn at random among `users`, for request `n`.
fn users_of(n: u64, users: usize, entities: usize) -> impl Iterator<Item = String> {
    user_indices(n, users, entities).map(user_id)
}

/// The indices of [`users_of`].
fn user_indices(n: u64, users: usize, entities: usize) -> impl Iterator<Item = usize> {
    let mut rng = SmallRng::seed_from_u64(n);
    (0..entities).map(move |_| rng.random_range(0..users))
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

/// A unary gRPC method as the load generators call it: where, what request `n` is, and whether
/// an answer is right. The request and the answer are the bare protobuf messages (no gRPC
/// length prefix).
pub(crate) trait GrpcCall: Sync {
    /// The connections, method and credentials.
    fn unary(&self) -> &Unary;
    /// Request `n`, encoded.
    fn message(&self, n: u64) -> Vec<u8>;
    /// Whether `answer` (a message of the method's response type) is a full, right answer.
    fn verify(&self, answer: &[u8]) -> Outcome;
}

/// `answer` decoded as `A`, or a failed outcome.
fn decoded<A: prost::Message + Default>(answer: &[u8]) -> Result<A, Outcome> {
    A::decode(answer).map_err(|e| Outcome::Failed("bad answer", e.to_string()))
}

/// The methods' paths.
const GET_ONLINE_FEATURES: &str = "/livora.v1.FeatureService/GetOnlineFeatures";
const PREDICT: &str = "/livora.v1.InferenceService/Predict";
const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";
const MODEL_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";

/// Unary calls of one gRPC method, authenticated, round-robin over several HTTP/2 connections.
///
/// The timed calls go over `h2`'s client directly: the request (HEADERS, then the whole message
/// in one DATA frame that ends the stream) is handed to the connection task, and the answer is
/// read from it, with no other task in between. tonic's `Channel` puts two more hops in the way
/// (its buffer's worker task and hyper's dispatcher), each a wake-up per request, and the load
/// generator takes every cycle it spends from the server's cores: a generator that costs little
/// per request, as `h2load` does, measures the server rather than itself. The generated clients
/// (over a tonic channel) check one answer in full before any timing.
pub(crate) struct Unary {
    /// The server.
    pub(crate) addr: std::net::SocketAddr,
    /// `/<service>/<method>`.
    pub(crate) path: &'static str,
    connections: Vec<h2::client::SendRequest<Bytes>>,
    /// For the generated clients.
    channel: Channel,
    /// `http://ADDR/<service>/<method>`.
    uri: http::Uri,
    pub(crate) auth: MetadataValue<Ascii>,
    pub(crate) client_id: MetadataValue<Ascii>,
}

/// The flow-control windows of the load generator's connections: hyper's client defaults (what
/// tonic's channel used), so a 100-row answer (~100 KB) is never held back by a window update.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;

impl Unary {
    /// `connections` HTTP/2 connections to `addr` for the method at `path`, authenticated as
    /// `client` with `key`.
    pub(crate) async fn connect(
        addr: std::net::SocketAddr,
        connections: usize,
        path: &'static str,
        client: &str,
        key: &str,
    ) -> Result<Self> {
        let mut senders = Vec::with_capacity(connections);
        for _ in 0..connections {
            let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
                .await
                .map_err(|_| anyhow::anyhow!("no connection to {addr} within 5 s"))?
                .with_context(|| format!("cannot connect to the gRPC server at {addr}"))?;
            tcp.set_nodelay(true)?;
            let (sender, connection) = h2::client::Builder::new()
                .initial_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONNECTION_WINDOW)
                .handshake::<_, Bytes>(tcp)
                .await
                .with_context(|| format!("HTTP/2 handshake with {addr}"))?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    eprintln!("load generator: HTTP/2 connection ended: {e}");
                }
            });
            senders.push(sender);
        }
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .with_context(|| format!("cannot connect to the gRPC server at {addr}"))?;
        Ok(Self {
            addr,
            path,
            connections: senders,
            channel,
            uri: format!("http://{addr}{path}").parse().context("bad uri")?,
            auth: format!("Bearer {key}").parse().context("bad api key")?,
            client_id: client.parse().context("bad client id")?,
        })
    }

    /// `message` as a request with the credentials, for the generated clients.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert("authorization", self.auth.clone());
        request.metadata_mut().insert("x-client-id", self.client_id.clone());
        request
    }

    /// A channel for the generated clients.
    fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Sends `message` (encoded) as request `n` (HEADERS, then one DATA frame that ends the
    /// stream, as a client that has its whole message up front sends it) and returns the
    /// answer's message. A failure of the call, a status other than 200 or a `grpc-status`
    /// other than 0 is a failed outcome.
    async fn call(&self, n: u64, message: Vec<u8>) -> Result<Bytes, Outcome> {
        let transport = |e: h2::Error| Outcome::Failed("transport", e.to_string());
        let mut body = BytesMut::with_capacity(5 + message.len());
        body.put_u8(0);
        body.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
        body.put_slice(&message);
        let request = http::Request::builder()
            .method(http::Method::POST)
            .uri(&self.uri)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .header("authorization", self.auth.as_encoded_bytes())
            .header("x-client-id", self.client_id.as_encoded_bytes())
            .body(())
            .map_err(|e| Outcome::Failed("bad answer", format!("cannot build the request: {e}")))?;
        let sender = self.connections[n as usize % self.connections.len()].clone();
        let mut sender = sender.ready().await.map_err(transport)?;
        let (response, mut stream) = sender.send_request(request, false).map_err(transport)?;
        stream.send_data(body.freeze(), true).map_err(transport)?;
        let (parts, mut answer) = response.await.map_err(transport)?.into_parts();
        let mut bytes = BytesMut::new();
        while let Some(chunk) = answer.data().await {
            let chunk = chunk.map_err(transport)?;
            let _ = answer.flow_control().release_capacity(chunk.len());
            bytes.extend_from_slice(&chunk);
        }
        let trailers = answer.trailers().await.map_err(transport)?;
        let status = trailers.as_ref().and_then(|t| t.get("grpc-status")).or_else(|| parts.headers.get("grpc-status"));
        if parts.status != http::StatusCode::OK || status.map(|s| s.as_bytes()) != Some(b"0") {
            let message =
                trailers.as_ref().and_then(|t| t.get("grpc-message")).or_else(|| parts.headers.get("grpc-message"));
            return Err(Outcome::Failed("grpc status", format!("{} {status:?} {message:?}", parts.status)));
        }
        if bytes.len() < 5 {
            return Err(Outcome::Failed("bad answer", format!("{} bytes answered", bytes.len())));
        }
        Ok(bytes.freeze().slice(5..))
    }
}

/// gRPC `GetOnlineFeatures` of the 25 features.
pub(crate) struct Grpc {
    unary: Unary,
    features: pb::FeatureList,
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
        let unary = Unary::connect(addr, connections, GET_ONLINE_FEATURES, client, key).await?;
        let grpc = Self { unary, features: pb::FeatureList { val: feature_refs() }, users, entities };
        grpc.check_in_full().await?;
        Ok(grpc)
    }

    /// The request `n`.
    fn request(&self, n: u64) -> pb::GetOnlineFeaturesRequest {
        let values = users_of(n, self.users, self.entities).map(|u| pb::Value { val: Some(Val::StringVal(u)) });
        pb::GetOnlineFeaturesRequest {
            kind: Some(Kind::Features(self.features.clone())),
            entities: [("user_id".to_owned(), pb::RepeatedValue { val: values.collect() })].into_iter().collect(),
            full_feature_names: false,
        }
    }

    /// One request decoded in full by the generated client: the 25 features by name, a value and
    /// `PRESENT` for every one.
    async fn check_in_full(&self) -> Result<()> {
        let mut client = FeatureServiceClient::new(self.unary.channel());
        let answer = client.get_online_features(self.unary.request(self.request(7))).await?.into_inner();
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
}

impl GrpcCall for Grpc {
    fn unary(&self) -> &Unary {
        &self.unary
    }

    fn message(&self, n: u64) -> Vec<u8> {
        prost::Message::encode_to_vec(&self.request(n))
    }

    /// The statuses only: 25 features, each `PRESENT` for every entity.
    fn verify(&self, answer: &[u8]) -> Outcome {
        let answer: StatusesOnly = match decoded(answer) {
            Ok(answer) => answer,
            Err(failed) => return failed,
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

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

/// `HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: i32 = 1;

/// gRPC `grpc.health.v1.Health/Check` of the whole server: the same port, connections, HTTP/2
/// and gRPC framing as a lookup, and no work behind it (the answer is a status held in memory).
/// Its latency at a given rate is this machine's floor for any gRPC call, load generator
/// included: what no request path can go below here.
pub(crate) struct Health {
    unary: Unary,
}

impl Health {
    /// `connections` HTTP/2 connections to `addr` (the credentials are sent, as by every other
    /// target, though the health service does not ask for them).
    pub(crate) async fn connect(
        addr: std::net::SocketAddr,
        connections: usize,
        (client, key): (&str, &str),
    ) -> Result<Self> {
        let health = Self { unary: Unary::connect(addr, connections, HEALTH_CHECK, client, key).await? };
        let answer = health.unary.call(0, health.message(0)).await;
        if let Outcome::Failed(_, why) = answer.map_or_else(|failed| failed, |answer| health.verify(&answer)) {
            anyhow::bail!("the server's health check: {why}");
        }
        Ok(health)
    }
}

impl GrpcCall for Health {
    fn unary(&self) -> &Unary {
        &self.unary
    }

    fn message(&self, _: u64) -> Vec<u8> {
        prost::Message::encode_to_vec(&HealthCheckRequest { service: String::new() })
    }

    fn verify(&self, answer: &[u8]) -> Outcome {
        match decoded::<HealthCheckResponse>(answer) {
            Ok(answer) if answer.status == SERVING => Outcome::Ok,
            Ok(answer) => Outcome::Failed("bad answer", format!("health status {}, not SERVING", answer.status)),
            Err(failed) => failed,
        }
    }
}

/// `PredictResponse` as the load generator reads it under load: each prediction's status and
/// score (see [`StatusesOnly`]).
#[derive(Clone, PartialEq, prost::Message)]
struct ScoresOnly {
    /// `PredictResponse.predictions`.
    #[prost(message, repeated, tag = "5")]
    predictions: Vec<ScoreOnly>,
}

/// `Prediction.status` and `Prediction.score`.
#[derive(Clone, PartialEq, prost::Message)]
struct ScoreOnly {
    #[prost(int32, tag = "2")]
    status: i32,
    #[prost(double, optional, tag = "3")]
    score: Option<f64>,
}

/// gRPC `Predict` of a model (`churn@1`): the server fetches the model's features online itself.
pub(crate) struct Predict {
    unary: Unary,
    model: String,
    contributions: u32,
    users: usize,
    entities: usize,
}

impl Predict {
    /// `connections` HTTP/2 connections to `addr`, authenticated as `client` with `key`, scoring
    /// `entities` users per request with `model`, asking for the `contributions` largest
    /// feature contributions of each.
    pub(crate) async fn connect(
        addr: std::net::SocketAddr,
        connections: usize,
        (client, key): (&str, &str),
        (model, contributions): (&str, u32),
        users: usize,
        entities: usize,
    ) -> Result<Self> {
        let unary = Unary::connect(addr, connections, PREDICT, client, key).await?;
        let predict = Self { unary, model: model.to_owned(), contributions, users, entities };
        predict.check_in_full().await?;
        Ok(predict)
    }

    fn request(&self, n: u64) -> pb::PredictRequest {
        pb::PredictRequest {
            model: self.model.clone(),
            entity_keys: users_of(n, self.users, self.entities).collect(),
            top_contributions: self.contributions,
            missing_policy: pb::MissingPolicy::Unspecified as i32,
        }
    }

    /// One request decoded in full by the generated client: a score in (0, 1) for every entity,
    /// scored with every feature present, and the contributions asked for.
    async fn check_in_full(&self) -> Result<()> {
        let mut client = pb::inference_service_client::InferenceServiceClient::new(self.unary.channel());
        let answer = client.predict(self.unary.request(self.request(7))).await?.into_inner();
        anyhow::ensure!(answer.predictions.len() == self.entities, "{} predictions", answer.predictions.len());
        anyhow::ensure!(answer.feature_names.len() == FEATURE_COUNT, "the model read {:?}", answer.feature_names);
        for p in &answer.predictions {
            anyhow::ensure!(
                p.status == pb::PredictionStatus::Scored as i32
                    && p.score.is_some_and(|s| s > 0.0 && s < 1.0)
                    && p.contributions.len() == self.contributions as usize,
                "prediction {p:?}"
            );
        }
        Ok(())
    }
}

impl GrpcCall for Predict {
    fn unary(&self) -> &Unary {
        &self.unary
    }

    fn message(&self, n: u64) -> Vec<u8> {
        prost::Message::encode_to_vec(&self.request(n))
    }

    /// A score and `SCORED` for every entity.
    fn verify(&self, answer: &[u8]) -> Outcome {
        let answer: ScoresOnly = match decoded(answer) {
            Ok(answer) => answer,
            Err(failed) => return failed,
        };
        if answer.predictions.len() != self.entities {
            return Outcome::Failed("bad answer", format!("{} predictions answered", answer.predictions.len()));
        }
        let scored = pb::PredictionStatus::Scored as i32;
        if answer.predictions.iter().any(|p| p.status != scored || p.score.is_none()) {
            return Outcome::Failed("not all PRESENT", format!("{:?}", answer.predictions.first()));
        }
        Outcome::Ok
    }
}

/// KServe V2 `ModelInfer`: the caller brings the features (what the online store holds for the
/// users drawn), one input tensor per model input, typed contents, and the `user_id` input.
pub(crate) struct Kserve {
    unary: Unary,
    model: String,
    version: String,
    inputs: Arc<Inputs>,
    entities: usize,
}

impl Kserve {
    /// `connections` HTTP/2 connections to `addr`, authenticated as `client` with `key`, scoring
    /// `entities` rows of `inputs` per request with `model` at `version`.
    pub(crate) async fn connect(
        addr: std::net::SocketAddr,
        connections: usize,
        (client, key): (&str, &str),
        (model, version): (&str, &str),
        inputs: Arc<Inputs>,
        entities: usize,
    ) -> Result<Self> {
        let unary = Unary::connect(addr, connections, MODEL_INFER, client, key).await?;
        let kserve = Self { unary, model: model.to_owned(), version: version.to_owned(), inputs, entities };
        let mut client = GrpcInferenceServiceClient::new(kserve.unary.channel());
        let answer = client.model_infer(kserve.unary.request(kserve.request(7))).await?.into_inner();
        let probabilities = answer.outputs.first().and_then(|o| o.contents.as_ref()).map(|c| &c.fp64_contents);
        anyhow::ensure!(
            probabilities.is_some_and(|p| p.len() == entities && p.iter().all(|&s| s > 0.0 && s < 1.0)),
            "answered {answer:?}"
        );
        Ok(kserve)
    }

    fn request(&self, n: u64) -> ModelInferRequest {
        let rows: Vec<usize> = user_indices(n, self.inputs.table.rows(), self.entities).collect();
        let shape = vec![rows.len() as i64];
        let mut inputs: Vec<InferInputTensor> = self
            .inputs
            .table
            .names
            .iter()
            .zip(&self.inputs.table.columns)
            .map(|(name, column)| {
                let (datatype, contents) = match column {
                    Column::Numeric(v) => (
                        "FP64",
                        InferTensorContents {
                            fp64_contents: rows.iter().map(|&i| v[i].unwrap_or(f64::NAN)).collect(),
                            ..InferTensorContents::default()
                        },
                    ),
                    Column::Categorical(v) => (
                        "BYTES",
                        InferTensorContents {
                            bytes_contents: rows
                                .iter()
                                .map(|&i| v[i].as_deref().unwrap_or_default().as_bytes().to_vec())
                                .collect(),
                            ..InferTensorContents::default()
                        },
                    ),
                };
                InferInputTensor {
                    name: name.clone(),
                    datatype: datatype.into(),
                    shape: shape.clone(),
                    parameters: Default::default(),
                    contents: Some(contents),
                }
            })
            .collect();
        inputs.push(InferInputTensor {
            name: "user_id".into(),
            datatype: "BYTES".into(),
            shape,
            parameters: Default::default(),
            contents: Some(InferTensorContents {
                bytes_contents: rows.iter().map(|&i| user_id(i).into_bytes()).collect(),
                ..InferTensorContents::default()
            }),
        });
        ModelInferRequest {
            model_name: self.model.clone(),
            model_version: self.version.clone(),
            id: String::new(),
            parameters: Default::default(),
            inputs,
            outputs: Vec::new(),
            raw_input_contents: Vec::new(),
        }
    }
}

impl GrpcCall for Kserve {
    fn unary(&self) -> &Unary {
        &self.unary
    }

    fn message(&self, n: u64) -> Vec<u8> {
        prost::Message::encode_to_vec(&self.request(n))
    }

    /// A probability for every row.
    fn verify(&self, answer: &[u8]) -> Outcome {
        let answer: ModelInferResponse = match decoded(answer) {
            Ok(answer) => answer,
            Err(failed) => return failed,
        };
        let scores = answer.outputs.first().and_then(|o| o.contents.as_ref()).map_or(0, |c| c.fp64_contents.len());
        if scores != self.entities {
            return Outcome::Failed("bad answer", format!("{scores} probabilities answered"));
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
