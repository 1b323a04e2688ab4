//! What a Flight descriptor asks for: the JSON commands, the path form of the listable
//! datasets, and the tickets `GetFlightInfo` hands out. See the [module docs](super) for the
//! scheme.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::error::{Error, Result};

/// The dataset names, for errors that list them.
pub const DATASETS: &str = "`events`, `feature_view`, `predictions`, `training`, `sql`";

/// A dataset and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "dataset", rename_all = "snake_case")]
pub enum Command {
    /// Raw events from the lake.
    Events(EventsCommand),
    /// A feature view's history from the offline store.
    FeatureView(FeatureViewCommand),
    /// A model's prediction log.
    Predictions(PredictionsCommand),
    /// A point-in-time training dataset.
    Training(TrainingCommand),
    /// The result of a SQL query over the client's tables ([`super::sql`]).
    Sql(SqlCommand),
    /// A Flight SQL metadata command, as tickets carry it.
    FlightSql(FlightSqlCommand),
}

/// `{"dataset": "sql", "query"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlCommand {
    /// One SQL statement (polars SQL) over the client's tables.
    pub query: String,
}

/// `{"dataset": "flight_sql", "message"}`: how a ticket carries a Flight SQL command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlightSqlCommand {
    /// The command's protobuf `Any`, base64.
    pub message: String,
}

impl FlightSqlCommand {
    /// The command's protobuf bytes.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `message` is not base64.
    pub fn bytes(&self) -> Result<Vec<u8>> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(&self.message)
            .map_err(|_| Error::InvalidArgument("message: not base64".into()))
    }

    /// The command carrying `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        use base64::Engine as _;
        Self { message: base64::engine::general_purpose::STANDARD.encode(bytes) }
    }
}

/// `{"dataset": "events", "start"?, "end"?, "event_types"?}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsCommand {
    /// The earliest event time (RFC 3339), included; unbounded when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTime<Utc>>,
    /// The latest event time (RFC 3339), included; unbounded when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<Utc>>,
    /// Only events of these types; every type when empty or absent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_types: Vec<String>,
}

/// `{"dataset": "feature_view", "view", "start"?, "end"?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureViewCommand {
    /// The registered view (`user_activity`, `user_activity@v2`).
    pub view: String,
    /// The earliest `event_timestamp`, included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTime<Utc>>,
    /// The latest `event_timestamp`, included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<Utc>>,
}

/// `{"dataset": "predictions", "model", "start"?, "end"?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictionsCommand {
    /// The model (`churn`).
    pub model: String,
    /// The earliest scoring time, included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTime<Utc>>,
    /// The latest scoring time, included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<Utc>>,
}

/// `{"dataset": "training", "features" | "feature_service", "spine" | "entities", …}`: the
/// semantics of `get_historical_features` and `livora dataset build`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingCommand {
    /// Features as `view:feature` or `view:*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<String>>,
    /// A feature service instead of `features`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_service: Option<String>,
    /// Entity rows generated from a view's history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spine: Option<SpineCommand>,
    /// Entity rows uploaded with `DoPut`: the id its `PutResult` gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entities: Option<String>,
    /// The time column of the uploaded entity rows. Default `event_timestamp`.
    #[serde(default = "default_timestamp_column")]
    pub timestamp_column: String,
    /// Name features `view__feature`.
    #[serde(default)]
    pub full_feature_names: bool,
}

/// Every entity of `view`'s history, sampled every `cadence` from `start` to `end`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpineCommand {
    /// The view whose history gives the entities.
    pub view: String,
    /// The first sample time.
    pub start: DateTime<Utc>,
    /// The last time a sample may take, included.
    pub end: DateTime<Utc>,
    /// The time between samples (`1d`, `6h`).
    #[serde(with = "humantime_serde")]
    pub cadence: Duration,
}

fn default_timestamp_column() -> String {
    crate::offline::EVENT_TIMESTAMP.to_owned()
}

