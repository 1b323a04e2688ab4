//! The gRPC API: `livora.v1.FeatureService` over the [`FeatureServer`], with gRPC health
//! (`grpc.health.v1.Health`) and server reflection (v1 and v1alpha) beside it, so that `grpcurl` needs no
//! `.proto` file.
//!
//! Errors answer through [`status`], the one mapping from the feature store's [`Error`] to a
//! `tonic::Status` (its code follows from [`Error::code`] via [`livora_proto::code`]).
//!
//! Health: the overall service (`""`) and `livora.v1.FeatureService` are `SERVING` while the
//! online store and the registry answer; a probe every [`HEALTH_INTERVAL`] turns them
//! `NOT_SERVING` when either fails, and back when it recovers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use livora_ingest::ClientStore;
use livora_proto::livora::v1 as pb;
use pb::feature_service_server::{FeatureService, FeatureServiceServer};
use pb::get_online_features_request::Kind;
use pb::value::Val;
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use super::auth::authenticate;
use super::keys::KeyValue;
use super::server::{EntityColumn, FeatureServer, FeatureSink, FeatureStatus, Selection};
use crate::error::Error;
use crate::value::Value;

/// How often the health service re-checks the online store and the registry.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// `livora.v1.FeatureService`, authenticated per client.
#[derive(Clone)]
pub struct GrpcFeatureService {
    server: Arc<FeatureServer>,
    clients: Arc<ClientStore>,
}

impl GrpcFeatureService {
    /// The service over `server`, authenticating with `clients`.
    pub fn new(server: Arc<FeatureServer>, clients: Arc<ClientStore>) -> Self {
        Self { server, clients }
    }
}

/// The `tonic::Status` answering `error`. Failures on our side are logged here, once.
pub fn status(error: &Error) -> Status {
    let code = error.code();
    if matches!(code, livora_common::ErrorCode::Unavailable | livora_common::ErrorCode::Internal) {
        tracing::error!(error = %error, "feature serving request failed");
    }
    livora_proto::status(code, error.to_string())
}

#[tonic::async_trait]
impl FeatureService for GrpcFeatureService {
    async fn get_online_features(
        &self,
        request: Request<pb::GetOnlineFeaturesRequest>,
    ) -> Result<Response<pb::GetOnlineFeaturesResponse>, Status> {
        let metadata = request.metadata();
        let client = authenticate(
            &self.clients,
            metadata.get("authorization").map(|v| v.as_bytes()),
            metadata.get("x-client-id").map(|v| v.as_bytes()),
        )
        .await
        .map_err(|e| status(&e))?;
        let request = request.into_inner();
        let selection = match &request.kind {
            Some(Kind::Features(list)) => Selection::Features(&list.val),
            Some(Kind::FeatureService(name)) => Selection::Service(name),
            None => {
                return Err(status(&Error::InvalidArgument(
                    "kind: give `features` (a list of `view:feature`) or `feature_service`".into(),
                )));
            }
        };
        let entities: Vec<EntityColumn<'_>> = request
            .entities
            .iter()
            .map(|(join_key, column)| EntityColumn { join_key, values: column.val.iter().map(key_value).collect() })
            .collect();
        let mut sink = ProtoSink::default();
        self.server
            .get_online_features(&client, selection, &entities, request.full_feature_names, &mut sink)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(sink.response))
    }
}

fn key_value(value: &pb::Value) -> KeyValue<'_> {
    match &value.val {
        None => KeyValue::Null,
        Some(Val::StringVal(s)) => KeyValue::String(s),
        Some(Val::Int64Val(i)) => KeyValue::Int64(*i),
        Some(Val::BoolVal(b)) => KeyValue::Bool(*b),
        Some(Val::DoubleVal(_)) => KeyValue::Other("double"),
        Some(Val::TimestampVal(_)) => KeyValue::Other("timestamp"),
    }
}

/// Builds the protobuf answer directly.
#[derive(Default)]
struct ProtoSink {
    response: pb::GetOnlineFeaturesResponse,
    rows: usize,
}

