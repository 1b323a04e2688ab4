#!/usr/bin/env python3
"""Feast's side of the online lookup benchmark (`cargo bench -p livora --bench feature_lookup`).

The Rust bench writes the rows it put in Livora's online store to a CSV file, then calls this
script to put the same rows in Feast and to run Feast's own feature server on them:

  setup     --dir D --csv F --online sqlite|redis   a Feast repository in D (a FileSource over a
            Parquet file, the entity `user` with join key `user_id`, the feature view
            `user_activity` with the same 25 fields), `apply`, then `materialize` into the online
            store (SQLite in D, or Redis at --redis under a project name unique to the run)
  serve     --dir D --port P --workers W            `feast serve` (HTTP, gunicorn + uvicorn
            workers) on 127.0.0.1:P; replaces this process
  inprocess --dir D --users N --entities E          times `FeatureStore.get_online_features` in
            this process (Feast's best case: no HTTP, no JSON); prints percentiles as JSON
  teardown  --dir D                                 deletes the online store's rows (Redis keys)

Needs `pip install "feast[redis]"` (the Redis extra only for --online redis). Only loopback
addresses are used.
"""

import argparse
import json
import os
import random
import sys
import time
from datetime import datetime, timedelta, timezone

# The 25 features of Livora's `user_activity` view (feature-store/example-repo), in its order,
# with their Feast types. Livora computes the two `days_since_*` at read time; Feast stores them
# precomputed (it has no read-time computation short of an on-demand view).
FEATURES = [
    ("last_seen_at", "timestamp"),
    ("days_since_last_seen", "float64"),
    ("last_purchase_at", "timestamp"),
    ("days_since_last_purchase", "float64"),
    ("orders_lifetime", "int64"),
    ("revenue_lifetime", "float64"),
    ("orders_30d", "int64"),
    ("revenue_30d", "float64"),
    ("avg_order_value_30d", "float64"),
    ("max_order_value_30d", "float64"),
    ("orders_7d", "int64"),
    ("product_views_1h", "int64"),
    ("product_views_24h", "int64"),
    ("product_views_7d", "int64"),
    ("add_to_carts_24h", "int64"),
    ("add_to_carts_7d", "int64"),
    ("checkouts_7d", "int64"),
    ("categories_viewed_7d", "int64"),
    ("last_viewed_category", "string"),
    ("sessions_24h", "int64"),
    ("sessions_7d", "int64"),
    ("sessions_30d", "int64"),
    ("last_touch_channel", "string"),
    ("campaign_clicks_30d", "int64"),
    ("email_opens_30d", "int64"),
]
VIEW = "user_activity"
REFS = [f"{VIEW}:{name}" for name, _ in FEATURES]

DEFINITIONS = '''
from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64, String, UnixTimestamp

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
source = FileSource(path={parquet!r}, timestamp_field="event_timestamp")
user_activity = FeatureView(
    name="user_activity",
    entities=[user],
    ttl=timedelta(days=90),
    online=True,
    source=source,
    schema=[
{fields}
    ],
)
'''
FEAST_TYPES = {"timestamp": "UnixTimestamp", "float64": "Float64", "int64": "Int64", "string": "String"}


def write_repo(d, online, redis_url, project):
    parquet = os.path.join(d, "user_activity.parquet")
    fields = "\n".join(f'        Field(name="{n}", dtype={FEAST_TYPES[t]}),' for n, t in FEATURES)
    with open(os.path.join(d, "definitions.py"), "w") as f:
        f.write(DEFINITIONS.format(parquet=parquet, fields=fields))
    if online == "sqlite":
        store = f"  type: sqlite\n  path: {os.path.join(d, 'online.db')}\n"
    else:
        store = f"  type: redis\n  connection_string: {redis_url}\n"
    with open(os.path.join(d, "feature_store.yaml"), "w") as f:
        f.write(
            f"project: {project}\nregistry: {os.path.join(d, 'registry.db')}\nprovider: local\n"
            f"online_store:\n{store}offline_store:\n  type: file\nentity_key_serialization_version: 3\n"
        )
    return parquet