impl Command {
    /// Reads a descriptor's command: a JSON object naming its `dataset`.
    ///
    /// # Errors
    /// [`Error::NotFound`] naming an unknown dataset; [`Error::InvalidArgument`] naming the field
    /// of a malformed command (not JSON, a missing or unknown field, a bad time, an inverted
    /// range).
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let value: Json = serde_json::from_slice(bytes).map_err(|e| {
            Error::InvalidArgument(format!("command: not JSON ({e}); send e.g. {{\"dataset\": \"events\"}}"))
        })?;
        Self::from_value(value)
    }

    /// As [`from_json`](Self::from_json), from parsed JSON.
    pub fn from_value(value: Json) -> Result<Self> {
        let Json::Object(mut fields) = value else {
            return Err(Error::InvalidArgument(
                "command: must be a JSON object such as {\"dataset\": \"events\"}".into(),
            ));
        };
        let dataset = match fields.remove("dataset") {
            Some(Json::String(name)) => name,
            Some(other) => return Err(Error::InvalidArgument(format!("dataset: must be a string, not {other}"))),
            None => return Err(Error::InvalidArgument(format!("dataset: missing; one of {DATASETS}"))),
        };
        let rest = Json::Object(fields);
        let command = match dataset.as_str() {
            "events" => Self::Events(fields_of(rest)?),
            "feature_view" => Self::FeatureView(fields_of(rest)?),
            "predictions" => Self::Predictions(fields_of(rest)?),
            "training" => Self::Training(fields_of(rest)?),
            "sql" => Self::Sql(fields_of(rest)?),
            "flight_sql" => Self::FlightSql(fields_of(rest)?),
            other => return Err(unknown_dataset(other)),
        };
        command.validate()?;
        Ok(command)
    }

    /// Reads a path descriptor: `["events"]`, `["feature_view", <view>]` or
    /// `["predictions", <model>]`, each over all time.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown dataset; [`Error::InvalidArgument`] for a path of the
    /// wrong length (a training dataset has no path: it needs a command).
    pub fn from_path(path: &[String]) -> Result<Self> {
        let command = match path {
            [dataset] if dataset == "events" => Self::Events(EventsCommand::default()),
            [dataset, view] if dataset == "feature_view" => {
                Self::FeatureView(FeatureViewCommand { view: view.clone(), start: None, end: None })
            }
            [dataset, model] if dataset == "predictions" => {
                Self::Predictions(PredictionsCommand { model: model.clone(), start: None, end: None })
            }
            [] => return Err(Error::InvalidArgument("path: empty; e.g. [\"events\"]".into())),
            [dataset, ..]
                if !matches!(dataset.as_str(), "events" | "feature_view" | "predictions" | "training" | "sql") =>
            {
                return Err(unknown_dataset(dataset));
            }
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "path: `{}` is not a dataset path; use [\"events\"], [\"feature_view\", <view>] or \
                     [\"predictions\", <model>], or a JSON command (needed for `training` and `sql`)",
                    path.join("/")
                )));
            }
        };
        command.validate()?;
        Ok(command)
    }

    /// The path naming this dataset over all time, when it has one.
    pub fn path(&self) -> Option<Vec<String>> {
        match self {
            Self::Events(c) if *c == EventsCommand::default() => Some(vec!["events".into()]),
            Self::FeatureView(c) if c.start.is_none() && c.end.is_none() => {
                Some(vec!["feature_view".into(), c.view.clone()])
            }
            Self::Predictions(c) if c.start.is_none() && c.end.is_none() => {
                Some(vec!["predictions".into(), c.model.clone()])
            }
            _ => None,
        }
    }

    /// The command as JSON.
    pub fn to_json(&self) -> Result<Json> {
        serde_json::to_value(self).map_err(|e| Error::InvalidArgument(format!("command: cannot be encoded: {e}")))
    }

    fn validate(&self) -> Result<()> {
        match self {
            Self::Events(c) => check_range(c.start, c.end),
            Self::FeatureView(c) => {
                check_name("view", &c.view)?;
                check_range(c.start, c.end)
            }
            Self::Predictions(c) => {
                check_name("model", &c.model)?;
                check_range(c.start, c.end)
            }
            Self::Training(c) => c.validate(),
            Self::Sql(c) => check_name("query", &c.query),
            Self::FlightSql(c) => c.bytes().map(|_| ()),
        }
    }
}

impl TrainingCommand {
    fn validate(&self) -> Result<()> {
        match (&self.features, &self.feature_service) {
            (Some(_), Some(_)) => {
                return Err(Error::InvalidArgument("features: give `features` or `feature_service`, not both".into()));
            }
            (None, None) => {
                return Err(Error::InvalidArgument(
                    "features: missing; give `features` ([\"view:feature\", …]) or `feature_service`".into(),
                ));
            }
            (Some(features), None) if features.is_empty() => {
                return Err(Error::InvalidArgument("features: name at least one `view:feature`".into()));
            }
            (None, Some(service)) => check_name("feature_service", service)?,
            _ => {}
        }
        match (&self.spine, &self.entities) {
            (Some(_), Some(_)) => Err(Error::InvalidArgument("entities: give `spine` or `entities`, not both".into())),
            (None, None) => Err(Error::InvalidArgument(
                "entities: missing; give `spine` ({\"view\", \"start\", \"end\", \"cadence\"}) or `entities` (the id \
                 a DoPut of entity rows returned)"
                    .into(),
            )),
            (Some(spine), None) => {
                check_name("spine.view", &spine.view)?;
                if spine.cadence.is_zero() {
                    return Err(Error::InvalidArgument("spine.cadence: must be more than 0s".into()));
                }
                if spine.end < spine.start {
                    return Err(Error::InvalidArgument(format!(
                        "spine.end: {} is before spine.start {}",
                        spine.end.to_rfc3339(),
                        spine.start.to_rfc3339()
                    )));
                }
                Ok(())
            }
            (None, Some(id)) => {
                uuid::Uuid::parse_str(id).map_err(|_| {
                    Error::InvalidArgument(format!("entities: `{id}` is not an upload id (the id a DoPut returned)"))
                })?;
                check_name("timestamp_column", &self.timestamp_column)
            }
        }
    }
}

