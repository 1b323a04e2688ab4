//! The gRPC API over a real socket, with tonic's client: authentication, a read, error codes,
//! health and reflection.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::StreamExt;
use livora_feature_store::serving::grpc::{self, GrpcFeatureService};
use livora_feature_store::{FeatureServer, Value};
use livora_proto::livora::v1 as pb;
use pb::feature_service_client::FeatureServiceClient;
use pb::get_online_features_request::Kind;
use pb::value::Val;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use super::*;

/// A gRPC server on a free port, stopped when dropped.
struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    keys: Keys,
    fixture: Fixture,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start() -> Running {
    let fixture = Fixture::with_shop().await;
    let (clients, keys) = clients(fixture.dir.path()).await;
    let server = Arc::new(FeatureServer::new(fixture.registry.clone(), fixture.store.clone(), &Default::default()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel();
    tokio::spawn(grpc::serve(
        listener,
        GrpcFeatureService::new(server, clients),
        Default::default(),
        &[],
        async move {
            let _ = stopped.await;
        },
    ));
    Running { addr, stop: Some(stop), keys, fixture }
}

async fn channel(addr: SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

fn request(
    refs: &[&str],
    users: &[&str],
    key: Option<&str>,
    client_id: Option<&str>,
) -> tonic::Request<pb::GetOnlineFeaturesRequest> {
    let column = pb::RepeatedValue {
        val: users.iter().map(|u| pb::Value { val: Some(Val::StringVal((*u).to_owned())) }).collect(),
    };
    let mut request = tonic::Request::new(pb::GetOnlineFeaturesRequest {
        kind: Some(Kind::Features(pb::FeatureList { val: strings(refs) })),
        entities: [("user_id".to_owned(), column)].into(),
        full_feature_names: false,
    });
    if let Some(key) = key {
        request.metadata_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    if let Some(client_id) = client_id {
        request.metadata_mut().insert("x-client-id", client_id.parse().unwrap());
    }
    request
}

#[tokio::test]
async fn authentication_is_per_client_like_ingestion() {
    let running = start().await;
    let mut features = FeatureServiceClient::new(channel(running.addr).await);
    let refs = ["activity:orders_30d"];
    let shop = running.keys.shop.as_str();
    let rival = running.keys.rival.as_str();
    let cases = [
        (None, Some("shop"), Code::Unauthenticated, "missing `authorization: Bearer <api key>`"),
        (Some("lvk_0000"), Some("shop"), Code::Unauthenticated, "unknown or revoked api key"),
        (Some(rival), Some("shop"), Code::PermissionDenied, "does not belong to client `shop`"),
        (Some(shop), None, Code::InvalidArgument, "x-client-id"),
    ];
    for (key, client_id, code, message) in cases {
        let status = features.get_online_features(request(&refs, &["u-1"], key, client_id)).await.unwrap_err();
        assert_eq!(status.code(), code, "{key:?} as {client_id:?}: {status:?}");
        assert!(status.message().contains(message), "{status:?}");
    }
}

#[tokio::test]
async fn a_read_answers_typed_values_statuses_and_event_times() {
    let running = start().await;
    let f = &running.fixture;
    let t = now() - 60_000_000;
    f.write(
        "shop",
        "user",
        "u-1",
        "activity",
        t,
        vec![("orders_30d", Value::Int64(4)), ("last_category", Value::String("toys".into()))],
    )
    .await;
    let old = now() - 3 * HOUR;
    f.write("shop", "user", "u-2", "activity", old, vec![("orders_30d", Value::Int64(9))]).await;
    let mut features = FeatureServiceClient::new(channel(running.addr).await);

    let refs = ["activity:orders_30d", "activity:last_category"];
    let answer = features
        .get_online_features(request(&refs, &["u-1", "u-2", "u-3"], Some(&running.keys.shop), Some("shop")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.feature_names, ["orders_30d", "last_category"]);
    let orders = &answer.results[0];
    assert_eq!(orders.values[0].val, Some(Val::Int64Val(4)));
    assert_eq!(orders.values[1].val, None, "outside max age: withheld");
    assert_eq!(orders.values[2].val, None);
    let statuses = [pb::FeatureStatus::Present, pb::FeatureStatus::OutsideMaxAge, pb::FeatureStatus::Missing];
    assert_eq!(orders.statuses, statuses.map(|s| s as i32));
    let times: Vec<Option<i64>> = orders.event_timestamps.iter().map(livora_proto::timestamp_to_micros).collect();
    assert_eq!(times, [Some(t), Some(old), Some(0)]);
    assert_eq!(answer.results[1].values[0].val, Some(Val::StringVal("toys".into())));

    // The same through the feature service, with full names.
    let mut by_service = request(&[], &["u-1"], Some(&running.keys.shop), Some("shop"));
    by_service.get_mut().kind = Some(Kind::FeatureService("churn".into()));
    by_service.get_mut().full_feature_names = true;
    let answer = features.get_online_features(by_service).await.unwrap().into_inner();
    assert_eq!(answer.feature_names[0], "activity__orders_30d");
    assert_eq!(answer.feature_names.last().map(String::as_str), Some("profile__country"));
}

#[tokio::test]
async fn errors_carry_their_code_and_name_the_thing_at_fault() {
    let running = start().await;
    let mut features = FeatureServiceClient::new(channel(running.addr).await);
    let key = Some(running.keys.shop.as_str());
    let cases: [(&[&str], &[&str], Code, &str); 3] = [
        (&["activity:nope"], &["u-1"], Code::NotFound, "feature view `activity` has no feature `nope`"),
        (&["activity"], &["u-1"], Code::InvalidArgument, "features[0]"),
        (&["activity:orders_30d"], &[], Code::InvalidArgument, "entities.user_id: no values"),
    ];
    for (refs, users, code, message) in cases {
        let status = features.get_online_features(request(refs, users, key, Some("shop"))).await.unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().contains(message), "{status:?}");
    }
    let mut no_kind = request(&[], &["u-1"], key, Some("shop"));
    no_kind.get_mut().kind = None;
    let status = features.get_online_features(no_kind).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("feature_service"), "{status:?}");
}

#[tokio::test]
async fn health_reports_serving() {
    let running = start().await;
    let mut health = HealthClient::new(channel(running.addr).await);
    for service in ["", "livora.v1.FeatureService"] {
        let answer = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(answer.status, ServingStatus::Serving as i32, "`{service}`");
    }
    let status = health.check(HealthCheckRequest { service: "nope.Service".into() }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn reflection_lists_and_describes_the_service() {
    let running = start().await;
    let mut reflection = ServerReflectionClient::new(channel(running.addr).await);
    let requests = [
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol("livora.v1.FeatureService".into()),
    ]
    .map(|m| ServerReflectionRequest { host: String::new(), message_request: Some(m) });
    let mut answers = reflection.server_reflection_info(futures::stream::iter(requests)).await.unwrap().into_inner();

    let Some(MessageResponse::ListServicesResponse(list)) = answers.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected a list of services")
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in ["livora.v1.FeatureService", "grpc.health.v1.Health"] {
        assert!(names.contains(&expected), "{names:?}");
    }
    let Some(MessageResponse::FileDescriptorResponse(files)) = answers.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected file descriptors")
    };
    let files: Vec<prost_types::FileDescriptorProto> =
        files.file_descriptor_proto.iter().map(|b| prost::Message::decode(b.as_slice()).unwrap()).collect();
    let features = files.iter().find(|f| f.name() == "livora/v1/features.proto").expect("features.proto");
    assert_eq!(features.service[0].method[0].name(), "GetOnlineFeatures");
}
