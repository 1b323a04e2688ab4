"""Interop: pyarrow.flight pulls datasets from a running `livora serve`, as an analyst would.

Usage: flight_pyarrow.py HOST:PORT CLIENT_ID API_KEY OTHER_API_KEY

Authenticates with the Flight handshake (`authenticate_basic_token`: user = client id, password
= api key) and with plain headers, lists the client's datasets, reads events by path and by
command, uploads entity rows with DoPut and reads the point-in-time dataset they drive, and
records what each mistake answers (including another client's ticket). Prints a JSON summary on
stdout; the Rust test (`cli/tests/flight_e2e.rs`) checks it. Exits non-zero on any unexpected
failure.
"""

import json
import sys
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.flight as flight


def failure(call):
    """The exception type and message a call fails with."""
    try:
        call()
    except flight.FlightError as e:
        return {"type": type(e).__name__, "message": str(e)}
    except pa.ArrowException as e:
        return {"type": type(e).__name__, "message": str(e)}
    raise AssertionError("the call should have failed")


def main() -> None:
    target, client_id, key, other_key = sys.argv[1:5]
    client = flight.connect(f"grpc://{target}")
    out = {}

    # The handshake gives a bearer token; headers work as they are too.
    token = client.authenticate_basic_token(client_id, key)
    options = flight.FlightCallOptions(headers=[token])
    out["token_header"] = token[0].decode()
    headers = flight.FlightCallOptions(
        headers=[(b"authorization", f"Bearer {key}".encode()), (b"x-client-id", client_id.encode())]
    )

    listed = list(client.list_flights(options=options))
    out["listed"] = [[p.decode() for p in info.descriptor.path] for info in listed]
    out["listed_schemas"] = {"/".join(p.decode() for p in i.descriptor.path): i.schema.names for i in listed}

    info = client.get_flight_info(flight.FlightDescriptor.for_path("events"), options=headers)
    events = client.do_get(info.endpoints[0].ticket, options=headers).read_all()
    out["events_rows"] = events.num_rows
    out["events_columns"] = events.schema.names

    command = {"dataset": "events", "event_types": ["purchase"]}
    info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(command)), options=options)
    purchases = client.do_get(info.endpoints[0].ticket, options=options).read_all()
    out["purchase_rows"] = purchases.num_rows
    out["purchase_types"] = sorted(set(purchases.column("event_type").to_pylist()))

    # Entity rows up, a point-in-time dataset down.
    entities = pa.table(
        {
            "user_id": ["u-1", "u-1", "u-404"],
            "event_timestamp": pa.array(
                [
                    datetime(2024, 3, 2, 12, tzinfo=timezone.utc),
                    datetime(2024, 3, 5, tzinfo=timezone.utc),
                    datetime(2024, 3, 5, tzinfo=timezone.utc),
                ],
                type=pa.timestamp("us", tz="UTC"),
            ),
        }
    )
    writer, reader = client.do_put(flight.FlightDescriptor.for_path("entities"), entities.schema, options=options)
    writer.write_table(entities, max_chunksize=65536)
    writer.done_writing()
    upload = json.loads(reader.read().to_pybytes())
    writer.close()
    out["upload_rows"] = upload["rows"]
    command = {"dataset": "training", "features": ["user_activity:orders_30d"], "entities": upload["entities"]}
    info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(command)), options=options)
    training = client.do_get(info.endpoints[0].ticket, options=options).read_all()
    out["training"] = training.select(["user_id", "orders_30d"]).to_pylist()

    # Mistakes, and another client.
    out["unknown_dataset"] = failure(
        lambda: client.get_flight_info(flight.FlightDescriptor.for_path("sales"), options=options)
    )
    out["bad_range"] = failure(
        lambda: client.get_flight_info(
            flight.FlightDescriptor.for_command(
                json.dumps({"dataset": "events", "start": "2024-03-02T00:00:00Z", "end": "2024-03-01T00:00:00Z"})
            ),
            options=options,
        )
    )
    out["no_credentials"] = failure(lambda: list(client.list_flights()))
    other = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {other_key}".encode())])
    out["other_listed"] = [[p.decode() for p in i.descriptor.path] for i in client.list_flights(options=other)]
    ticket = client.get_flight_info(flight.FlightDescriptor.for_path("events"), options=options).endpoints[0].ticket
    out["other_with_my_ticket"] = failure(lambda: client.do_get(ticket, options=other).read_all())

    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
