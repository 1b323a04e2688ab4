"""The measurement the Flight benchmark's Python clients share (reference.py, pyarrow_client.py)."""

import json
import time


def report(started: float, batches) -> None:
    """Reads every record batch of `batches` and prints one JSON line: the seconds from `started`
    (a time.perf_counter()) to the first batch and to the end, the rows, the Arrow bytes
    (pyarrow's nbytes) and the batches."""
    first, rows, size, count = None, 0, 0, 0
    for batch in batches:
        if first is None:
            first = time.perf_counter() - started
        rows += batch.num_rows
        size += batch.nbytes
        count += 1
    total = time.perf_counter() - started
    print(json.dumps({"first_batch": first or 0.0, "total": total, "rows": rows, "bytes": size, "batches": count}))
