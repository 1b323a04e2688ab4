//! SQL over the client's data, run by polars SQL: the `sql` dataset and Flight SQL (ADBC, JDBC).
//!
//! # Tables
//! Every query runs in a fresh polars `SQLContext` holding the client's tables, all lazy scans
//! (only what a query reads is read):
//! - `events`: the raw events of the lake (a lake in S3 is read through a local mirror of the
//!   client's files, [`crate::offline::object::mirror`], refreshed by a listing per query);
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
//! `CommandGetSqlInfo`; prepared statements (`CreatePreparedStatement`,
//! `CommandPreparedStatementQuery`, `ClosePreparedStatement`: the JDBC driver prepares every
//! query), with parameters, stateless: see [`bind`]. Updates, ingestion, transactions and
//! Substrait are not offered; their commands answer `UNIMPLEMENTED`.
//!
//! # Parameters
//! A query may hold placeholders, `?` (in order) or `$1`, `$2`, ... (by number), outside string
//! literals, quoted identifiers and comments. A client binds them with a `DoPut` of one row on
//! the prepared statement's descriptor (as ADBC's `execute(query, parameters)` and JDBC's
//! `setXxx` do); the answer's `DoPutPreparedStatementResult` carries a new handle holding the
//! query and the values, so the server keeps nothing and the client uses that handle from then
//! on (Flight SQL's stateless prepared statements). The values become SQL literals of their type:
//! integers, finite floats, booleans, strings (quoted, `'` doubled), dates and timestamps (ISO
//! 8601 strings, which polars compares with temporal columns), and `NULL`; any other type, a row
//! count other than one, or a column count other than the placeholder count is
//! `INVALID_ARGUMENT` naming the parameter.

