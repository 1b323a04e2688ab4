//! KServe V2 (`inference.GRPCInferenceService`) against real parts: the shop's registered churn
//! model, its clients' keys, a server on a free local port, the generated client — and
//! NVIDIA's `tritonclient` from Python (`tests/python/kserve_client.py`), a client nobody here
//! wrote.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use common::shop::{Setup, artifact, authorized, channel, setup, shop};
use livora_inference::GrpcKserveService;
use livora_models::Input;
use livora_proto::inference as pb;
use pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use pb::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use pb::{InferTensorContents, ModelInferRequest};
use polars::prelude::{ParquetReader, SerReader};
use tonic::Code;
use tonic::transport::Channel;

const ORDERS: &str = "user_activity__orders_30d";
const DAYS: &str = "user_activity__days_since_last_seen";
const CHANNEL: &str = "user_activity__last_touch_channel";

/// What the tritonclient script needs when it is missing.
const INSTALL: &str = "install the KServe V2 client the interop test drives: python3 -m pip install 'tritonclient[grpc]' \
     (or run `bash .ci/services`)";

/// Feature rows: orders, days since last seen, channel; `None` is missing.
type Rows = [(Option<f64>, Option<f64>, Option<&'static str>)];

/// Known values, an unseen category, and every feature missing.
const ROWS: &Rows = &[
    (Some(0.0), Some(30.0), Some("email")),
    (Some(4.0), Some(1.0), Some("web")),
    (Some(2.0), Some(12.5), Some("sms")),
    (None, None, None),
];

/// The probability the zoo's code computes for each row, on the artifact that was registered.
fn expected(rows: &Rows) -> Vec<f64> {
    let trained = artifact(1, 0.0);
    rows.iter()
        .map(|(orders, days, channel)| {
            let number = |v: &Option<f64>| v.map_or(Input::Missing, Input::Number);
            let text = channel.map_or(Input::Missing, Input::Text);
            trained.score(&[number(orders), number(days), text], 0).unwrap().probability
        })
        .collect()
}

async fn serve(s: &Setup) -> (SocketAddr, GrpcInferenceServiceClient<Channel>) {
    let service = GrpcKserveService::new(s.predictor.clone(), s.clients.clone());
    let addr = common::shop::serve(tonic::service::Routes::new(service.into_server())).await;
    (addr, GrpcInferenceServiceClient::new(channel(addr).await))
}

fn input(name: &str, datatype: &str, shape: &[i64], contents: Option<InferTensorContents>) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape: shape.to_vec(),
        contents,
        ..Default::default()
    }
}

/// Triton's raw BYTES: each element's length (4 bytes, little-endian), then the element.
fn raw_bytes(elements: &[&str]) -> Vec<u8> {
    elements.iter().flat_map(|e| (e.len() as u32).to_le_bytes().into_iter().chain(e.bytes())).collect()
}

/// `rows` as raw tensors: orders INT64 `[N]` (missing orders as 0: INT64 has no NaN, so the raw
/// request gives every row's orders), days FP64 `[N, 1]`, channel BYTES.
fn raw_request(rows: &Rows) -> ModelInferRequest {
    let n = rows.len() as i64;
    let orders: Vec<u8> = rows.iter().flat_map(|r| (r.0.unwrap_or(0.0) as i64).to_le_bytes()).collect();
    let days: Vec<u8> = rows.iter().flat_map(|r| r.1.unwrap_or(f64::NAN).to_le_bytes()).collect();
    let channels: Vec<&str> = rows.iter().map(|r| r.2.unwrap_or("")).collect();
    ModelInferRequest {
        model_name: "churn".into(),
        id: "req-raw".into(),
        inputs: vec![
            input(CHANNEL, "BYTES", &[n], None),
            input(ORDERS, "INT64", &[n], None),
            input(DAYS, "FP64", &[n, 1], None),
        ],
        raw_input_contents: vec![raw_bytes(&channels), orders, days],
        ..Default::default()
    }
}

