//! Arrow Flight: the client's data for analysts and data scientists, straight into pandas,
//! polars or DuckDB (`arrow.flight.protocol.FlightService`, on the feature-serving gRPC port).
//!
//! # Datasets and descriptors
//! A `FlightDescriptor` names a dataset in one of two ways.
//!
//! **Commands** (descriptor type `CMD`): a JSON object naming its `dataset`. Times are RFC 3339,
//! ranges include both ends, and an absent bound is unbounded.
//!
//! | `dataset` | fields | rows |
//! |---|---|---|
//! | `events` | `start`?, `end`?, `event_types`? | raw events from the lake (the lake's columns) |
//! | `feature_view` | `view`, `start`?, `end`? | the view's history (`event_timestamp` in range) |
//! | `predictions` | `model`, `start`?, `end`? | the model's prediction log |
//! | `training` | `features` or `feature_service`; `spine` or `entities`; `timestamp_column`?, `full_feature_names`? | a point-in-time dataset |
//! | `sql` | `query` | the result of a SQL query over the client's tables ([`sql`]) |
//!
//! ```json
//! {"dataset": "events", "start": "2024-05-01T00:00:00Z", "event_types": ["purchase"]}
//! {"dataset": "feature_view", "view": "user_activity", "end": "2024-06-01T00:00:00Z"}
//! {"dataset": "training", "feature_service": "churn",
//!  "spine": {"view": "user_activity", "start": "2024-05-01T00:00:00Z", "end": "2024-05-31T00:00:00Z", "cadence": "1d"}}
//! {"dataset": "training", "features": ["user_activity:*"], "entities": "<id from DoPut>"}
//! {"dataset": "sql", "query": "SELECT event_type, COUNT(*) AS n FROM events GROUP BY event_type"}
//! ```
//!
//! `training` has the semantics of `get_historical_features` and `livora dataset build` (the
//! same code: [`crate::dataset::build`]): `spine` samples every entity of a view's history at a
//! `cadence` (`1d`); `entities` names entity rows uploaded with `DoPut` (join keys and a
//! timestamp column, `event_timestamp` unless `timestamp_column` says otherwise).
//!
//! **Paths** (descriptor type `PATH`), for the datasets that need no parameters, over all time:
//! `["events"]`, `["feature_view", <view>]`, `["predictions", <model>]`. `ListFlights` answers
//! with these, so each listed entry can be fetched as it is.
//!
//! # Calls
//! - `ListFlights`: the client's events, the history of each registered view that has one and
//!   each model's prediction log, with schemas (the criteria are ignored).
//! - `GetFlightInfo` / `PollFlightInfo` / `GetSchema`: plans the dataset (everything it names
//!   must exist) and answers its schema and one endpoint whose ticket holds the command and the
//!   client it was issued to ([`command::Ticket`]).
//! - `DoGet`: checks the ticket's client against the caller's credentials, plans again and
//!   streams record batches of at most `features.flight.batch_rows` rows, within
//!   `features.flight.memory_budget` ([`budget`]): a result of any size streams in bounded memory.
//! - `DoPut` with the path `["entities"]`: uploads entity rows ([`uploads`]); the `PutResult`'s
//!   `app_metadata` is `{"entities": "<id>", "rows": n}`, the id to name in a `training` command.
//! - `Handshake`: basic credentials (user = client id, password = api key) in, a bearer token out
//!   ([`auth`]).
//! - **Flight SQL**: a descriptor whose command is a Flight SQL message (a protobuf `Any`) is one:
//!   queries and catalog metadata ([`sql`]), so ADBC's and JDBC's Flight SQL drivers work. Its
//!   tickets are ours, like every other dataset's.
//!
//! # Authentication and tenancy
//! Every call carries the client's api key ([`auth`]); every dataset is read from the caller's
//! own partitions (`client_id=<c>` in the lake and the offline store, its registry definitions,
//! its uploads). A ticket issued to another client is refused with `PERMISSION_DENIED`.
//!
//! # Errors
//! An unknown dataset, view, model, feature or upload is `NOT_FOUND` naming it; a malformed
//! command, an inverted time range or a bad field is `INVALID_ARGUMENT` naming the field; no or
//! an unknown key is `UNAUTHENTICATED`; an upload past `features.flight.max_upload` is
//! `RESOURCE_EXHAUSTED`; a SQL error is `INVALID_ARGUMENT` with polars' message (a syntax error
//! gives its line and column); a Flight SQL command not offered is `UNIMPLEMENTED`.
//!
//! # Where the batches come from
//! Raw events are read with arrow-rs straight from the lake's Parquet files ([`lake`]); feature
//! history, prediction logs and point-in-time datasets are polars queries whose results cross to
//! arrow-rs as Arrow IPC ([`bridge`]).
//!
//! # How they leave
//! [`FlightServer`] is arrow-flight's generated server with `DoGet` taken over: record batches
//! of flat columns are written from their buffers straight into gRPC's send buffer
//! ([`frames`]): one copy, where arrow-flight's encoder copied into a growing body and tonic
//! copied that body again.

pub mod auth;
pub mod bridge;
pub mod budget;
pub mod command;
pub mod config;
pub mod datasets;
pub mod frames;
pub mod lake;
mod service;
pub mod sql;
pub mod uploads;

use arrow_array::RecordBatch;
use futures::stream::BoxStream;

pub use command::Command;
pub use config::FlightConfig;
pub use datasets::Datasets;
pub use service::{FlightDatasetService, FlightServer, MAX_MESSAGE_BYTES};
pub use uploads::Uploads;

/// Record batches on their way to a client, each counted in its stream's memory budget.
pub type BatchStream = BoxStream<'static, crate::error::Result<(RecordBatch, budget::Held)>>;