use std::path::{Path, PathBuf};

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
use crate::dataset::{history_in, scan_table, scan_table_files};
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
    /// The client's event files of a remote lake, mirrored locally ([`crate::offline::object::mirror`]);
    /// read when there is no `lake_dir`.
    pub lake_files: Option<&'a [PathBuf]>,
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
    } else if let Some(files) = sources.lake_files.filter(|f| !f.is_empty()) {
        tables.push(("events".to_owned(), scan_table_files(files, &format!("the events of client `{client}`"))?));
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
    /// Whether the command may read the `events` table: a query that names it, or a table
    /// listing. A lake that is not local is mirrored only for these.
    pub fn reads_events(&self) -> bool {
        match self {
            Self::Query(text) => polars::sql::extract_table_identifiers(text, false, true).is_ok_and(|relations| {
                relations.iter().any(|r| {
                    let r = r.trim_matches('"').to_ascii_lowercase();
                    r == "events" || r.ends_with(".events") || r.ends_with(".\"events\"")
                })
            }),
            Self::Tables(_) => true,
            Self::Catalogs | Self::DbSchemas(_) | Self::TableTypes | Self::SqlInfo(_) => false,
        }
    }

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
            // The handle of a prepared statement is its query and bound values (see `bind`).
            C::CommandPreparedStatementQuery(c) => Self::Query(Handle::decode(&c.prepared_statement_handle)?.sql()?),
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
/// Prepared statements are stateless: the handle is the query itself (and, once bound, its
/// values: [`bind`]), so nothing is kept on the server, closing one is a no-op and a handle
/// survives a restart. The parameter schema is empty: placeholders take any supported type.
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

/// The query a prepared statement is planned with before its values are bound: every
/// placeholder `NULL`, so that the result's schema is known at `CreatePreparedStatement`.
///
/// # Errors
/// [`Error::InvalidArgument`] for mixed or malformed placeholders.
pub fn unbound(query: &str) -> Result<String> {
    let slots = placeholders(query)?;
    let count = slots.iter().map(|p| p.number).max().unwrap_or(0);
    substitute(query, &slots, &vec!["NULL".to_owned(); count])
}

/// The handle of a `CommandPreparedStatementQuery` descriptor, or `None` when `cmd` is another
/// command.
pub fn prepared_statement_handle(cmd: &[u8]) -> Option<Vec<u8>> {
    let any = Any::decode(cmd).ok()?;
    any.unpack::<arrow_flight::sql::CommandPreparedStatementQuery>()
        .ok()
        .flatten()
        .map(|c| c.prepared_statement_handle.to_vec())
}

/// Binds the values of `batches` (one row in all, one column per placeholder) to the prepared
/// statement `handle`; returns the `PutResult` metadata: a `DoPutPreparedStatementResult` with
/// the new handle.
///
/// # Errors
/// [`Error::InvalidArgument`] for a handle not of this service, a row count other than one, a
/// column count other than the placeholder count, or a value of an unsupported type (each
/// naming the parameter).
pub fn bind(handle: &[u8], batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let query = Handle::decode(handle)?.query;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows != 1 {
        return Err(Error::InvalidArgument(format!(
            "parameters: {rows} rows bound; a query takes exactly one row of values"
        )));
    }
    let batch = batches
        .iter()
        .find(|b| b.num_rows() == 1)
        .ok_or_else(|| Error::InvalidArgument("parameters: no row bound".into()))?;
    let slots = placeholders(&query)?;
    let count = slots.iter().map(|p| p.number).max().unwrap_or(0);
    if batch.num_columns() != count {
        return Err(Error::InvalidArgument(format!(
            "parameters: {} values bound, but the query has {count} placeholder(s)",
            batch.num_columns()
        )));
    }
    let values = (0..count).map(|i| literal(batch.column(i).as_ref(), i + 1)).collect::<Result<Vec<_>>>()?;
    // Checks the substitution now, so that a bad binding fails at DoPut.
    substitute(&query, &slots, &values)?;
    let bound = Handle { query, values: Some(values) };
    let result =
        arrow_flight::sql::DoPutPreparedStatementResult { prepared_statement_handle: Some(bound.encode().into()) };
    Ok(result.encode_to_vec())
}

/// A prepared statement's handle: the query, and the SQL literals bound to its placeholders.
///
/// Unbound, it is the query's UTF-8 text (as `prepared` hands it out); bound, [`BOUND`] and a
/// JSON object `{"query": ..., "values": [...]}`. A query never starts with that byte.
#[derive(serde::Serialize, serde::Deserialize)]
struct Handle {
    query: String,
    values: Option<Vec<String>>,
}

/// The first byte of a bound handle.
const BOUND: u8 = 0x01;

impl Handle {
    fn decode(handle: &[u8]) -> Result<Self> {
        let bad = || Error::InvalidArgument("prepared_statement_handle: not a handle of this service".into());
        match handle.split_first() {
            Some((&BOUND, json)) => serde_json::from_slice(json).map_err(|_| bad()),
            _ => Ok(Self { query: String::from_utf8(handle.to_vec()).map_err(|_| bad())?, values: None }),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut bytes = vec![BOUND];
        // A struct of strings always serialises.
        bytes.extend(serde_json::to_vec(self).unwrap_or_default());
        bytes
    }

    /// The query to run: its placeholders replaced by the bound values.
    fn sql(&self) -> Result<String> {
        match &self.values {
            None => Ok(self.query.clone()),
            Some(values) => substitute(&self.query, &placeholders(&self.query)?, values),
        }
    }
}

/// A placeholder: its byte range in the query and its 1-based number.
#[derive(Debug)]
struct Placeholder {
    start: usize,
    end: usize,
    number: usize,
}

/// The placeholders of `query`, outside literals, quoted identifiers and comments.
fn placeholders(query: &str) -> Result<Vec<Placeholder>> {
    let bytes = query.as_bytes();
    let mut found = Vec::new();
    let (mut positional, mut numbered) = (0, false);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"') => {
                // To the closing quote; a doubled quote is an escaped one.
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == quote {
                        if bytes.get(i + 1) == Some(&quote) {
                            i += 1;
                        } else {
                            break;
                        }
                    }
                    i += 1;
                }
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'?' => {
                positional += 1;
                found.push(Placeholder { start: i, end: i + 1, number: positional });
            }
            b'$' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let digits = bytes[i + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
                let number: usize = query[i + 1..i + 1 + digits].parse().unwrap_or(0);
                if number == 0 {
                    return Err(Error::InvalidArgument(format!(
                        "query: placeholder `{}` at byte {i}: numbered placeholders start at $1",
                        &query[i..i + 1 + digits]
                    )));
                }
                numbered = true;
                found.push(Placeholder { start: i, end: i + 1 + digits, number });
                i += digits;
            }
            _ => {}
        }
        i += 1;
    }
    if numbered && positional > 0 {
        return Err(Error::InvalidArgument("query: placeholders mix `?` and `$n`; use one style".into()));
    }
    Ok(found)
}

/// `query` with each placeholder replaced by its value (`values[number - 1]`).
fn substitute(query: &str, slots: &[Placeholder], values: &[String]) -> Result<String> {
    let mut sql = String::with_capacity(query.len() + values.iter().map(String::len).sum::<usize>());
    let mut at = 0;
    for slot in slots {
        let value = values.get(slot.number - 1).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "parameters: placeholder {} has no value ({} bound)",
                slot.number,
                values.len()
            ))
        })?;
        sql.push_str(&query[at..slot.start]);
        sql.push_str(value);
        at = slot.end;
    }
    sql.push_str(&query[at..]);
    Ok(sql)
}

