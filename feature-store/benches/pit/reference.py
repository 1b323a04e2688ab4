#!/usr/bin/env python3
"""Reference engines for the point-in-time benchmark (benches/pit/main.rs runs this).

Runs, on the Parquet files the Rust bench generated, the same point-in-time retrieval with
either Feast's local offline store (FeatureStore with a file source, get_historical_features
(...).to_df()) or DuckDB's ASOF JOIN, and prints one line:

    RESULT rows=N returned=R seconds=S rss_mb=M checksum=... note=...

rows counts the entity rows asked for, returned the rows of the answer: Feast's file offline store
drops an entity row when a view has no row for it within its ttl (DuckDB and Livora keep it
with nulls), so its answer can be shorter and its checksum differ.

The checksum (non-null count and sum of each view's first feature) is the one the Rust bench
prints, so that the engines can be seen to agree.

    python3 reference.py --dir DIR --engine duckdb|feast [--rows N]

--rows takes the first N entity rows only (Feast is too slow for the full set).
Needs: pip install feast duckdb  (fails with that command when they are missing).
"""

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from datetime import timedelta


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def checksum(df, views):
    parts = []
    for view in views:
        column = df[view["features"][0]]
        parts.append("%s:%d/%.2f" % (view["name"], int(column.notna().sum()), float(column.sum())))
    return ",".join(parts)


def require(module):
    try:
        return __import__(module)
    except ImportError:
        print(f"python module `{module}` is missing; install it with: pip install feast duckdb", file=sys.stderr)
        sys.exit(2)


def run_duckdb(data, views, rows):
    best = None
    for _ in range(3):  # best of 3, like the Rust side
        result = run_duckdb_once(data, views, rows)
        if best is None or result[2] < best[2]:
            best = result
    return best[0], best[1], best[2], best[3], "best_of_3"


def rows_in(con):
    return con.execute("SELECT count(*) FROM e").fetchone()[0]


def run_duckdb_once(data, views, rows):
    duckdb = require("duckdb")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    entities = os.path.join(data, "entities.parquet")
    started = time.perf_counter()
    con.execute(
        f"CREATE TEMP TABLE e AS SELECT row_number() OVER () AS __rid, * "
        f"FROM read_parquet('{entities}') LIMIT {rows}"
    )
    selects = ["e.user_id", "e.item_id", "e.event_timestamp"]
    joins = []
    for i, view in enumerate(views):
        path = os.path.join(data, view["name"] + ".parquet")
        key = view["key"]
        # The latest row per (key, event_timestamp): ties go to the greatest created_timestamp.
        con.execute(
            f"CREATE TEMP TABLE v{i} AS SELECT * FROM read_parquet('{path}') "
            f"QUALIFY row_number() OVER (PARTITION BY {key}, event_timestamp "
            f"ORDER BY created_timestamp DESC) = 1"
        )
        joins.append(
            f"ASOF LEFT JOIN v{i} ON e.{key} = v{i}.{key} AND e.event_timestamp >= v{i}.event_timestamp"
        )
        # The as-of match is the latest row at or before t; outside the ttl there is none.
        if view["ttl_days"] > 0:
            fresh = f"v{i}.event_timestamp >= e.event_timestamp - INTERVAL {view['ttl_days']} DAY"
            selects += [f"CASE WHEN {fresh} THEN v{i}.{f} END AS {f}" for f in view["features"]]
        else:
            selects += [f"v{i}.{f} AS {f}" for f in view["features"]]
    query = f"SELECT {', '.join(selects)} FROM e {' '.join(joins)} ORDER BY e.__rid"
    df = con.sql(query).to_arrow_table()
    seconds = time.perf_counter() - started
    return rows_in(con), df.num_rows, seconds, df.to_pandas(), "arrow"


def run_feast(data, views, rows):
    require("feast")
    with tempfile.TemporaryDirectory(prefix="feast-bench-") as repo:
        return run_feast_in(repo, data, views, rows)


def run_feast_in(repo, data, views, rows):
    import pandas as pd
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64, Int64

    with open(os.path.join(repo, "feature_store.yaml"), "w") as f:
        f.write(
            "project: livora_bench\n"
            f"registry: {os.path.join(repo, 'registry.db')}\n"
            "provider: local\n"
            "offline_store:\n  type: file\n"
            f"online_store:\n  type: sqlite\n  path: {os.path.join(repo, 'online.db')}\n"
            "entity_key_serialization_version: 3\n"
        )
    entities = {
        "user_id": Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64),
        "item_id": Entity(name="item", join_keys=["item_id"], value_type=ValueType.INT64),
    }
    feature_views = []
    for view in views:
        schema = [Field(name=f, dtype=Float64 if i % 2 == 0 else Int64) for i, f in enumerate(view["features"])]
        source = FileSource(
            name=view["name"] + "_source",
            path=os.path.join(data, view["name"] + ".parquet"),
            timestamp_field="event_timestamp",
            created_timestamp_column="created_timestamp",
        )
        feature_views.append(
            FeatureView(
                name=view["name"],
                entities=[entities[view["key"]]],
                ttl=timedelta(days=view["ttl_days"]),  # 0: no limit
                schema=schema,
                source=source,
            )
        )
    store = FeatureStore(repo_path=repo)
    store.apply(list(entities.values()) + feature_views)

    entity_df = pd.read_parquet(os.path.join(data, "entities.parquet")).head(rows)
    features = [f"{v['name']}:{f}" for v in views for f in v["features"]]
    started = time.perf_counter()
    df = store.get_historical_features(entity_df=entity_df, features=features).to_df()
    seconds = time.perf_counter() - started
    return len(entity_df), len(df), seconds, df, "one_run"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", required=True, help="directory with entities.parquet, <view>.parquet, views.json")
    parser.add_argument("--engine", required=True, choices=["duckdb", "feast"])
    parser.add_argument("--rows", type=int, default=1_000_000, help="use the first N entity rows")
    args = parser.parse_args()
    with open(os.path.join(args.dir, "views.json")) as f:
        views = json.load(f)
    run = run_duckdb if args.engine == "duckdb" else run_feast
    rows, returned, seconds, df, note = run(args.dir, views, args.rows)
    print(
        f"RESULT rows={rows} returned={returned} seconds={seconds:.3f} rss_mb={peak_rss_mb():.0f} "
        f"checksum={checksum(df, views)} note={note}"
    )


if __name__ == "__main__":
    main()