/// `rows` as typed contents: orders FP32 (NaN: missing), days FP64, channel BYTES.
fn typed_request(rows: &Rows) -> ModelInferRequest {
    let n = rows.len() as i64;
    let contents = |c: InferTensorContents| Some(c);
    ModelInferRequest {
        model_name: "churn".into(),
        model_version: "production".into(),
        inputs: vec![
            input(
                ORDERS,
                "FP32",
                &[n, 1],
                contents(InferTensorContents {
                    fp32_contents: rows.iter().map(|r| r.0.map_or(f32::NAN, |v| v as f32)).collect(),
                    ..Default::default()
                }),
            ),
            input(
                DAYS,
                "FP64",
                &[n],
                contents(InferTensorContents {
                    fp64_contents: rows.iter().map(|r| r.1.unwrap_or(f64::NAN)).collect(),
                    ..Default::default()
                }),
            ),
            input(
                CHANNEL,
                "BYTES",
                &[n],
                contents(InferTensorContents {
                    bytes_contents: rows.iter().map(|r| r.2.unwrap_or("").as_bytes().to_vec()).collect(),
                    ..Default::default()
                }),
            ),
        ],
        ..Default::default()
    }
}

fn assert_close(got: &[f64], want: &[f64], tolerance: f64) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (row, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tolerance, "row {row}: served {g}, the zoo's code {w}");
    }
}

#[tokio::test]
async fn model_infer_scores_equal_the_training_code_raw_and_typed() {
    let s = setup().await;
    let (_, mut grpc) = serve(&s).await;
    let key = s.keys.0.clone();

    // Raw: the answer is raw too. INT64 has no NaN, so every row gives its orders here.
    let rows: &Rows = &[ROWS[0], ROWS[1], ROWS[2], (Some(0.0), None, None)];
    let answer = grpc.model_infer(authorized(raw_request(rows), &key, "shop")).await.unwrap().into_inner();
    assert_eq!(
        (answer.model_name.as_str(), answer.model_version.as_str(), answer.id.as_str()),
        ("churn", "1", "req-raw")
    );
    let output = &answer.outputs[0];
    assert_eq!(
        (output.name.as_str(), output.datatype.as_str(), output.shape.as_slice()),
        ("probability", "FP64", &[4][..])
    );
    assert_eq!(output.contents, None);
    assert_eq!(answer.raw_output_contents.len(), 1);
    let raw: Vec<f64> =
        answer.raw_output_contents[0].chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect();
    assert_close(&raw, &expected(rows), 1e-12);

    // Typed: the answer is typed. Every value missing in the last row, imputed as in training.
    let typed = grpc.model_infer(authorized(typed_request(ROWS), &key, "shop")).await.unwrap().into_inner();
    assert!(typed.raw_output_contents.is_empty());
    assert_eq!(typed.model_version, "1", "`production` points at 1");
    let scores = typed.outputs[0].contents.clone().unwrap().fp64_contents;
    // FP32 orders are small integers: exact in float32, so the same scores to the last bit or so.
    assert_close(&scores, &expected(ROWS), 1e-12);
    assert!(scores[0] != scores[1] && scores[3] != scores[0], "the inputs matter: {scores:?}");

    // Asking for the output by name is the same; a version and an alias name versions.
    let mut request = typed_request(ROWS);
    request.outputs = vec![InferRequestedOutputTensor { name: "probability".into(), ..Default::default() }];
    s.models.register(&shop(), &artifact(2, 15.0)).await.unwrap();
    s.models.promote(&shop(), "churn", 2, "staging").await.unwrap();
    for (version, served) in [("1", "1"), ("2", "2"), ("staging", "2"), ("", "1")] {
        request.model_version = version.into();
        let answer = grpc.model_infer(authorized(request.clone(), &key, "shop")).await.unwrap().into_inner();
        assert_eq!(answer.model_version, served, "model_version {version:?}");
    }
}

