//! The training job: dataset, labels, split, fit, evaluate.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use indicatif::ProgressBar;
use livora_common::ClientId;
use livora_feature_store::dataset::{self, DatasetRequest, Entities, Selection};
use livora_feature_store::{OfflineStore, Repo, SpineOptions};
use livora_models::algorithms::ranked;
use livora_models::encoding::Skipped;
use livora_models::{
    Algorithm, Artifact, Classifier, Encoder, Evaluation, FeatureRef, FitParams, Manifest, ModelSpec, Ranker,
    RankingEvaluation, Table, Training, Weights, classifier_metrics, ranking_metrics,
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
    /// Entity key → each purchase's time (µs) and its items' categories, in time order: the
    /// labels of a ranking model (next-best offer). Empty for the other models.
    pub categories: HashMap<String, Vec<(i64, Vec<String>)>>,
    /// The latest event time of any event in the lake (µs): a label window must end by then.
    pub latest: Option<i64>,
}

impl Purchases {
    /// Purchases with their items' categories, from each user's purchase events as (time µs,
    /// `props` JSON) in time order: the categories are the `category` of each of
    /// `props.items` (the shop SDKs' and the simulator's purchase schema). A purchase whose
    /// props hold no item category accepts no offer; it still counts as a purchase.
    pub fn with_categories(events: HashMap<String, Vec<(i64, String)>>, latest: Option<i64>) -> Self {
        let mut out = Self { latest, ..Self::default() };
        for (user, events) in events {
            let times = events.iter().map(|e| e.0).collect();
            let categories = events.into_iter().map(|(t, props)| (t, item_categories(&props))).collect();
            out.times.insert(user.clone(), times);
            out.categories.insert(user, categories);
        }
        out
    }
}

/// The distinct `category` values of a purchase's `props.items`, in item order.
fn item_categories(props: &str) -> Vec<String> {
    let Ok(props) = serde_json::from_str::<serde_json::Value>(props) else { return Vec::new() };
    let mut out: Vec<String> = Vec::new();
    for item in props.get("items").and_then(|i| i.as_array()).into_iter().flatten() {
        if let Some(c) = item.get("category").and_then(|c| c.as_str())
            && !out.iter().any(|o| o == c)
        {
            out.push(c.to_owned());
        }
    }
    out
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
    /// Label of each row of a classifier (empty for a ranker).
    pub labels: Vec<bool>,
    /// A ranker: the offers, in the model's output order (the client's `[[offer]]`s by name).
    pub offers: Vec<String>,
    /// A ranker: the offers each row accepted (indices into `offers`, ascending, never empty).
    pub accepted: Vec<Vec<usize>>,
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
    let (offers, offer_purchases) = if spec.label.is_ranking() {
        offer_purchases(repo, spec, &request.client, purchases)?
    } else {
        (Vec::new(), HashMap::new())
    };
    let mut dropped = Dropped::default();
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    let mut accepted = Vec::new();
    let none: Vec<i64> = Vec::new();
    for (i, (k, &t)) in keys.iter().zip(&times).enumerate() {
        let Some(k) = k else { continue };
        if t.saturating_add(horizon) > latest {
            dropped.label_not_observed += 1;
            continue;
        }
        if spec.label.is_ranking() {
            match offer_purchases.get(k.as_str()).and_then(|p| spec.label.accepted(t, p)) {
                Some(taken) => {
                    rows.push(i);
                    accepted.push(taken);
                }
                None => dropped.not_in_population += 1,
            }
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
        offers,
        accepted,
        table: table.take(&rows),
        features,
        skipped,
        dropped,
        feature_registry_version,
        entity: view.entity.clone(),
        join_key: key,
    })
}

/// Entity key → purchases as (time, offers accepted), for a ranking model: the client's offers
/// (by name; the model's output order) and, for each purchase, the offers whose categories its
/// items are in.
type OfferPurchases<'a> = HashMap<&'a str, Vec<(i64, Vec<usize>)>>;

