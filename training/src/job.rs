//! The training job: dataset, labels, split, fit, evaluate.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use indicatif::ProgressBar;
use livora_common::ClientId;
use livora_feature_store::dataset::{self, DatasetRequest, Entities, Selection};
use livora_feature_store::{OfflineStore, Repo, SpineOptions};
use livora_models::encoding::Skipped;
use livora_models::{
    Algorithm, Artifact, Classifier, Encoder, Evaluation, FeatureRef, FitParams, Manifest, ModelSpec, Table, Training,
    Weights, classifier_metrics,
};
use polars::prelude::IntoLazy;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::table::table_of;

/// Rows of the training set that get fewer than this many rows on either side of the split are
/// refused: metrics on a handful of rows mean nothing.
const MIN_ROWS: usize = 50;

/// What to train.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    /// The client whose data and registry are used.
    pub client: ClientId,
    /// The zoo model.
    pub model: &'static ModelSpec,
    /// First spine time.
    pub start: DateTime<Utc>,
    /// Last spine time (included).
    pub end: DateTime<Utc>,
    /// Spine cadence.
    pub cadence: Duration,
    /// The algorithm (the model's default when `None`).
    pub algorithm: Option<Algorithm>,
    /// Fit parameters, seed included.
    pub params: FitParams,
    /// Share of the spine's times (the latest) that evaluate.
    pub test_fraction: f64,
}

impl TrainRequest {
    fn check(&self) -> Result<()> {
        if self.end <= self.start {
            return Err(Error::InvalidArgument(format!("--end {} is not after --start {}", self.end, self.start)));
        }
        if self.cadence.is_zero() {
            return Err(Error::InvalidArgument("--cadence must be positive".into()));
        }
        if !(0.05..=0.5).contains(&self.test_fraction) {
            return Err(Error::InvalidArgument(format!(
                "--test-fraction {} must be between 0.05 and 0.5",
                self.test_fraction
            )));
        }
        Ok(())
    }
}

/// Each entity's purchase times and how far the lake reaches: what labels are made of.
#[derive(Debug, Clone, Default)]
pub struct Purchases {
    /// Entity key → purchase times (µs), ascending.
    pub times: HashMap<String, Vec<i64>>,
    /// The latest event time of any event in the lake (µs): a label window must end by then.
    pub latest: Option<i64>,
}

/// Spine rows that did not become training rows, and why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Outside the model's population (a customer for lead scoring, a non-customer for churn).
    pub not_in_population: usize,
    /// Their label window ends after the lake's latest event.
    pub label_not_observed: usize,
}

/// A labelled dataset, ready to split and fit.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Entity key of each row.
    pub keys: Vec<String>,
    /// Time of each row (µs).
    pub times: Vec<i64>,
    /// Label of each row.
    pub labels: Vec<bool>,
    /// The features of each row.
    pub table: Table,
    /// The features the table holds, in order.
    pub features: Vec<FeatureRef>,
    /// Features of the service the model cannot read.
    pub skipped: Vec<Skipped>,
    /// Spine rows left out.
    pub dropped: Dropped,
    /// The client's feature registry version.
    pub feature_registry_version: i64,
    /// The spine's entity.
    pub entity: String,
    /// Its join key.
    pub join_key: String,
}