/// Row 0 of `array` as a SQL literal, for parameter `number`.
fn literal(array: &dyn arrow_array::Array, number: usize) -> Result<String> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    use arrow_schema::{DataType, TimeUnit};
    if array.is_null(0) {
        return Ok("NULL".into());
    }
    let quoted = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let timestamp = |value: i64, unit: &TimeUnit| {
        let micros = match unit {
            TimeUnit::Second => value.checked_mul(1_000_000),
            TimeUnit::Millisecond => value.checked_mul(1_000),
            TimeUnit::Microsecond => Some(value),
            TimeUnit::Nanosecond => Some(value / 1_000),
        };
        micros
            .and_then(chrono::DateTime::from_timestamp_micros)
            .map(|t| quoted(&t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()))
    };
    let float = |v: f64| v.is_finite().then(|| format!("{v:?}"));
    let value = match array.data_type() {
        DataType::Null => Some("NULL".to_owned()),
        DataType::Boolean => Some(if array.as_boolean().value(0) { "TRUE" } else { "FALSE" }.to_owned()),
        DataType::Int8 => Some(array.as_primitive::<Int8Type>().value(0).to_string()),
        DataType::Int16 => Some(array.as_primitive::<Int16Type>().value(0).to_string()),
        DataType::Int32 => Some(array.as_primitive::<Int32Type>().value(0).to_string()),
        DataType::Int64 => Some(array.as_primitive::<Int64Type>().value(0).to_string()),
        DataType::UInt8 => Some(array.as_primitive::<UInt8Type>().value(0).to_string()),
        DataType::UInt16 => Some(array.as_primitive::<UInt16Type>().value(0).to_string()),
        DataType::UInt32 => Some(array.as_primitive::<UInt32Type>().value(0).to_string()),
        DataType::UInt64 => Some(array.as_primitive::<UInt64Type>().value(0).to_string()),
        DataType::Float32 => float(f64::from(array.as_primitive::<Float32Type>().value(0))),
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(0)),
        DataType::Utf8 => Some(quoted(array.as_string::<i32>().value(0))),
        DataType::LargeUtf8 => Some(quoted(array.as_string::<i64>().value(0))),
        DataType::Utf8View => Some(quoted(array.as_string_view().value(0))),
        DataType::Date32 => {
            let days = array.as_primitive::<Date32Type>().value(0);
            chrono::NaiveDate::from_num_days_from_ce_opt(days + 719_163).map(|d| quoted(&d.to_string()))
        }
        DataType::Timestamp(unit, _) => {
            let value = match unit {
                TimeUnit::Second => array.as_primitive::<TimestampSecondType>().value(0),
                TimeUnit::Millisecond => array.as_primitive::<TimestampMillisecondType>().value(0),
                TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().value(0),
                TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().value(0),
            };
            timestamp(value, unit)
        }
        other => {
            return Err(Error::InvalidArgument(format!(
                "parameter {number}: type {other} is not supported (integers, floats, booleans, strings, dates, \
                 timestamps and nulls are)"
            )));
        }
    };
    value.ok_or_else(|| Error::InvalidArgument(format!("parameter {number}: the value is not finite or out of range")))
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
    fn only_commands_that_may_read_events_need_the_lake() {
        let query = |q: &str| FlightSql::Query(q.into()).reads_events();
        assert!(query("SELECT event_type, COUNT(*) FROM events GROUP BY event_type"));
        assert!(query("SELECT * FROM user_activity u JOIN EVENTS e ON u.user_id = e.user_id"));
        assert!(query("SELECT * FROM livora.main.events"));
        assert!(!query("SELECT * FROM user_activity WHERE note = 'events'"));
        assert!(!query("SELEC nothing"));
        assert!(FlightSql::Tables(CommandGetTables::default()).reads_events());
        assert!(!FlightSql::Catalogs.reads_events());
    }

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

    fn arr(array: impl arrow_array::Array + 'static) -> arrow_array::ArrayRef {
        std::sync::Arc::new(array)
    }

    fn one_row(columns: Vec<(&str, arrow_array::ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(columns).unwrap()
    }

    fn bound_sql(query: &str, batch: RecordBatch) -> Result<String> {
        let answer = bind(query.as_bytes(), &[batch])?;
        let result = arrow_flight::sql::DoPutPreparedStatementResult::decode(answer.as_slice()).unwrap();
        Handle::decode(&result.prepared_statement_handle.unwrap())?.sql()
    }

    #[test]
    fn placeholders_are_found_outside_literals_identifiers_and_comments() {
        let query = "SELECT '?', \"a?\", x -- ?\n FROM t /* $1 ? */ WHERE a = ? AND b = 'it''s ?' AND c = ?";
        let slots = placeholders(query).unwrap();
        assert_eq!(slots.iter().map(|p| p.number).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(
            substitute(query, &slots, &["1".into(), "'x'".into()]).unwrap(),
            "SELECT '?', \"a?\", x -- ?\n FROM t /* $1 ? */ WHERE a = 1 AND b = 'it''s ?' AND c = 'x'"
        );
        let numbered = placeholders("SELECT $2, $1, $2, $10x").unwrap();
        assert_eq!(numbered.iter().map(|p| p.number).collect::<Vec<_>>(), [2, 1, 2, 10]);
        assert!(placeholders("SELECT ?, $1").unwrap_err().to_string().contains("mix"));
        assert!(placeholders("SELECT $0").unwrap_err().to_string().contains("start at $1"));
        assert_eq!(
            unbound("SELECT * FROM t WHERE a = $2 OR b = $1").unwrap(),
            "SELECT * FROM t WHERE a = NULL OR b = NULL"
        );
    }

    #[test]
    fn values_bind_as_literals_of_their_type_and_the_handle_carries_them() {
        use arrow_array::{
            BooleanArray, Date32Array, Float64Array, Int32Array, NullArray, StringArray, TimestampMicrosecondArray,
        };
        let batch = one_row(vec![
            ("a", arr(Int32Array::from(vec![-7]))),
            ("b", arr(Float64Array::from(vec![0.1]))),
            ("c", arr(StringArray::from(vec!["it's; DROP"]))),
            ("d", arr(BooleanArray::from(vec![true]))),
            ("e", arr(NullArray::new(1))),
            ("f", arr(Date32Array::from(vec![20_000]))),
            ("g", arr(TimestampMicrosecondArray::from(vec![1_700_000_000_000_001]).with_timezone("UTC"))),
        ]);
        let sql = bound_sql("SELECT ?, ?, ?, ?, ?, ?, ?", batch).unwrap();
        assert_eq!(sql, "SELECT -7, 0.1, 'it''s; DROP', TRUE, NULL, '2024-10-04', '2023-11-14T22:13:20.000001'");

        // Rebinding a bound handle replaces the values.
        let first = bind(b"SELECT $1", &[one_row(vec![("a", arr(Int32Array::from(vec![1])))])]).unwrap();
        let handle = arrow_flight::sql::DoPutPreparedStatementResult::decode(first.as_slice())
            .unwrap()
            .prepared_statement_handle
            .unwrap();
        let again = bind(&handle, &[one_row(vec![("a", arr(Int32Array::from(vec![2])))])]).unwrap();
        let handle = arrow_flight::sql::DoPutPreparedStatementResult::decode(again.as_slice())
            .unwrap()
            .prepared_statement_handle
            .unwrap();
        assert_eq!(Handle::decode(&handle).unwrap().sql().unwrap(), "SELECT 2");

        let error = |query: &str, batches: &[RecordBatch]| bind(query.as_bytes(), batches).unwrap_err().to_string();
        let two = one_row(vec![("a", arr(Int32Array::from(vec![1, 2])))]);
        assert!(error("SELECT ?", &[two]).contains("2 rows bound"));
        let one = one_row(vec![("a", arr(Int32Array::from(vec![1])))]);
        assert!(error("SELECT ?, ?", std::slice::from_ref(&one)).contains("1 values bound, but the query has 2"));
        let nan = one_row(vec![("a", arr(Float64Array::from(vec![f64::NAN])))]);
        assert!(error("SELECT ?", &[nan]).contains("parameter 1: the value is not finite"));
        let list = arrow_array::ListArray::from_iter_primitive::<arrow_array::types::Int32Type, _, _>(vec![Some(
            vec![Some(1)],
        )]);
        let list = one_row(vec![("a", arr(list))]);
        assert!(error("SELECT ?", &[list]).contains("parameter 1: type List"));
        assert!(Handle::decode(&[BOUND, b'x']).is_err());
    }

    #[test]
    fn a_bound_timestamp_compares_with_a_utc_datetime_column() {
        use polars::prelude::*;
        let events = df!("n" => [1i64, 2]).unwrap().lazy().with_column(
            lit(Series::new("t".into(), [1_600_000_000_000_000i64, 1_800_000_000_000_000]))
                .cast(DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)))
                .alias("t"),
        );
        let batch = one_row(vec![(
            "t",
            arr(arrow_array::TimestampMicrosecondArray::from(vec![1_700_000_000_000_000]).with_timezone("UTC")),
        )]);
        let sql = bound_sql("SELECT n FROM events WHERE t >= ?", batch).unwrap();
        let result = plan(vec![("events".to_owned(), events)], &sql).unwrap().collect().unwrap();
        assert_eq!(result.column("n").unwrap().i64().unwrap().get(0), Some(2));
        assert_eq!(result.height(), 1);
    }
}
