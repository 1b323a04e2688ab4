//! Livora's gRPC contracts, compiled once for every room.
//!
//! The `.proto` files live under `proto/` and are compiled at build time by `protox` (pure Rust,
//! no `protoc`) into prost messages and tonic services:
//! - [`livora::v1`]: feature serving (`livora.v1.FeatureService`) and model inference on online
//!   features (`livora.v1.InferenceService`);
//! - [`inference`]: KServe's Open Inference Protocol V2 (`inference.GRPCInferenceService`), the
//!   standard API for scoring features the caller brings, as the specification defines it.
//!
//! [`FILE_DESCRIPTOR_SET`] is the encoded descriptor set of every file (with imports and
//! comments), for gRPC reflection; [`FLIGHT_FILE_DESCRIPTOR_SET`] that of Arrow Flight's service,
//! for a port that serves it. [`status`] turns an error class into a `tonic::Status`: every
//! gRPC service answers errors through it, so that gRPC codes follow from [`ErrorCode`] in one
//! place, as HTTP statuses do.

use livora_common::ErrorCode;

/// The `livora.*` packages.
pub mod livora {
    /// Version 1 of Livora's APIs.
    #[allow(missing_docs, clippy::all, clippy::pedantic)]
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/livora.v1.rs"));
    }
}

/// KServe's Open Inference Protocol V2 (`proto/inference/grpc_predict_v2.proto`), package
/// `inference`: the specification's names and field numbers, which standard clients (tritonclient,
/// KServe's SDK) speak. How Livora reads its tensors is written at the top of the `.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod inference {
    include!(concat!(env!("OUT_DIR"), "/inference.rs"));
}

/// The encoded `FileDescriptorSet` of every Livora `.proto` (with the well-known types they
/// import), for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/livora_descriptor.bin"));

/// The encoded `FileDescriptorSet` of Arrow Flight's service (`arrow.flight.protocol`,
/// `proto/arrow/flight.proto`), for reflection on a port that serves Flight. Only the descriptors:
/// the `arrow-flight` crate has the service's code.
pub const FLIGHT_FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/flight_descriptor.bin"));

/// The gRPC code of an error class.
pub fn code(code: ErrorCode) -> tonic::Code {
    match code {
        ErrorCode::InvalidArgument | ErrorCode::UnsupportedMediaType => tonic::Code::InvalidArgument,
        ErrorCode::Unauthenticated => tonic::Code::Unauthenticated,
        ErrorCode::PermissionDenied => tonic::Code::PermissionDenied,
        ErrorCode::NotFound => tonic::Code::NotFound,
        ErrorCode::PayloadTooLarge | ErrorCode::ResourceExhausted => tonic::Code::ResourceExhausted,
        ErrorCode::Unavailable => tonic::Code::Unavailable,
        ErrorCode::Unimplemented => tonic::Code::Unimplemented,
        ErrorCode::Internal => tonic::Code::Internal,
    }
}

/// The `tonic::Status` of an error of class `class` described by `message`.
pub fn status(class: ErrorCode, message: impl Into<String>) -> tonic::Status {
    tonic::Status::new(code(class), message)
}

/// An instant in microseconds since the Unix epoch as a protobuf `Timestamp`.
pub fn timestamp_from_micros(micros: i64) -> prost_types::Timestamp {
    // Euclidean division keeps `nanos` in 0..1e9 for instants before the epoch, as the type requires.
    let seconds = micros.div_euclid(1_000_000);
    let nanos = (micros.rem_euclid(1_000_000) * 1000) as i32;
    prost_types::Timestamp { seconds, nanos }
}

/// A protobuf `Timestamp` in microseconds since the Unix epoch (sub-microsecond digits are
/// dropped); `None` when it does not fit in an `i64` of microseconds.
pub fn timestamp_to_micros(t: &prost_types::Timestamp) -> Option<i64> {
    t.seconds.checked_mul(1_000_000)?.checked_add(i64::from(t.nanos).div_euclid(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_both_sides_of_the_epoch() {
        for micros in [0, 1, -1, 1_700_000_000_123_456, -1_500_000, i64::MAX / 2] {
            let t = timestamp_from_micros(micros);
            assert!((0..1_000_000_000).contains(&t.nanos), "{t:?}");
            assert_eq!(timestamp_to_micros(&t), Some(micros));
        }
        assert_eq!(timestamp_to_micros(&prost_types::Timestamp { seconds: i64::MAX, nanos: 0 }), None);
    }

    #[test]
    fn the_descriptor_set_holds_kserve_v2_with_the_specifications_numbers() {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("a descriptor set");
        let file = set
            .file
            .iter()
            .find(|f| f.name() == "inference/grpc_predict_v2.proto")
            .expect("KServe V2 is in the descriptor set served by reflection");
        assert_eq!(file.package(), "inference");
        let service = &file.service[0];
        assert_eq!(service.name(), "GRPCInferenceService");
        let rpcs: Vec<&str> = service.method.iter().map(|m| m.name()).collect();
        assert_eq!(rpcs, ["ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer"]);
        // The numbers tritonclient encodes: a renumbered field would silently read as empty.
        let fields = |message: &str| -> Vec<(String, i32)> {
            let m = file.message_type.iter().find(|m| m.name() == message).expect(message);
            m.field.iter().map(|f| (f.name().to_owned(), f.number())).collect()
        };
        let named = |pairs: &[(&str, i32)]| -> Vec<(String, i32)> {
            pairs.iter().map(|(n, i)| ((*n).to_owned(), *i)).collect()
        };
        assert_eq!(
            fields("ModelInferRequest"),
            named(&[
                ("model_name", 1),
                ("model_version", 2),
                ("id", 3),
                ("parameters", 4),
                ("inputs", 5),
                ("outputs", 6),
                ("raw_input_contents", 7)
            ])
        );
        assert_eq!(
            fields("ModelInferResponse"),
            named(&[
                ("model_name", 1),
                ("model_version", 2),
                ("id", 3),
                ("parameters", 4),
                ("outputs", 5),
                ("raw_output_contents", 6)
            ])
        );
        assert_eq!(
            fields("InferTensorContents"),
            named(&[
                ("bool_contents", 1),
                ("int_contents", 2),
                ("int64_contents", 3),
                ("uint_contents", 4),
                ("uint64_contents", 5),
                ("fp32_contents", 6),
                ("fp64_contents", 7),
                ("bytes_contents", 8)
            ])
        );
        // Generated types, as the services use them.
        let tensor = inference::model_infer_request::InferInputTensor::default();
        assert!(tensor.contents.is_none() && tensor.parameters.is_empty());
    }

    #[test]
    fn error_classes_map_to_grpc_codes() {
        assert_eq!(code(ErrorCode::InvalidArgument), tonic::Code::InvalidArgument);
        assert_eq!(code(ErrorCode::NotFound), tonic::Code::NotFound);
        assert_eq!(code(ErrorCode::Unauthenticated), tonic::Code::Unauthenticated);
        assert_eq!(code(ErrorCode::PermissionDenied), tonic::Code::PermissionDenied);
        assert_eq!(code(ErrorCode::Unavailable), tonic::Code::Unavailable);
        assert_eq!(code(ErrorCode::ResourceExhausted), tonic::Code::ResourceExhausted);
        assert_eq!(code(ErrorCode::Internal), tonic::Code::Internal);
        assert_eq!(code(ErrorCode::Unimplemented), tonic::Code::Unimplemented);
        let s = status(ErrorCode::NotFound, "feature view `x`");
        assert_eq!((s.code(), s.message()), (tonic::Code::NotFound, "feature view `x`"));
    }
}
