# Targets CI and people share. The cargo target dir lives outside the clone so that every
# checkout reuses one build cache.
export CARGO_TARGET_DIR ?= /var/tmp/livora-target

.PHONY: run demo test lint services bench-ingest bench-features bench-pit bench-train bench-flight

## Runs the platform on embedded defaults (data in ./livora-data).
run:
	cargo run --release -p livora -- serve

## Runs it with a demo client fed by simulated shop traffic.
demo:
	cargo run --release -p livora -- serve --demo

## The test suite: starts what it needs (PostgreSQL, NATS JetStream, moto), then every test.
test: services
	cargo test --workspace --locked

## Formatting and lints, as CI runs them.
lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

services:
	bash .ci/services

## The ingest load benchmark of BENCHMARKS.md.
bench-ingest: services
	cargo bench -p livora --bench ingest_load -- --backend both

## The online lookup and prediction benchmark of BENCHMARKS.md: Livora (redb, Redis; GetOnlineFeatures,
## Predict, KServe ModelInfer) and Feast side by side.
bench-features: services
	python3 -c 'import feast, redis' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check "feast[redis]"
	cargo bench -p livora --bench feature_lookup

## The point-in-time retrieval benchmark of BENCHMARKS.md: 1,000,000 entity rows × 3 views, beside
## DuckDB and Feast's local offline store on the same Parquet files.
bench-pit:
	python3 -c 'import feast, duckdb' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check feast duckdb
	cargo bench -p livora -p livora-feature-store --bench pit

## The training benchmark of BENCHMARKS.md: Livora's logistic regression and boosted trees
## against scikit-learn on the same matrices.
bench-train: services
	cargo bench -p livora-models --bench train

## The Arrow Flight benchmark of BENCHMARKS.md: DoGet of ten million rows, beside DuckDB on the
## same Parquet files.
## (-p livora beside the feature store keeps polars' features as in the other builds; alone,
## the feature store's benches resolve them differently and rebuild polars, half an hour here.)
bench-flight:
	python3 -c 'import duckdb, pyarrow.flight' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check duckdb pyarrow
	cargo bench -p livora -p livora-feature-store --bench flight