fn offer_purchases<'a>(
    repo: &Repo,
    spec: &ModelSpec,
    client: &ClientId,
    purchases: &'a Purchases,
) -> Result<(Vec<String>, OfferPurchases<'a>)> {
    let offers: Vec<String> = repo.offers.keys().cloned().collect();
    if offers.len() < 2 {
        return Err(Error::InvalidArgument(format!(
            "model `{}` ranks the client's offers, and client `{client}`'s feature repository defines {}; \
             define at least 2 `[[offer]]`s (name, categories) and `livora apply` it",
            spec.name,
            offers.len()
        )));
    }
    let mut by_category: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, offer) in repo.offers.values().enumerate() {
        for c in &offer.categories {
            by_category.entry(c.as_str()).or_default().push(i);
        }
    }
    let table = purchases
        .categories
        .iter()
        .map(|(user, list)| {
            let list = list
                .iter()
                .map(|(t, categories)| {
                    let mut taken: Vec<usize> =
                        categories.iter().filter_map(|c| by_category.get(c.as_str())).flatten().copied().collect();
                    taken.sort_unstable();
                    taken.dedup();
                    (*t, taken)
                })
                .collect();
            (user.as_str(), list)
        })
        .collect();
    Ok((offers, table))
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
    let ranking = spec.label.is_ranking();
    if algorithm.is_ranker() != ranking {
        let choices: Vec<&str> = Algorithm::ALL.iter().filter(|a| a.is_ranker() == ranking).map(|a| a.name()).collect();
        let what = if ranking { "ranks offers" } else { "is a classifier" };
        return Err(Error::InvalidArgument(format!(
            "model `{}` {what}: --algorithm {algorithm} does not fit it; use one of {}",
            spec.name,
            choices.join(", ")
        )));
    }
    let baseline_algorithm = if algorithm == spec.baseline && !ranking { Algorithm::Prior } else { spec.baseline };
    let (train, test, split_at) = split(&prepared.times, spec.label.horizon_micros(), request.test_fraction)?;
    let d = &prepared.dropped;
    for (side, rows) in [("training", &train), ("evaluation", &test)] {
        if rows.len() < MIN_ROWS {
            return Err(livora_models::Error::InsufficientData(format!(
                "{} {side} rows (of {} labelled; {} spine rows outside the population, {} with a label \
                 window past the lake's last event); at least {MIN_ROWS} are needed: widen --start/--end \
                 or use a shorter --cadence",
                rows.len(),
                prepared.times.len(),
                d.not_in_population,
                d.label_not_observed
            ))
            .into());
        }
    }
    let train_table = prepared.table.take(&train);
    let test_table = prepared.table.take(&test);

    progress.set_message("encoding features".to_owned());
    let mut encoder = Encoder::fit(&train_table)?;
    encoder.skipped.splice(0..0, prepared.skipped.iter().cloned());
    let width = encoder.width();
    let x_train = encoder.encode_table(&train_table)?;
    let x_test = encoder.encode_table(&test_table)?;

    let job = Job {
        request,
        prepared,
        algorithm,
        baseline_algorithm,
        train: &train,
        x_train: &x_train,
        test: &test,
        x_test: &x_test,
        width,
    };
    let fitted = if ranking { fit_ranker(&job, progress)? } else { fit_classifier(&job, progress)? };

    // The encoder may have dropped features missing on every training row: keep the manifest's
    // feature list in the encoder's order, as inference reads them.
    let features: Vec<FeatureRef> = encoder
        .features
        .iter()
        .filter_map(|f| prepared.features.iter().find(|r| r.column() == f.name).cloned())
        .collect();
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
            train_rows: train.len(),
            test_rows: test.len(),
            train_positive_rate: fitted.positive_rate,
            params: request.params,
            dataset_fingerprint: fitted.fingerprint,
            seconds: started.elapsed().as_secs_f64(),
        }),
        evaluation: fitted.evaluation,
        offers: if ranking { prepared.offers.clone() } else { Vec::new() },
        ranking: fitted.ranking,
        code_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_at: Utc::now(),
    };
    Ok(Artifact { manifest, weights: fitted.weights })
}

/// What fitting a model and its baseline produced.
struct Fitted {
    weights: Weights,
    evaluation: Option<Evaluation>,
    ranking: Option<RankingEvaluation>,
    /// Classifiers: the positive share of the training rows; rankers: the share of the training
    /// rows' acceptances that went to the most accepted offer.
    positive_rate: f64,
    fingerprint: String,
}

/// One fit: what to fit, and the rows of each side of the split with their encoded matrices.
#[derive(Clone, Copy)]
struct Job<'a> {
    request: &'a TrainRequest,
    prepared: &'a Prepared,
    algorithm: Algorithm,
    baseline_algorithm: Algorithm,
    train: &'a [usize],
    x_train: &'a [f64],
    test: &'a [usize],
    x_test: &'a [f64],
    width: usize,
}

