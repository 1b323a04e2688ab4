#!/usr/bin/env python3
"""The reference of the Flight benchmark (benches/flight/main.rs runs this): DuckDB reads the
same Parquet files into Arrow record batches, in-process, with no network.

    python3 reference.py GLOB BATCH_ROWS RUNS

Prints one JSON line per run: {"first_batch": s, "total": s, "rows": n, "bytes": n, "batches": n},
bytes being the Arrow buffers received (pyarrow's nbytes). Needs: pip install duckdb pyarrow.
"""

import sys
import time

import duckdb

from measure import report


def main() -> None:
    glob, batch_rows, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    for _ in range(runs):
        con = duckdb.connect()
        started = time.perf_counter()
        report(started, con.sql(f"SELECT * FROM read_parquet('{glob}')").to_arrow_reader(batch_rows))
        con.close()


if __name__ == "__main__":
    main()
