"""Interop: Python's grpcio reads features from a running `livora serve`.

No generated stubs and no .proto file: the client learns every type from the server's reflection
service (grpcio-reflection speaks grpc.reflection.v1alpha), then calls GetOnlineFeatures with
messages built from those descriptors, as any tool without our files would.

Usage: feature_serving_grpcio.py HOST:PORT API_KEY CLIENT_ID USER_ID
Also checks that KServe V2 (`inference.GRPCInferenceService`) is listed by reflection and live on
the same port. Prints the answer as JSON (protobuf's JSON mapping) on stdout; exits non-zero on
any failure.
"""

import json
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase


def main() -> None:
    target, key, client_id, user = sys.argv[1:5]
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="livora.v1.FeatureService"), timeout=10
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING, health

        database = ProtoReflectionDescriptorDatabase(channel)
        assert "livora.v1.FeatureService" in database.get_services(), database.get_services()
        pool = descriptor_pool.DescriptorPool(database)
        service = pool.FindServiceByName("livora.v1.FeatureService")
        method = service.methods_by_name["GetOnlineFeatures"]
        Request = message_factory.GetMessageClass(method.input_type)
        Response = message_factory.GetMessageClass(method.output_type)

        request = Request()
        request.feature_service = "churn"
        request.entities["user_id"].val.add().string_val = user
        request.full_feature_names = True
        call = channel.unary_unary(
            "/livora.v1.FeatureService/GetOnlineFeatures",
            request_serializer=Request.SerializeToString,
            response_deserializer=Response.FromString,
        )
        metadata = [("authorization", f"Bearer {key}"), ("x-client-id", client_id)]
        answer = call(request, metadata=metadata, timeout=10)

        # Model inference shares the port: KServe V2 is listed by reflection and answers a probe.
        assert "inference.GRPCInferenceService" in database.get_services(), database.get_services()
        live = pool.FindServiceByName("inference.GRPCInferenceService").methods_by_name["ServerLive"]
        probe = channel.unary_unary(
            "/inference.GRPCInferenceService/ServerLive",
            request_serializer=message_factory.GetMessageClass(live.input_type).SerializeToString,
            response_deserializer=message_factory.GetMessageClass(live.output_type).FromString,
        )
        assert probe(message_factory.GetMessageClass(live.input_type)(), timeout=10).live
        print(json.dumps(json_format.MessageToDict(answer, preserving_proto_field_name=True)))

        # A key presented for another client is refused with PERMISSION_DENIED.
        try:
            call(request, metadata=[("authorization", f"Bearer {key}"), ("x-client-id", "someone-else")], timeout=10)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.PERMISSION_DENIED, e
        else:
            raise AssertionError("a key of another client was accepted")


if __name__ == "__main__":
    main()