fn fit_classifier(job: &Job<'_>, progress: &ProgressBar) -> Result<Fitted> {
    let Job { request, prepared, algorithm, baseline_algorithm, train, x_train, test, x_test, width } = *job;
    let y_train: Vec<bool> = train.iter().map(|&i| prepared.labels[i]).collect();
    let y_test: Vec<bool> = test.iter().map(|&i| prepared.labels[i]).collect();
    let test_positives = y_test.iter().filter(|&&y| y).count();
    if test_positives == 0 || test_positives == test.len() {
        return Err(livora_models::Error::InsufficientData(format!(
            "the {} evaluation rows have a single class ({test_positives} positive): no metric can rank them; \
             widen --start/--end",
            test.len()
        ))
        .into());
    }
    progress.set_message(format!("fitting {algorithm} on {} rows × {width} columns", y_train.len()));
    let model = Classifier::fit(algorithm, x_train, width, &y_train, &request.params)?;
    progress.set_message(format!("fitting the {baseline_algorithm} baseline"));
    let baseline = Classifier::fit(baseline_algorithm, x_train, width, &y_train, &request.params)?;
    progress.set_message(format!("evaluating on {} rows", y_test.len()));
    let evaluation = Evaluation {
        model: classifier_metrics(&model.predict(x_test, width), &y_test),
        baseline_algorithm,
        baseline: classifier_metrics(&baseline.predict(x_test, width), &y_test),
    };
    let positives = y_train.iter().filter(|&&y| y).count();
    Ok(Fitted {
        weights: Weights::Native(model),
        evaluation: Some(evaluation),
        ranking: None,
        positive_rate: positives as f64 / y_train.len() as f64,
        fingerprint: fingerprint(&[(x_train, &y_train), (x_test, &y_test)]),
    })
}

/// The cut-offs rankings are evaluated at.
const RANKING_CUTOFFS: [usize; 2] = [1, 3];

fn fit_ranker(job: &Job<'_>, progress: &ProgressBar) -> Result<Fitted> {
    let Job { request, prepared, algorithm, baseline_algorithm, train, x_train, test, x_test, width } = *job;
    let offers = prepared.offers.len();
    let a_train: Vec<Vec<usize>> = train.iter().map(|&i| prepared.accepted[i].clone()).collect();
    let a_test: Vec<Vec<usize>> = test.iter().map(|&i| prepared.accepted[i].clone()).collect();
    progress.set_message(format!("fitting {algorithm} on {} rows × {width} columns, {offers} offers", train.len()));
    let model = Ranker::fit(algorithm, x_train, width, &a_train, offers, &request.params)?;
    progress.set_message(format!("fitting the {baseline_algorithm} baseline"));
    let baseline = Ranker::fit(baseline_algorithm, x_train, width, &a_train, offers, &request.params)?;
    progress.set_message(format!("evaluating on {} rows", test.len()));
    let rankings =
        |r: &Ranker| -> Result<Vec<Vec<usize>>> { Ok(r.predict(x_test, width)?.chunks(offers).map(ranked).collect()) };
    let at_cutoffs = |ranked: &[Vec<usize>]| -> Vec<_> {
        RANKING_CUTOFFS.iter().map(|&k| ranking_metrics(ranked, &a_test, k)).collect()
    };
    let evaluation = RankingEvaluation {
        model: at_cutoffs(&rankings(&model)?),
        baseline_algorithm,
        baseline: at_cutoffs(&rankings(&baseline)?),
    };
    let mut counts = vec![0usize; offers];
    for taken in &a_train {
        for &o in taken {
            counts[o] += 1;
        }
    }
    let total: usize = counts.iter().sum();
    let multi_hot = |rows: &[Vec<usize>]| -> Vec<bool> {
        rows.iter().flat_map(|taken| (0..offers).map(move |o| taken.contains(&o))).collect()
    };
    Ok(Fitted {
        weights: Weights::Ranker(model),
        evaluation: None,
        ranking: Some(evaluation),
        positive_rate: counts.iter().max().map_or(0.0, |&m| m as f64 / total.max(1) as f64),
        fingerprint: fingerprint(&[(x_train, &multi_hot(&a_train)), (x_test, &multi_hot(&a_test))]),
    })
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
