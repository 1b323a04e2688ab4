//! Feature serving: the latest feature values of entities, read from the online store.
//!
//! # A request
//! A request names features — references `view:feature` or `view:*`, or a feature service —
//! and entity rows given column by column (join key → one value per row), and says whether to
//! answer with full names (`view__feature`). [`FeatureServer::get_online_features`] then:
//! 1. takes the client's definitions from a per-client cache ([`catalog`]), refreshed from the
//!    registry at most every `features.serving.registry_refresh` (5 s), so the hot path does not
//!    touch the database;
//! 2. resolves the features (feature services are resolved once per registry version) and checks
//!    the request, failing before any read with an error that names the thing at fault:
//!    [`Error::NotFound`] for an unknown view, feature or service (or a client that never applied
//!    definitions); [`Error::InvalidArgument`] for a malformed reference, an empty list, a view
//!    with `online = false`, no or more than `max_entity_rows` entity rows, columns of different
//!    lengths, a missing join-key column, a key of the wrong type or null, or two features of the
//!    same name without full names;
//! 3. builds one [`RowKey`](crate::RowKey) per (entity row, view) — the entity key in its
//!    canonical text form ([`keys`]; composite keys joined by U+001F) — and reads them all in
//!    **one** [`OnlineStore::read`](crate::OnlineStore::read) call, scoped by the client;
//! 4. answers per feature and row a value, a [`FeatureStatus`] and an event time:
//!    - no row, or no such feature in the row → `MISSING` (null, no event time);
//!    - `now − event_time > ttl` of the view → `OUTSIDE_MAX_AGE`: the value is withheld (null),
//!      the event time given. The ttl is honoured online, as in point-in-time retrieval;
//!    - a stored value whose type is not the feature's declared type → `MISSING` (and a
//!      warning in the log), never a wrong-typed answer;
//!    - otherwise `PRESENT` with the value (which may be null, e.g. the average of an empty
//!      window) and the row's event time.
//!
//!    A `days_since` feature is computed at read time: fractional days from its timestamp
//!    feature to now (negative if that timestamp is in the future), null when the timestamp is
//!    null; its status is that of the timestamp it reads.
//!
//! The answer goes to a [`FeatureSink`], column by column, so each API builds its own response
//! type directly; nothing reaches the sink when the request fails.
//!
//! # APIs
//! - [`grpc`]: `livora.v1.FeatureService` (tonic), with gRPC health and reflection.
//! - [`http`]: `POST /v1/features/online`, the JSON twin.
//!
//! Both authenticate per client as ingestion does ([`auth`]) and scope every read by the client.
//! Errors map to a gRPC code or an HTTP status through [`Error::code`].
//!
//! # Cost
//! Per request: the catalog look-up (a read lock and an `Arc` clone), one plan (borrowed for a
//! feature service, built for a list), one key per (row, view), one store read, and the answer
//! itself. Stored strings are moved into the answer, not copied.

pub mod auth;
pub mod catalog;
pub mod config;
pub mod grpc;
pub mod http;
pub mod keys;
mod server;

pub use config::ServingConfig;
pub use grpc::GrpcFeatureService;
pub use keys::KeyValue;
pub use server::{EntityColumn, FeatureColumn, FeatureServer, FeatureSink, FeatureStatus, OnlineFeatures, Selection};

#[cfg(doc)]
use crate::error::Error;
