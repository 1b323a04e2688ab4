#!/usr/bin/env python3
"""The Python analyst's pull in the Flight benchmark (benches/flight/main.rs runs this):
pyarrow.flight's client, in a process of its own, pulls a dataset from the bench's server.

    python3 pyarrow_client.py ADDRESS API_KEY PATH_JSON RUNS

PATH_JSON is the descriptor's path as a JSON list (["events"]). Prints one JSON line per run,
as reference.py does: {"first_batch": s, "total": s, "rows": n, "bytes": n, "batches": n}, the
first batch timed from GetFlightInfo and bytes being the Arrow buffers received (pyarrow's
nbytes, as for DuckDB). Needs: pip install pyarrow.
"""

import json
import sys
import time

import pyarrow.flight as flight

from measure import report


def main() -> None:
    address, key, path, runs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
    client = flight.FlightClient(f"grpc://{address}")
    options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {key}".encode())])
    for _ in range(runs):
        started = time.perf_counter()
        info = client.get_flight_info(flight.FlightDescriptor.for_path(*path), options)
        reader = client.do_get(info.endpoints[0].ticket, options)
        report(started, (chunk.data for chunk in reader))
    client.close()


if __name__ == "__main__":
    main()
