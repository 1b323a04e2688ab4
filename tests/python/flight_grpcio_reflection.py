"""Interop: Arrow Flight on `livora serve`'s port, learnt from gRPC reflection alone.

Usage: flight_grpcio_reflection.py HOST:PORT CLIENT_ID API_KEY

No Flight library and no .proto file: grpcio's reflection client (grpc.reflection.v1alpha) finds
`arrow.flight.protocol.FlightService`, and every message below is built and read from the
descriptors the server sends, as `grpcurl` would. Lists the flights (a server stream) and asks for
the info of the events by path. Prints a JSON summary on stdout; the Rust test
(`cli/tests/flight_e2e.rs`) checks it against what pyarrow.flight read. Exits non-zero on any
failure.
"""

import json
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

SERVICE = "arrow.flight.protocol.FlightService"


def main() -> None:
    target, client_id, key = sys.argv[1:4]
    metadata = [("authorization", f"Bearer {key}"), ("x-client-id", client_id)]
    with grpc.insecure_channel(target) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = sorted(database.get_services())
        pool = descriptor_pool.DescriptorPool(database)
        methods = pool.FindServiceByName(SERVICE).methods_by_name

        def call(name, kind):
            method = methods[name]
            request = message_factory.GetMessageClass(method.input_type)
            response = message_factory.GetMessageClass(method.output_type)
            stub = getattr(channel, kind)(
                f"/{SERVICE}/{name}",
                request_serializer=request.SerializeToString,
                response_deserializer=response.FromString,
            )
            return request, stub

        criteria, list_flights = call("ListFlights", "unary_stream")
        flights = list_flights(criteria(), metadata=metadata, timeout=30)
        listed = [list(info.flight_descriptor.path) for info in flights]

        descriptor, get_flight_info = call("GetFlightInfo", "unary_unary")
        request = descriptor()
        path_type = descriptor.DESCRIPTOR.enum_types_by_name["DescriptorType"].values_by_name["PATH"]
        request.type = path_type.number
        request.path.append("events")
        info = get_flight_info(request, metadata=metadata, timeout=30)
        as_json = json_format.MessageToDict(info, preserving_proto_field_name=True)

        get = methods["GetFlightInfo"]
        print(
            json.dumps(
                {
                    "services": services,
                    "methods": sorted(methods),
                    "get_flight_info": [get.input_type.full_name, get.output_type.full_name],
                    "listed": listed,
                    "descriptor": as_json["flight_descriptor"],
                    "total_records": info.total_records,
                    "endpoints": len(info.endpoint),
                    "ticket_bytes": len(info.endpoint[0].ticket.ticket),
                    "schema_bytes": len(info.schema),
                }
            )
        )


if __name__ == "__main__":
    main()
