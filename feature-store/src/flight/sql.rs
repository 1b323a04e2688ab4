//! SQL over the client's data, run by polars SQL: the `sql` dataset and Flight SQL (ADBC, JDBC).
//!
//! # Tables
//! Every query runs in a fresh polars `SQLContext` holding the client's tables, all lazy scans
//! (only what a query reads is read):
//! - `events`: the raw events of the lake (when the lake is a local directory);
//! - one table per registered feature view with history, named as the view (`user_activity`;
//!   quote versioned names: `"user_activity@v2"`): its history;
//! - `<model>_predictions`: each model's prediction log.
//!
//! Flight SQL reports them in catalog `livora`, schema `main`. polars SQL resolves a relation by
//! the first part of its name, so queries name tables bare (`FROM events`). The context is
//! rebuilt per query and never kept: a `CREATE TABLE` or `DELETE` only changes that query's
//! context, so the service is read-only. polars' table functions (`read_parquet('path')` and
//! the like), which would read any file the server can, are refused before planning.
//!
//! # Flight SQL
//! `CommandStatementQuery` (planned at `GetFlightInfo`: a bad query is `INVALID_ARGUMENT` with
//! polars' message, which gives the line and column of a syntax error), `CommandGetCatalogs`,
//! `CommandGetDbSchemas`, `CommandGetTables` (with schemas), `CommandGetTableTypes` and
//! `CommandGetSqlInfo`; prepared statements without parameters (`CreatePreparedStatement`,
//! `CommandPreparedStatementQuery`, `ClosePreparedStatement`: the JDBC driver prepares every
//! query), stateless: the handle is the query. Parameters, updates, ingestion, transactions and
//! Substrait are not offered; their commands answer `UNIMPLEMENTED`.

use std::path::Path;

use arrow_array::RecordBatch;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::{
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any, CommandGetCatalogs,
    CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, ProstMessageExt, SqlInfo,
};
use arrow_flight::{IpcMessage, SchemaAsIpc};
use livora_common::ClientId;
use polars::prelude::LazyFrame;
use polars::sql::SQLContext;
use prost::Message as _;

use super::datasets::{prediction_models, predictions_dir};
use crate::dataset::{history_in, scan_table};
use crate::definitions::Repo;
use crate::error::{Error, Result};
use crate::offline::{OfflineStore, TimeRange};

/// The one catalog Flight SQL reports.
pub const CATALOG: &str = "livora";
/// The one schema Flight SQL reports.
pub const SCHEMA: &str = "main";
/// The type of every table.
const TABLE_TYPE: &str = "TABLE";
/// polars SQL's table functions, which read files by path.
const FILE_FUNCTIONS: [&str; 5] = ["read_csv", "read_parquet", "read_ipc", "read_json", "read_ndjson"];
/// The prefix of the type URLs of Flight SQL commands.
const FLIGHT_SQL_TYPE: &str = "type.googleapis.com/arrow.flight.protocol.sql.";

/// Where the client's tables come from.
pub struct Sources<'a> {
    /// The definitions (feature views); `None` for a client without any.
    pub repo: Option<&'a Repo>,
    /// Feature history.
    pub offline: &'a dyn OfflineStore,
    /// The offline root (batch tables, prediction logs).
    pub offline_root: &'a Path,
    /// The lake's root, when it is a local directory.
    pub lake_dir: Option<&'a Path>,
}