impl FeatureSink for ProtoSink {
    fn begin(&mut self, features: usize, rows: usize) {
        self.rows = rows;
        self.response.feature_names.reserve(features);
        self.response.results.reserve(features);
    }

    fn feature(&mut self, name: &str) {
        self.response.feature_names.push(name.to_owned());
        self.response.results.push(pb::FeatureVector {
            values: Vec::with_capacity(self.rows),
            statuses: Vec::with_capacity(self.rows),
            event_timestamps: Vec::with_capacity(self.rows),
        });
    }

    fn value(&mut self, value: Value, status: FeatureStatus, event_time: Option<i64>) {
        let Some(vector) = self.response.results.last_mut() else { return };
        vector.values.push(pb::Value { val: proto_value(value) });
        vector.statuses.push(proto_status(status) as i32);
        vector.event_timestamps.push(event_time.map(livora_proto::timestamp_from_micros).unwrap_or_default());
    }
}

fn proto_value(value: Value) -> Option<Val> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => Val::BoolVal(b),
        Value::Int64(i) => Val::Int64Val(i),
        Value::Float64(f) => Val::DoubleVal(f),
        Value::String(s) => Val::StringVal(s),
        Value::Timestamp(t) => Val::TimestampVal(livora_proto::timestamp_from_micros(t)),
    })
}

fn proto_status(status: FeatureStatus) -> pb::FeatureStatus {
    match status {
        FeatureStatus::Present => pb::FeatureStatus::Present,
        FeatureStatus::Missing => pb::FeatureStatus::Missing,
        FeatureStatus::OutsideMaxAge => pb::FeatureStatus::OutsideMaxAge,
    }
}

/// Serves the gRPC API on `listener` until `shutdown` completes: `livora.v1.FeatureService`,
/// `grpc.health.v1.Health` and reflection (`grpc.reflection.v1`, and `v1alpha` for the clients
/// that only speak it, such as grpcio's reflection database and older grpcurl). Connections get TCP_NODELAY:
/// answers are small and must not wait for Nagle's algorithm.
///
/// `routes` holds the other rooms' services served on the same port (model inference, Arrow
/// Flight); pass `Routes::default()` for none. `descriptors` are the encoded descriptor sets
/// reflection describes them with, beyond Livora's own `.proto`s (always registered): for Flight,
/// [`livora_proto::FLIGHT_FILE_DESCRIPTOR_SET`].
pub async fn serve(
    listener: TcpListener,
    service: GrpcFeatureService,
    routes: Routes,
    descriptors: &[&'static [u8]],
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let reflection = || {
        descriptors.iter().fold(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(livora_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
            |builder, set| builder.register_encoded_file_descriptor_set(set),
        )
    };
    let reflection_v1 = reflection().build_v1().map_err(std::io::Error::other)?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(std::io::Error::other)?;
    let server = service.server.clone();
    let healthy = server.ping().await.is_ok();
    set_health(&reporter, healthy).await;
    let probe = tokio::spawn(watch_health(reporter.clone(), server, healthy));
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let routes = routes
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(FeatureServiceServer::new(service));
    let served = Server::builder().add_routes(routes).serve_with_incoming_shutdown(incoming, shutdown).await;
    probe.abort();
    served.map_err(std::io::Error::other)
}

async fn watch_health(reporter: HealthReporter, server: Arc<FeatureServer>, mut serving: bool) {
    loop {
        tokio::time::sleep(HEALTH_INTERVAL).await;
        let now = match server.ping().await {
            Ok(()) => true,
            Err(e) => {
                if serving {
                    tracing::warn!(error = %e, "feature serving is not healthy");
                }
                false
            }
        };
        if now != serving {
            set_health(&reporter, now).await;
            serving = now;
        }
    }
}

async fn set_health(reporter: &HealthReporter, serving: bool) {
    let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
    for name in ["", <FeatureServiceServer<GrpcFeatureService> as NamedService>::NAME] {
        reporter.set_service_status(name, status).await;
    }
}