#[tokio::test]
async fn every_invalid_request_is_invalid_argument_naming_the_input() {
    let s = setup().await;
    let (_, mut grpc) = serve(&s).await;
    let key = s.keys.0.clone();
    let base = || raw_request(&ROWS[..2]);
    let edit = |f: &dyn Fn(&mut ModelInferRequest)| {
        let mut r = base();
        f(&mut r);
        r
    };
    // Inputs of `base`: 0 channel (BYTES), 1 orders (INT64), 2 days (FP64 [N, 1]).
    let cases: Vec<(ModelInferRequest, &str)> = vec![
        (
            edit(&|r| r.inputs[1].name = "user_activity__orders_7d".into()),
            "input `user_activity__orders_7d`: not a feature of the model, which reads `user_activity__orders_30d`",
        ),
        (
            edit(&|r| r.inputs[0].name = DAYS.into()),
            "input `user_activity__days_since_last_seen`: datatype BYTES, but the feature is numeric",
        ),
        (
            edit(&|r| {
                r.inputs[2] = r.inputs[1].clone();
                r.raw_input_contents[2] = r.raw_input_contents[1].clone();
            }),
            "input `user_activity__orders_30d`: given twice",
        ),
        (
            edit(&|r| {
                r.inputs.pop();
                r.raw_input_contents.pop();
            }),
            "input `user_activity__days_since_last_seen`: missing; every feature of the model must be given",
        ),
        (
            edit(&|r| r.inputs[0].datatype = "FP64".into()),
            "input `user_activity__last_touch_channel`: datatype FP64, but the feature is categorical: send BYTES",
        ),
        (
            edit(&|r| r.inputs[1].datatype = "UINT8".into()),
            "input `user_activity__orders_30d`: datatype \"UINT8\" is not accepted: send FP64, FP32, INT64, INT32 or BOOL",
        ),
        (
            edit(&|r| r.inputs[1].datatype = "FP32".into()),
            "input `user_activity__orders_30d`: 16 raw bytes for 2 FP32 values (8 expected)",
        ),
        (
            edit(&|r| r.inputs[2].shape = vec![1, 2]),
            "input `user_activity__days_since_last_seen`: shape [1, 2]: give [N] or [N, 1]",
        ),
        (
            edit(&|r| r.inputs[2].shape = vec![3]),
            "input `user_activity__days_since_last_seen`: 3 rows, but input `user_activity__last_touch_channel` has 2",
        ),
        (
            edit(&|r| r.inputs[2].shape = vec![]),
            "input `user_activity__days_since_last_seen`: shape []: give [N] or [N, 1]",
        ),
        (
            edit(&|r| r.raw_input_contents[0] = raw_bytes(&["email"])[..6].to_vec()),
            "input `user_activity__last_touch_channel`: raw BYTES element 0 claims 5 bytes, 2 remain",
        ),
        (
            edit(&|r| r.raw_input_contents[0] = [5, 0, 0, 0, 0xff, 0xfe, b'a', b'b', b'c', 1, 0, 0, 0, b'x'].to_vec()),
            "input `user_activity__last_touch_channel`: element 0 is not UTF-8",
        ),
        (
            edit(&|r| {
                r.raw_input_contents.pop();
            }),
            "raw_input_contents: 2 entries for 3 inputs",
        ),
        (
            edit(&|r| {
                r.inputs[2].contents = Some(InferTensorContents { fp64_contents: vec![1.0, 2.0], ..Default::default() })
            }),
            "input `user_activity__days_since_last_seen`: sets `contents` while the request sends raw_input_contents",
        ),
        (
            edit(&|r| {
                r.raw_input_contents.clear();
            }),
            "input `user_activity__last_touch_channel`: 0 values in contents.bytes_contents, but the shape says 2",
        ),
        (
            edit(&|r| r.outputs = vec![InferRequestedOutputTensor { name: "score".into(), ..Default::default() }]),
            "outputs: the model has no output `score`; it gives `probability`",
        ),
        (
            edit(&|r| {
                r.inputs.clear();
                r.raw_input_contents.clear();
            }),
            "inputs: none given",
        ),
        (edit(&|r| r.model_name = "churn@2".into()), "model_name: `churn@2` names a version"),
        (edit(&|r| r.model_version = "prod".into()), "alias: `prod` is not one of production, staging, shadow"),
    ];
    for (request, says) in cases {
        let e = grpc.model_infer(authorized(request, &key, "shop")).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{says}: {e:?}");
        assert!(e.message().contains(says), "{:?} does not say {says:?}", e.message());
    }
}