/// The client's tables, by name, as lazy scans. Views without history are left out.
pub fn tables(sources: &Sources<'_>, client: &ClientId) -> Result<Vec<(String, LazyFrame)>> {
    let mut tables = Vec::new();
    if let Some(lake) = sources.lake_dir {
        let dir = lake.join(livora_ingest::lake::events_prefix(client.as_str()));
        match scan_table(&dir, &format!("client `{client}` has no events")) {
            Ok(frame) => tables.push(("events".to_owned(), frame)),
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(repo) = sources.repo {
        for view in repo.views.values() {
            match history_in(repo, sources.offline, sources.offline_root, client, view, TimeRange::all()) {
                Ok(frame) => tables.push((view.name.clone(), frame)),
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    for model in prediction_models(sources.offline_root, client)? {
        let name = format!("{model}_predictions");
        if tables.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let dir = predictions_dir(sources.offline_root, client, &model)?;
        tables.push((name, scan_table(&dir, &format!("client `{client}` has no prediction log for `{model}`"))?));
    }
    Ok(tables)
}

/// Plans `query` over `tables`: the lazy result, or the error naming what is wrong.
///
/// # Errors
/// [`Error::InvalidArgument`] for an empty query, a syntax error (with its line and column), an
/// unknown table or column, or any statement polars cannot plan.
pub fn plan(tables: Vec<(String, LazyFrame)>, query: &str) -> Result<LazyFrame> {
    if query.trim().is_empty() {
        return Err(Error::InvalidArgument("query: empty".into()));
    }
    // polars SQL reads any file the server can through its table functions: another client's
    // partitions among them. Only the client's registered tables may be named.
    let relations = polars::sql::extract_table_identifiers(query, false, true)
        .map_err(|e| Error::InvalidArgument(format!("query: {e}")))?;
    if let Some(function) = relations.iter().find(|r| FILE_FUNCTIONS.contains(&r.to_ascii_lowercase().as_str())) {
        return Err(Error::InvalidArgument(format!(
            "query: `{function}` is not offered: query the client's tables ({})",
            tables.iter().map(|(name, _)| format!("`{name}`")).collect::<Vec<_>>().join(", ")
        )));
    }
    let mut context = SQLContext::new();
    for (name, frame) in tables {
        context.register(&name, frame);
    }
    let mut frame = context.execute(query).map_err(|e| Error::InvalidArgument(format!("query: {e}")))?;
    // Unknown columns and type errors surface when the plan is resolved.
    frame.collect_schema().map_err(|e| Error::InvalidArgument(format!("query: {e}")))?;
    Ok(frame)
}

/// A Flight SQL command, read from a descriptor's or ticket's bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum FlightSql {
    /// `CommandStatementQuery`: a query to run.
    Query(String),
    /// `CommandGetCatalogs`.
    Catalogs,
    /// `CommandGetDbSchemas`.
    DbSchemas(CommandGetDbSchemas),
    /// `CommandGetTables`.
    Tables(CommandGetTables),
    /// `CommandGetTableTypes`.
    TableTypes,
    /// `CommandGetSqlInfo`.
    SqlInfo(CommandGetSqlInfo),
}

impl FlightSql {
    /// Reads `bytes` as a Flight SQL command: `None` when they are not one (a JSON command).
    ///
    /// # Errors
    /// [`Error::Unimplemented`] for a Flight SQL command this service does not offer;
    /// [`Error::InvalidArgument`] for one that cannot be decoded.
    pub fn decode(bytes: &[u8]) -> Result<Option<Self>> {
        let Ok(any) = Any::decode(bytes) else { return Ok(None) };
        if !any.type_url.starts_with(FLIGHT_SQL_TYPE) {
            return Ok(None);
        }
        let name = any.type_url.trim_start_matches(FLIGHT_SQL_TYPE).to_owned();
        let command = arrow_flight::sql::Command::try_from(any).map_err(|e| {
            Error::InvalidArgument(format!("descriptor: the Flight SQL command {name} cannot be decoded: {e}"))
        })?;
        use arrow_flight::sql::Command as C;
        Ok(Some(match command {
            C::CommandStatementQuery(c) => Self::Query(c.query),
            // The handle of a prepared statement is its query (see `prepare`).
            C::CommandPreparedStatementQuery(c) => {
                Self::Query(String::from_utf8(c.prepared_statement_handle.to_vec()).map_err(|_| {
                    Error::InvalidArgument("prepared_statement_handle: not a handle of this service".into())
                })?)
            }
            C::CommandGetCatalogs(CommandGetCatalogs {}) => Self::Catalogs,
            C::CommandGetDbSchemas(c) => Self::DbSchemas(c),
            C::CommandGetTables(c) => Self::Tables(c),
            C::CommandGetTableTypes(CommandGetTableTypes {}) => Self::TableTypes,
            C::CommandGetSqlInfo(c) => Self::SqlInfo(c),
            _ => {
                return Err(Error::Unimplemented(format!(
                    "Flight SQL {name} is not offered: this service answers queries (CommandStatementQuery) and \
                     metadata (catalogs, schemas, tables, table types, SQL info)"
                )));
            }
        }))
    }

    /// The command as the bytes of a protobuf `Any`, for a ticket.
    pub fn encode(&self) -> Vec<u8> {
        use arrow_flight::sql::CommandStatementQuery;
        let any = match self {
            Self::Query(query) => CommandStatementQuery { query: query.clone(), transaction_id: None }.as_any(),
            Self::Catalogs => CommandGetCatalogs {}.as_any(),
            Self::DbSchemas(c) => c.as_any(),
            Self::Tables(c) => c.as_any(),
            Self::TableTypes => CommandGetTableTypes {}.as_any(),
            Self::SqlInfo(c) => c.as_any(),
        };
        any.encode_to_vec()
    }
}

/// The name of the action that prepares a statement.
pub const CREATE_PREPARED_STATEMENT: &str = "CreatePreparedStatement";
/// The name of the action that closes a prepared statement.
pub const CLOSE_PREPARED_STATEMENT: &str = "ClosePreparedStatement";

/// The query of a `CreatePreparedStatement` action's body.
///
/// # Errors
/// [`Error::InvalidArgument`] when the body is not an `ActionCreatePreparedStatementRequest`.
pub fn prepare_request(body: &[u8]) -> Result<String> {
    let request = Any::decode(body)
        .ok()
        .and_then(|any| any.unpack::<ActionCreatePreparedStatementRequest>().ok().flatten())
        .ok_or_else(|| {
            Error::InvalidArgument("action: the body is not an ActionCreatePreparedStatementRequest".into())
        })?;
    Ok(request.query)
}

/// The answer to `CreatePreparedStatement` for `query`, whose result has `schema`.
///
/// Prepared statements are stateless: the handle is the query itself, so nothing is kept on the
/// server, closing one is a no-op and a handle survives a restart. Parameters are not offered
/// (the parameter schema is empty).
///
/// # Errors
/// [`Error::InvalidArgument`] when the schema cannot be encoded.
pub fn prepared(query: String, schema: &arrow_schema::Schema) -> Result<Vec<u8>> {
    let options = arrow_ipc::writer::IpcWriteOptions::default();
    let IpcMessage(dataset_schema) = SchemaAsIpc::new(schema, &options).try_into().map_err(arrow_error)?;
    let result = ActionCreatePreparedStatementResult {
        prepared_statement_handle: query.into_bytes().into(),
        dataset_schema,
        parameter_schema: Default::default(),
    };
    Ok(result.as_any().encode_to_vec())
}

/// The answer of a metadata command over the client's tables (name and schema).
///
/// # Errors
/// [`Error::InvalidArgument`] when a filter pattern or an info id is refused by arrow-flight's
/// builders.
pub fn metadata(command: &FlightSql, tables: &[(String, arrow_schema::SchemaRef)]) -> Result<RecordBatch> {
    let built = match command {
        FlightSql::Catalogs => {
            let mut builder = CommandGetCatalogs {}.into_builder();
            builder.append(CATALOG);
            builder.build()
        }
        FlightSql::DbSchemas(c) => {
            let mut builder = c.clone().into_builder();
            builder.append(CATALOG, SCHEMA);
            builder.build()
        }
        FlightSql::Tables(c) => {
            let mut builder = c.clone().into_builder();
            for (name, schema) in tables {
                builder.append(CATALOG, SCHEMA, name, TABLE_TYPE, schema).map_err(arrow_error)?;
            }
            builder.build()
        }
        FlightSql::TableTypes => {
            let mut builder = CommandGetTableTypes {}.into_builder();
            builder.append(TABLE_TYPE);
            builder.build()
        }
        FlightSql::SqlInfo(c) => {
            let info = sql_info()?;
            c.clone().into_builder(&info).build()
        }
        FlightSql::Query(_) => return Err(Error::InvalidArgument("descriptor: a query is not metadata".into())),
    };
    built.map_err(arrow_error)
}

/// What `CommandGetSqlInfo` answers.
fn sql_info() -> Result<SqlInfoData> {
    let mut builder = SqlInfoDataBuilder::new();
    builder.append(SqlInfo::FlightSqlServerName, "Livora");
    builder.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    builder.append(SqlInfo::FlightSqlServerArrowVersion, "57");
    builder.append(SqlInfo::FlightSqlServerReadOnly, true);
    builder.append(SqlInfo::FlightSqlServerSql, true);
    builder.append(SqlInfo::FlightSqlServerSubstrait, false);
    builder.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    builder.append(SqlInfo::FlightSqlServerCancel, false);
    builder.append(SqlInfo::SqlDdlCatalog, false);
    builder.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    builder.build().map_err(arrow_error)
}

fn arrow_error(e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("metadata: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use arrow_flight::sql::CommandStatementQuery;
    use polars::prelude::{Column, DataFrame, IntoLazy};

    use super::*;

    #[test]
    fn flight_sql_commands_are_told_from_json() {
        let query = CommandStatementQuery { query: "SELECT 1".into(), transaction_id: None }.as_any().encode_to_vec();
        assert_eq!(FlightSql::decode(&query).unwrap(), Some(FlightSql::Query("SELECT 1".into())));
        assert_eq!(FlightSql::decode(&FlightSql::Catalogs.encode()).unwrap(), Some(FlightSql::Catalogs));
        assert_eq!(FlightSql::decode(br#"{"dataset": "events"}"#).unwrap(), None);
        let update = arrow_flight::sql::CommandStatementUpdate { query: "DELETE".into(), transaction_id: None };
        assert!(
            matches!(FlightSql::decode(&update.as_any().encode_to_vec()), Err(Error::Unimplemented(m)) if m.contains("CommandStatementUpdate"))
        );
    }

    #[test]
    fn queries_run_over_the_tables_and_errors_say_where() {
        let events = DataFrame::new_infer_height(vec![
            Column::new("event_type".into(), ["view", "purchase", "view"]),
            Column::new("n".into(), [1i64, 2, 3]),
        ])
        .unwrap()
        .lazy();
        let tables = || vec![("events".to_owned(), events.clone())];
        let result =
            plan(tables(), "SELECT event_type, SUM(n) AS n FROM events GROUP BY event_type ORDER BY event_type")
                .unwrap()
                .collect()
                .unwrap();
        assert_eq!(result.height(), 2);
        let error = |query: &str| plan(tables(), query).err().map(|e| e.to_string()).unwrap_or_default();
        let syntax = error("SELECT event_type FORM events");
        assert!(syntax.contains("Line: 1, Column"), "{syntax}");
        let relation = error("SELECT * FROM sales");
        assert!(relation.contains("sales"), "{relation}");
        let column = error("SELECT colour FROM events");
        assert!(column.contains("colour"), "{column}");
        for escape in [
            "SELECT * FROM read_parquet('/etc/passwd')",
            "SELECT * FROM events JOIN READ_PARQUET('x.parquet') r ON true",
            "WITH t AS (SELECT * FROM \"read_ipc\"('x')) SELECT * FROM t",
            "SELECT * FROM (SELECT * FROM read_csv('/etc/passwd'))",
        ] {
            let refused = error(escape);
            assert!(refused.contains("is not offered") && refused.contains("`events`"), "{escape}: {refused}");
        }
    }
}