/// A ticket: the command and the client it was issued to. Tickets are not secret: `DoGet`
/// checks the ticket's client against the caller's credentials, and reads only the caller's
/// data anyway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ticket {
    /// The client the ticket was issued to.
    pub client: String,
    /// The command, as JSON.
    pub command: Json,
}

impl Ticket {
    /// The ticket of `command` for `client`, as bytes.
    pub fn encode(client: &str, command: &Command) -> Result<Vec<u8>> {
        let ticket = Self { client: client.to_owned(), command: command.to_json()? };
        serde_json::to_vec(&ticket).map_err(|e| Error::InvalidArgument(format!("ticket: cannot be encoded: {e}")))
    }

    /// Reads a ticket's bytes.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for bytes that are not a ticket of this service.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| {
            Error::InvalidArgument(format!("ticket: not a ticket of this service ({e}); take it from GetFlightInfo"))
        })
    }
}

fn unknown_dataset(name: &str) -> Error {
    Error::NotFound(format!("dataset `{name}` does not exist; the datasets are {DATASETS}"))
}

/// Deserializes a command's fields, naming the one at fault.
fn fields_of<T: DeserializeOwned>(value: Json) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "command".to_owned() } else { path };
        Error::InvalidArgument(format!("{field}: {}", e.inner()))
    })
}

fn check_range(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Result<()> {
    match (start, end) {
        (Some(s), Some(e)) if e < s => {
            Err(Error::InvalidArgument(format!("end: {} is before start {}", e.to_rfc3339(), s.to_rfc3339())))
        }
        _ => Ok(()),
    }
}

fn check_name(field: &str, name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::InvalidArgument(format!("{field}: must not be empty")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn invalid(json: &str) -> String {
        match Command::from_json(json.as_bytes()) {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("{json}: expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn commands_round_trip_through_tickets() {
        let json = r#"{"dataset":"training","feature_service":"churn",
                       "spine":{"view":"user_activity","start":"2024-01-01T00:00:00Z","end":"2024-02-01T00:00:00Z","cadence":"1d"}}"#;
        let command = Command::from_json(json.as_bytes()).unwrap();
        let ticket = Ticket::decode(&Ticket::encode("shop", &command).unwrap()).unwrap();
        assert_eq!(ticket.client, "shop");
        assert_eq!(Command::from_value(ticket.command).unwrap(), command);
        let events = Command::from_json(br#"{"dataset":"events","event_types":["purchase"]}"#).unwrap();
        assert_eq!(Command::from_value(events.to_json().unwrap()).unwrap(), events);
    }

    #[test]
    fn paths_name_the_listable_datasets() {
        let path = |p: &[&str]| Command::from_path(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(path(&["events"]).unwrap().path().unwrap(), ["events"]);
        assert_eq!(
            path(&["feature_view", "user_activity"]).unwrap().path().unwrap(),
            ["feature_view", "user_activity"]
        );
        assert!(matches!(path(&["nope"]), Err(Error::NotFound(m)) if m.contains("`nope`")));
        assert!(matches!(path(&["training"]), Err(Error::InvalidArgument(m)) if m.contains("JSON command")));
    }

    #[test]
    fn errors_name_the_field() {
        assert!(
            matches!(Command::from_json(br#"{"dataset":"nope"}"#), Err(Error::NotFound(m)) if m.contains("`nope`"))
        );
        assert!(invalid("[1]").starts_with("command:"));
        assert!(invalid("{").starts_with("command: not JSON"));
        assert!(invalid("{}").starts_with("dataset: missing"));
        assert!(invalid(r#"{"dataset":"events","start":"yesterday"}"#).starts_with("start:"));
        assert!(invalid(r#"{"dataset":"events","colour":"red"}"#).contains("unknown field `colour`"));
        assert!(
            invalid(r#"{"dataset":"events","start":"2024-02-01T00:00:00Z","end":"2024-01-01T00:00:00Z"}"#)
                .starts_with("end: 2024-01-01")
        );
        assert!(invalid(r#"{"dataset":"feature_view"}"#).contains("missing field `view`"));
        assert!(invalid(r#"{"dataset":"training","features":["a:b"]}"#).starts_with("entities: missing"));
        assert!(invalid(r#"{"dataset":"training","features":["a:b"],"entities":"x"}"#).contains("not an upload id"));
        assert!(
            invalid(
                r#"{"dataset":"training","features":["a:b"],"spine":{"view":"v","start":"2024-01-01T00:00:00Z","end":"2024-01-02T00:00:00Z","cadence":"soon"}}"#
            )
            .starts_with("spine.cadence:")
        );
        assert!(Ticket::decode(b"garbage").is_err());
    }
}