/// Builds the labelled dataset of `request` from the client's definitions (`repo`, at
/// `feature_registry_version`), the offline store and the purchases.
pub fn prepare(
    request: &TrainRequest,
    repo: &Repo,
    feature_registry_version: i64,
    offline: &dyn OfflineStore,
    offline_root: &Path,
    purchases: &Purchases,
    progress: &ProgressBar,
) -> Result<Prepared> {
    request.check()?;
    let spec = request.model;
    let service = Selection::Service(spec.feature_service.to_owned());
    let refs = dataset::resolve(repo, &service)?;
    let view = repo.views.get(spec.spine_view).ok_or_else(|| {
        livora_feature_store::Error::NotFound(format!(
            "model `{}` samples the entities of view `{}`, which client `{}` has not registered",
            spec.name, spec.spine_view, request.client
        ))
    })?;
    let key = repo
        .entities
        .get(&view.entity)
        .and_then(|e| e.join_keys.first().cloned())
        .ok_or_else(|| Error::InvalidArgument(format!("entity `{}` has no join key", view.entity)))?;

    progress.set_message(format!("building the point-in-time dataset of service `{}`", spec.feature_service));
    let options = SpineOptions::new(request.start, request.end, request.cadence);
    let timestamp = options.timestamp_column.clone();
    let frame = dataset::build(
        repo,
        offline,
        offline_root,
        &request.client,
        DatasetRequest {
            selection: service,
            entities: Entities::Spine { view: spec.spine_view.to_owned(), options },
            full_feature_names: true,
        },
    )?
    .lazy()
    .collect()?;
    let features: Vec<FeatureRef> =
        refs.iter().map(|(v, f)| FeatureRef { view: v.clone(), feature: f.clone() }).collect();
    let (keys, times, table, features, skipped) = table_of(&frame, &key, &timestamp, &features)?;

    progress.set_message("labelling the rows from the lake".to_owned());
    let horizon = spec.label.horizon_micros();
    let latest = purchases.latest.unwrap_or(i64::MIN);
    let mut dropped = Dropped::default();
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    let none: Vec<i64> = Vec::new();
    for (i, (k, &t)) in keys.iter().zip(&times).enumerate() {
        let Some(k) = k else { continue };
        if t.saturating_add(horizon) > latest {
            dropped.label_not_observed += 1;
            continue;
        }
        match spec.label.label(t, purchases.times.get(k).unwrap_or(&none)) {
            Some(label) => {
                rows.push(i);
                labels.push(label);
            }
            None => dropped.not_in_population += 1,
        }
    }
    Ok(Prepared {
        keys: rows.iter().filter_map(|&i| keys[i].clone()).collect(),
        times: rows.iter().map(|&i| times[i]).collect(),
        labels,
        table: table.take(&rows),
        features,
        skipped,
        dropped,
        feature_registry_version,
        entity: view.entity.clone(),
        join_key: key,
    })
}

/// The row indices that train and that evaluate, and the split time: evaluation rows are those
/// at or after the split; training rows end their label window by it.
fn split(times: &[i64], horizon: i64, test_fraction: f64) -> Result<(Vec<usize>, Vec<usize>, i64)> {
    let mut distinct = times.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 2 {
        return Err(livora_models::Error::InsufficientData(format!(
            "the labelled rows span {} spine time(s); a time split needs at least 2: widen --start/--end",
            distinct.len()
        ))
        .into());
    }
    let at = (((1.0 - test_fraction) * distinct.len() as f64).round() as usize).clamp(1, distinct.len() - 1);
    let split_at = distinct[at];
    let train = (0..times.len()).filter(|&i| times[i].saturating_add(horizon) <= split_at).collect();
    let test = (0..times.len()).filter(|&i| times[i] >= split_at).collect();
    Ok((train, test, split_at))
}

fn micros(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t).unwrap_or_default()
}

fn fingerprint(parts: &[(&[f64], &[bool])]) -> String {
    let mut h = Sha256::new();
    for (x, y) in parts {
        h.update((x.len() as u64).to_le_bytes());
        for v in *x {
            h.update(v.to_le_bytes());
        }
        h.update(y.iter().map(|&b| u8::from(b)).collect::<Vec<u8>>());
    }
    hex::encode(h.finalize())
}