#[tokio::test]
async fn credentials_and_tenancy_as_for_predict() {
    let s = setup().await;
    let (_, mut grpc) = serve(&s).await;
    let (shop_key, rival_key) = (s.keys.0.clone(), s.keys.1.clone());
    let infer = |key: &str, client: &str| authorized(raw_request(ROWS), key, client);

    // Probes need no credentials; model calls do.
    assert!(grpc.server_live(pb::ServerLiveRequest {}).await.unwrap().into_inner().live);
    assert!(grpc.server_ready(pb::ServerReadyRequest {}).await.unwrap().into_inner().ready);
    let server = grpc.server_metadata(pb::ServerMetadataRequest {}).await.unwrap().into_inner();
    assert_eq!(server.name, "livora");
    let e = grpc.model_infer(raw_request(ROWS)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let e = grpc.model_ready(pb::ModelReadyRequest { name: "churn".into(), version: String::new() }).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let e = grpc.model_infer(infer("lvk_wrong", "shop")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let e = grpc.model_infer(infer(&rival_key, "shop")).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");

    // Another client's key cannot see the shop's model: not found, not ready.
    let e = grpc.model_infer(infer(&rival_key, "rival")).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let metadata = pb::ModelMetadataRequest { name: "churn".into(), version: String::new() };
    let e = grpc.model_metadata(authorized(metadata, &rival_key, "rival")).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let ready = pb::ModelReadyRequest { name: "churn".into(), version: String::new() };
    assert!(!grpc.model_ready(authorized(ready.clone(), &rival_key, "rival")).await.unwrap().into_inner().ready);
    assert!(grpc.model_ready(authorized(ready, &shop_key, "shop")).await.unwrap().into_inner().ready);
    assert!(grpc.model_infer(infer(&shop_key, "shop")).await.is_ok());
}

#[tokio::test]
async fn model_ready_and_metadata_describe_the_versions_and_the_inputs() {
    let s = setup().await;
    let (_, mut grpc) = serve(&s).await;
    let key = s.keys.0.clone();
    s.models.register(&shop(), &artifact(2, 15.0)).await.unwrap();
    s.models.promote(&shop(), "churn", 2, "staging").await.unwrap();

    let ready = |version: &str| {
        authorized(pb::ModelReadyRequest { name: "churn".into(), version: version.into() }, &key, "shop")
    };
    for (version, is_ready) in
        [("", true), ("1", true), ("2", true), ("staging", true), ("9", false), ("shadow", false)]
    {
        let answer = grpc.model_ready(ready(version)).await.unwrap().into_inner();
        assert_eq!(answer.ready, is_ready, "version {version:?}");
    }
    let unknown =
        authorized(pb::ModelReadyRequest { name: "lead_scoring".into(), version: String::new() }, &key, "shop");
    assert!(!grpc.model_ready(unknown).await.unwrap().into_inner().ready);
    let e = grpc.model_ready(ready("prod")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "an alias that cannot exist is the caller's mistake: {e:?}");

    let metadata = |version: &str| {
        authorized(pb::ModelMetadataRequest { name: "churn".into(), version: version.into() }, &key, "shop")
    };
    let m = grpc.model_metadata(metadata("")).await.unwrap().into_inner();
    assert_eq!((m.name.as_str(), m.platform.as_str()), ("churn", "livora-logistic"));
    assert_eq!(m.versions, ["2", "1"], "every registered version, newest first");
    let described: Vec<(&str, &str, &[i64])> =
        m.inputs.iter().map(|t| (t.name.as_str(), t.datatype.as_str(), t.shape.as_slice())).collect();
    assert_eq!(described, [(ORDERS, "FP64", &[-1][..]), (DAYS, "FP64", &[-1][..]), (CHANNEL, "BYTES", &[-1][..])]);
    let outputs: Vec<(&str, &str, &[i64])> =
        m.outputs.iter().map(|t| (t.name.as_str(), t.datatype.as_str(), t.shape.as_slice())).collect();
    assert_eq!(outputs, [("probability", "FP64", &[-1][..])]);
    assert_eq!(grpc.model_metadata(metadata("staging")).await.unwrap().into_inner().name, "churn");
    let e = grpc.model_metadata(metadata("9")).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains("no version 9"), "{e:?}");
}

#[tokio::test]
async fn tritonclient_scores_like_the_training_code() {
    let s = setup().await;
    let (addr, _) = serve(&s).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("features.json");
    let orders: Vec<Option<f64>> = ROWS.iter().map(|r| r.0).collect();
    let days: Vec<Option<f64>> = ROWS.iter().map(|r| r.1).collect();
    let channels: Vec<Option<&str>> = ROWS.iter().map(|r| r.2).collect();
    let features = serde_json::json!({ ORDERS: orders, DAYS: days, CHANNEL: channels });
    std::fs::write(&file, features.to_string()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/kserve_client.py");
    let args: Vec<String> = [
        script,
        "--url",
        &addr.to_string(),
        "--key",
        &s.keys.0,
        "--client",
        "shop",
        "--model",
        "churn",
        "--features-json",
        file.to_str().unwrap(),
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .collect();
    // The client blocks: run it off the runtime that serves it.
    let stdout = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::python_or(&args, INSTALL)
    })
    .await
    .unwrap();
    let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let probabilities: Vec<f64> = serde_json::from_value(answer["probabilities"].clone()).unwrap();
    assert_close(&probabilities, &expected(ROWS), 1e-9);
    assert_eq!(answer["model_version"], "1");
    assert_eq!(answer["platform"], "livora-logistic");
    // protobuf's JSON mapping writes int64 as strings.
    assert_eq!(answer["inputs"][2], serde_json::json!({"name": CHANNEL, "datatype": "BYTES", "shape": ["-1"]}));
    println!("tritonclient: {} probabilities equal the zoo's code's to 1e-9", probabilities.len());
}

#[tokio::test]
async fn every_model_infer_is_logged_with_its_entity_keys_when_the_caller_sends_them() {
    let s = setup().await;
    let (_, mut grpc) = serve(&s).await;
    let rows: &Rows = &ROWS[..2];
    let mut request = typed_request(rows);
    // The optional input named as the join key: the entities the rows are of.
    request.inputs.push(input(
        "user_id",
        "BYTES",
        &[2],
        Some(InferTensorContents { bytes_contents: vec![b"k-1".to_vec(), b"k-2".to_vec()], ..Default::default() }),
    ));
    let keyed = grpc.model_infer(authorized(request, &s.keys.0, "shop")).await.unwrap().into_inner();
    let keyed = keyed.outputs[0].contents.clone().unwrap().fp64_contents;
    // Without the keys the rows are logged all the same.
    let plain = grpc.model_infer(authorized(typed_request(&ROWS[2..3]), &s.keys.0, "shop")).await.unwrap().into_inner();
    let plain = plain.outputs[0].contents.clone().unwrap().fp64_contents;
    s.sink.flush().await.unwrap();

    let dir = s.lake.join("predictions/churn/client_id=shop");
    let mut logged: Vec<(String, f64)> = Vec::new();
    for day in std::fs::read_dir(&dir).unwrap() {
        for file in std::fs::read_dir(day.unwrap().path()).unwrap() {
            let frame = ParquetReader::new(std::fs::File::open(file.unwrap().path()).unwrap()).finish().unwrap();
            let keys = frame.column("user_id").unwrap().str().unwrap().clone();
            let scores = frame.column("churn_probability").unwrap().f64().unwrap().clone();
            let features = frame.column("features").unwrap().str().unwrap().clone();
            for i in 0..frame.height() {
                assert!(features.get(i).unwrap().contains(ORDERS), "the features are logged");
                logged.push((keys.get(i).unwrap().to_owned(), scores.get(i).unwrap()));
            }
        }
    }
    logged.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(logged, [("".to_owned(), plain[0]), ("k-1".to_owned(), keyed[0]), ("k-2".to_owned(), keyed[1])]);

    // A BYTES key input with an empty element is refused, naming it.
    let mut request = typed_request(&ROWS[..1]);
    request.inputs.push(input(
        "user_id",
        "BYTES",
        &[1],
        Some(InferTensorContents { bytes_contents: vec![Vec::new()], ..Default::default() }),
    ));
    let e = grpc.model_infer(authorized(request, &s.keys.0, "shop")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("input `user_id`: row 0: an empty entity key"), "{e:?}");
}
