//! The datasets of one client: what a [`Command`] reads, its schema, and how it streams.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use futures::StreamExt;
use livora_common::ClientId;
use object_store::ObjectStore;
use polars::prelude::{LazyFrame, PlRefPath, ScanArgsParquet};

use super::budget::StreamBudget;
use super::command::{Command, EventsCommand, FeatureViewCommand, PredictionsCommand, TrainingCommand};
use super::sql::{self, FlightSql, Sources};
use super::uploads::Uploads;
use super::{BatchStream, bridge, lake};
use crate::dataset::{self, DatasetRequest, Entities, Selection, history_in, scan_table};
use crate::definitions::Repo;
use crate::error::{Error, Result};
use crate::offline::store::range_filter;
use crate::offline::{OfflineStore, SpineOptions, TimeRange};
use crate::registry::Registry;

/// The directory of prediction logs under the offline root (`predictions/<model>/client_id=<c>/…`,
/// as the inference service writes them).
pub const PREDICTIONS_DIR: &str = "predictions";

/// A dataset ready to stream.
pub struct Dataset {
    /// Its schema.
    pub schema: SchemaRef,
    source: Source,
}

enum Source {
    Events(EventsCommand),
    Query(Box<LazyFrame>),
    /// A small answer computed at once (Flight SQL metadata).
    Batch(RecordBatch),
}

/// Where the datasets come from.
pub struct Datasets {
    /// The lake (raw events).
    pub lake: Arc<dyn ObjectStore>,
    /// The lake's root when it is a local directory: SQL's `events` table (polars scans local
    /// files here).
    pub lake_dir: Option<PathBuf>,
    /// For a lake that is not local (S3): where its files are mirrored for SQL's `events` table,
    /// which is absent when neither this nor `lake_dir` is set.
    pub lake_cache: Option<PathBuf>,
    /// Feature history.
    pub offline: Arc<dyn OfflineStore>,
    /// The offline root: batch tables and prediction logs.
    pub offline_root: PathBuf,
    /// The clients' definitions.
    pub registry: Registry,
    /// Entity rows uploaded with `DoPut`.
    pub uploads: Uploads,
}

impl Datasets {
    /// Plans `command` for `client`: checks that everything it names exists and computes the
    /// schema; nothing is read but metadata (and, for a spine, the entities of its view).
    pub async fn open(&self, client: &ClientId, command: &Command) -> Result<Dataset> {
        match command {
            Command::Events(c) => Ok(Dataset { schema: lake::schema(), source: Source::Events(c.clone()) }),
            Command::FeatureView(c) => {
                let repo = self.repo(client).await?;
                let (offline, root, client, c) =
                    (self.offline.clone(), self.offline_root.clone(), client.clone(), c.clone());
                blocking(move || feature_view(&repo, offline.as_ref(), &root, &client, &c)).await
            }
            Command::Predictions(c) => {
                let dir = predictions_dir(&self.offline_root, client, &c.model)?;
                let (client, c) = (client.clone(), c.clone());
                blocking(move || {
                    let missing = format!("client `{client}` has no prediction log for model `{}`", c.model);
                    let frame = scan_table(&dir, &missing)?;
                    let range = TimeRange { start: c.start, end: c.end };
                    query(match range_filter(range) {
                        Some(predicate) => frame.filter(predicate),
                        None => frame,
                    })
                })
                .await
            }
            Command::Training(c) => {
                let repo = self.repo(client).await?;
                let entities = match &c.entities {
                    Some(id) => Some(self.uploads.path(client, id)?),
                    None => None,
                };
                let (offline, root, client, c) =
                    (self.offline.clone(), self.offline_root.clone(), client.clone(), c.clone());
                blocking(move || training(&repo, offline.as_ref(), &root, &client, &c, entities.as_deref())).await
            }
            Command::Sql(c) => self.sql(client, FlightSql::Query(c.query.clone())).await,
            Command::FlightSql(c) => {
                let command = FlightSql::decode(&c.bytes()?)?
                    .ok_or_else(|| Error::InvalidArgument("message: not a Flight SQL command".into()))?;
                self.sql(client, command).await
            }
        }
    }

    /// A query or a metadata command of Flight SQL, over the client's tables.
    async fn sql(&self, client: &ClientId, command: FlightSql) -> Result<Dataset> {
        let repo = self.registry.current(client).await?.map(|v| v.repo);
        let lake_files = match (&self.lake_dir, &self.lake_cache) {
            (None, Some(cache)) if command.reads_events() => {
                let prefix = livora_ingest::lake::events_prefix(client.as_str());
                Some(crate::offline::object::mirror(self.lake.clone(), &prefix, cache).await?)
            }
            _ => None,
        };
        let (offline, root, lake, client) =
            (self.offline.clone(), self.offline_root.clone(), self.lake_dir.clone(), client.clone());
        blocking(move || {
            let sources = Sources {
                repo: repo.as_ref(),
                offline: offline.as_ref(),
                offline_root: &root,
                lake_dir: lake.as_deref(),
                lake_files: lake_files.as_deref(),
            };
            let tables = sql::tables(&sources, &client)?;
            if let FlightSql::Query(text) = &command {
                return query(sql::plan(tables, text)?);
            }
            let with_schemas = matches!(&command, FlightSql::Tables(c) if c.include_schema);
            let mut described = Vec::with_capacity(tables.len());
            for (name, mut frame) in tables {
                let schema = if with_schemas {
                    let schema =
                        frame.collect_schema().map_err(Error::offline(format!("reading the schema of `{name}`")))?;
                    bridge::arrow_schema(&schema)?
                } else {
                    Arc::new(arrow_schema::Schema::empty())
                };
                described.push((name, schema));
            }
            let batch = sql::metadata(&command, &described)?;
            Ok(Dataset { schema: batch.schema(), source: Source::Batch(batch) })
        })
        .await
    }