/// Splits `prepared`, fits the encoding, the model and its baseline, evaluates both on the
/// evaluation rows and returns the artifact of `version` (not yet registered).
pub fn fit(request: &TrainRequest, prepared: &Prepared, version: i64, progress: &ProgressBar) -> Result<Artifact> {
    let started = Instant::now();
    let spec = request.model;
    let algorithm = request.algorithm.unwrap_or(spec.default_algorithm);
    let baseline_algorithm = if algorithm == spec.baseline { Algorithm::Prior } else { spec.baseline };
    let (train, test, split_at) = split(&prepared.times, spec.label.horizon_micros(), request.test_fraction)?;
    let d = &prepared.dropped;
    for (side, rows) in [("training", &train), ("evaluation", &test)] {
        if rows.len() < MIN_ROWS {
            return Err(livora_models::Error::InsufficientData(format!(
                "{} {side} rows (of {} labelled; {} spine rows outside the population, {} with a label \
                 window past the lake's last event); at least {MIN_ROWS} are needed: widen --start/--end \
                 or use a shorter --cadence",
                rows.len(),
                prepared.labels.len(),
                d.not_in_population,
                d.label_not_observed
            ))
            .into());
        }
    }
    let test_positives = test.iter().filter(|&&i| prepared.labels[i]).count();
    if test_positives == 0 || test_positives == test.len() {
        return Err(livora_models::Error::InsufficientData(format!(
            "the {} evaluation rows have a single class ({test_positives} positive): no metric can rank them; \
             widen --start/--end",
            test.len()
        ))
        .into());
    }
    let train_table = prepared.table.take(&train);
    let test_table = prepared.table.take(&test);
    let y_train: Vec<bool> = train.iter().map(|&i| prepared.labels[i]).collect();
    let y_test: Vec<bool> = test.iter().map(|&i| prepared.labels[i]).collect();

    progress.set_message("encoding features".to_owned());
    let mut encoder = Encoder::fit(&train_table)?;
    encoder.skipped.splice(0..0, prepared.skipped.iter().cloned());
    let width = encoder.width();
    let x_train = encoder.encode_table(&train_table)?;
    let x_test = encoder.encode_table(&test_table)?;

    progress.set_message(format!("fitting {algorithm} on {} rows × {width} columns", y_train.len()));
    let model = Classifier::fit(algorithm, &x_train, width, &y_train, &request.params)?;
    progress.set_message(format!("fitting the {baseline_algorithm} baseline"));
    let baseline = Classifier::fit(baseline_algorithm, &x_train, width, &y_train, &request.params)?;
    progress.set_message(format!("evaluating on {} rows", y_test.len()));
    let evaluation = Evaluation {
        model: classifier_metrics(&model.predict(&x_test, width), &y_test),
        baseline_algorithm,
        baseline: classifier_metrics(&baseline.predict(&x_test, width), &y_test),
    };

    // The encoder may have dropped features missing on every training row: keep the manifest's
    // feature list in the encoder's order, as inference reads them.
    let features: Vec<FeatureRef> = encoder
        .features
        .iter()
        .filter_map(|f| prepared.features.iter().find(|r| r.column() == f.name).cloned())
        .collect();
    let positives = y_train.iter().filter(|&&y| y).count();
    let manifest = Manifest {
        format: livora_models::artifact::FORMAT,
        model: spec.name.to_owned(),
        version,
        client_id: request.client.as_str().to_owned(),
        algorithm,
        feature_service: spec.feature_service.to_owned(),
        feature_registry_version: prepared.feature_registry_version,
        entity: prepared.entity.clone(),
        join_key: prepared.join_key.clone(),
        features,
        encoder,
        label: spec.label.describe(),
        training: Some(Training {
            start: request.start,
            end: request.end,
            cadence_seconds: request.cadence.as_secs(),
            split_at: micros(split_at),
            train_rows: y_train.len(),
            test_rows: y_test.len(),
            train_positive_rate: positives as f64 / y_train.len() as f64,
            params: request.params,
            dataset_fingerprint: fingerprint(&[(&x_train, &y_train), (&x_test, &y_test)]),
            seconds: started.elapsed().as_secs_f64(),
        }),
        evaluation: Some(evaluation),
        code_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_at: Utc::now(),
    };
    Ok(Artifact { manifest, weights: Weights::Native(model) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_leaves_a_label_horizon_between_training_and_evaluation() {
        let day = 86_400_000_000;
        let times: Vec<i64> = (0..10).map(|d| d * day).collect();
        let (train, test, at) = split(&times, 2 * day, 0.2).expect("split");
        assert_eq!(at, 8 * day);
        assert_eq!(test, [8, 9]);
        // Rows up to day 6 end their window by day 8; day 7's window reaches day 9.
        assert_eq!(train, [0, 1, 2, 3, 4, 5, 6]);
        assert!(split(&[day, day], day, 0.2).is_err());
    }
}