def setup(args):
    import pandas as pd
    from feast import FeatureStore

    started = time.monotonic()
    project = "livora_bench_" + os.urandom(4).hex()
    parquet = write_repo(args.dir, args.online, args.redis, project)
    df = pd.read_csv(args.csv, dtype={"user_id": str, "last_viewed_category": str, "last_touch_channel": str})
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], unit="us", utc=True)
    for name, ty in FEATURES:
        if ty == "timestamp":
            df[name] = pd.to_datetime(df[name], unit="us", utc=True)
    df.to_parquet(parquet, index=False)

    sys.path.insert(0, args.dir)
    import definitions  # the file written above

    store = FeatureStore(repo_path=args.dir)
    store.apply([definitions.user, definitions.user_activity])
    loaded = time.monotonic()
    end = df["event_timestamp"].max().to_pydatetime() + timedelta(seconds=1)
    start = df["event_timestamp"].min().to_pydatetime() - timedelta(seconds=1)
    store.materialize(start_date=start, end_date=end, feature_views=[VIEW])
    done = time.monotonic()
    # One read back, so that a broken setup fails here and not under load.
    probe = store.get_online_features(features=REFS, entity_rows=[{"user_id": df["user_id"].iloc[0]}]).to_dict()
    missing = [n for n, _ in FEATURES if probe.get(n, [None])[0] is None]
    if missing:
        sys.exit(f"feast_reference: materialized rows lack {missing}")
    print(json.dumps({
        "project": project,
        "rows": len(df),
        "apply_seconds": round(loaded - started, 2),
        "materialize_seconds": round(done - loaded, 2),
    }))


def serve(args):
    argv = [
        "feast", "-c", args.dir, "serve", "-h", "127.0.0.1", "-p", str(args.port), "--no-access-log",
        "-w", str(args.workers),
        # gunicorn restarts a worker every --max-requests requests by default (1000); 0 turns
        # that off, so that no request of the benchmark waits for a worker to restart.
        "--max-requests", "0", "--max-requests-jitter", "0",
        # Read the registry once; the definitions do not change during the run.
        "-r", "3600",
    ]
    os.execvp(argv[0], argv)


def pct(sorted_us, q):
    return sorted_us[min(len(sorted_us) - 1, int(q * len(sorted_us)))]


def inprocess(args):
    from feast import FeatureStore

    store = FeatureStore(repo_path=args.dir)
    rng = random.Random(7)

    def call():
        rows = [{"user_id": f"u-{rng.randrange(args.users):07}"} for _ in range(args.entities)]
        t = time.perf_counter_ns()
        out = store.get_online_features(features=REFS, entity_rows=rows).to_dict()
        took = (time.perf_counter_ns() - t) // 1000
        if len(out) != len(FEATURES) + 1:
            sys.exit(f"feast_reference: answer has {len(out)} columns")
        return took

    warm_until = time.monotonic() + args.warmup_seconds
    while time.monotonic() < warm_until:
        call()
    samples = []
    started = time.monotonic()
    while time.monotonic() - started < args.seconds and len(samples) < args.max_calls:
        samples.append(call())
    elapsed = time.monotonic() - started
    samples.sort()
    print(json.dumps({
        "calls": len(samples),
        "per_second": len(samples) / elapsed,
        "p50_us": pct(samples, 0.5),
        "p90_us": pct(samples, 0.9),
        "p99_us": pct(samples, 0.99),
        "p999_us": pct(samples, 0.999),
        "max_us": samples[-1],
    }))


def teardown(args):
    from feast import FeatureStore

    store = FeatureStore(repo_path=args.dir)
    store.teardown()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("--dir", required=True)
    s.add_argument("--csv", required=True)
    s.add_argument("--online", choices=["sqlite", "redis"], default="sqlite")
    s.add_argument("--redis", default="127.0.0.1:6379")
    s = sub.add_parser("serve")
    s.add_argument("--dir", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--workers", type=int, default=2)
    s = sub.add_parser("inprocess")
    s.add_argument("--dir", required=True)
    s.add_argument("--users", type=int, required=True)
    s.add_argument("--entities", type=int, default=1)
    s.add_argument("--seconds", type=float, default=5.0)
    s.add_argument("--warmup-seconds", type=float, default=1.0)
    s.add_argument("--max-calls", type=int, default=200_000)
    s = sub.add_parser("teardown")
    s.add_argument("--dir", required=True)
    args = p.parse_args()
    if getattr(args, "redis", "127.0.0.1:6379").split(":")[0] not in ("127.0.0.1", "localhost"):
        sys.exit("feast_reference: --redis must be a loopback address")
    {"setup": setup, "serve": serve, "inprocess": inprocess, "teardown": teardown}[args.cmd](args)


if __name__ == "__main__":
    main()