    /// Every dataset `client` may read without parameters, with its schema: its events, the
    /// history of each registered view that has one, and each model's prediction log.
    pub async fn list(&self, client: &ClientId) -> Result<Vec<(Command, SchemaRef)>> {
        let mut commands = vec![Command::Events(EventsCommand::default())];
        if let Some(version) = self.registry.current(client).await? {
            commands.extend(
                version.repo.views.keys().map(|view| {
                    Command::FeatureView(FeatureViewCommand { view: view.clone(), start: None, end: None })
                }),
            );
        }
        commands.extend(
            prediction_models(&self.offline_root, client)?
                .into_iter()
                .map(|model| Command::Predictions(PredictionsCommand { model, start: None, end: None })),
        );
        let mut out = Vec::with_capacity(commands.len());
        for command in commands {
            match self.open(client, &command).await {
                Ok(dataset) => out.push((command, dataset.schema)),
                // A view without history yet has nothing to read.
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Streams `dataset` of `client` in batches of at most `batch_rows` rows within `budget`.
    pub fn stream(&self, client: &ClientId, dataset: Dataset, batch_rows: usize, budget: StreamBudget) -> BatchStream {
        match dataset.source {
            Source::Events(c) => lake::stream(self.lake.clone(), self.lake_dir.clone(), client, &c, batch_rows, budget),
            Source::Query(frame) => bridge::stream(*frame, dataset.schema, batch_rows, budget),
            Source::Batch(batch) => futures::stream::once(async move {
                let held = budget.hold(&batch).await;
                Ok((batch, held))
            })
            .boxed(),
        }
    }

    async fn repo(&self, client: &ClientId) -> Result<Repo> {
        let version = self.registry.current(client).await?.ok_or_else(|| {
            Error::NotFound(format!(
                "client `{client}` has no feature definitions; apply a feature repository with `livora apply`"
            ))
        })?;
        Ok(version.repo)
    }
}

fn feature_view(
    repo: &Repo,
    offline: &dyn OfflineStore,
    root: &Path,
    client: &ClientId,
    c: &FeatureViewCommand,
) -> Result<Dataset> {
    let view = repo
        .views
        .get(&c.view)
        .ok_or_else(|| Error::NotFound(format!("view: feature view `{}` is not registered", c.view)))?;
    query(history_in(repo, offline, root, client, view, TimeRange { start: c.start, end: c.end })?)
}

fn training(
    repo: &Repo,
    offline: &dyn OfflineStore,
    root: &Path,
    client: &ClientId,
    c: &TrainingCommand,
    uploaded: Option<&Path>,
) -> Result<Dataset> {
    let selection = match (&c.features, &c.feature_service) {
        (Some(features), _) => Selection::Refs(features.clone()),
        (None, Some(service)) => Selection::Service(service.clone()),
        (None, None) => return Err(Error::InvalidArgument("features: missing".into())),
    };
    let entities = match (&c.spine, uploaded) {
        (Some(spine), _) => Entities::Spine {
            view: spine.view.clone(),
            options: SpineOptions::new(spine.start, spine.end, spine.cadence),
        },
        (None, Some(path)) => {
            let frame =
                LazyFrame::scan_parquet(PlRefPath::new(path.to_string_lossy().as_ref()), ScanArgsParquet::default())
                    .map_err(Error::offline("reading the uploaded entity rows"))?;
            Entities::Rows { frame: Box::new(frame), timestamp_column: c.timestamp_column.clone() }
        }
        (None, None) => return Err(Error::InvalidArgument("entities: missing".into())),
    };
    let request = DatasetRequest { selection, entities, full_feature_names: c.full_feature_names };
    query(dataset::build(repo, offline, root, client, request)?)
}

fn query(mut frame: LazyFrame) -> Result<Dataset> {
    let schema = frame.collect_schema().map_err(Error::offline("planning the dataset"))?;
    Ok(Dataset { schema: bridge::arrow_schema(&schema)?, source: Source::Query(Box::new(frame)) })
}

/// `<root>/predictions/<model>/client_id=<client>`.
pub(super) fn predictions_dir(root: &Path, client: &ClientId, model: &str) -> Result<PathBuf> {
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-');
    if model.is_empty() || !model.chars().all(safe) {
        return Err(Error::InvalidArgument(format!(
            "model: `{model}` is not a model name (letters, digits, '_' and '-')"
        )));
    }
    Ok(root.join(PREDICTIONS_DIR).join(model).join(format!("client_id={client}")))
}

/// The models with a prediction log of `client`, by name.
pub(super) fn prediction_models(root: &Path, client: &ClientId) -> Result<Vec<String>> {
    let dir = root.join(PREDICTIONS_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()))(e)),
    };
    let mut models = Vec::new();
    for entry in entries {
        let entry = entry.map_err(Error::io(format!("listing {}", dir.display())))?;
        let Some(model) = entry.file_name().to_str().map(str::to_owned) else { continue };
        if entry.path().join(format!("client_id={client}")).is_dir() {
            models.push(model);
        }
    }
    models.sort();
    Ok(models)
}

/// Runs planning work (Parquet metadata, a spine) off the async workers.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::io("planning a dataset")(std::io::Error::other(e.to_string())))?
}
