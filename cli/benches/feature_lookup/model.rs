//! The model the prediction phases score: `churn`, over the inputs of the example repository's
//! `churn` feature service (the 23 non-timestamp features of `user_activity`, and
//! `newsletter_opt_in` and `account_age_days` of `customer_profile`: 25 inputs from two views),
//! fitted on the benchmark's own rows with a synthetic label and registered in the data
//! directory's model registry before the server starts, as `livora train` would register it.
//!
//! One version per algorithm asked for (`--models logistic,gbdt`): version `i + 1` is the `i`-th,
//! and the first is promoted to `production`. The same table gives the KServe phases their
//! inputs, so a ModelInfer call sends what the online store holds for the user.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use chrono::Utc;
use livora_common::ClientId;
use livora_feature_store::{OnlineRow, RowKey, Value};
use livora_models::encoding::Encoding;
use livora_models::{
    Algorithm, Artifact, Classifier, Column, Encoder, FeatureRef, FitParams, Manifest, ModelRegistry, Table, Weights,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::data::{DAY_US, Rows, VIEW, number, user_activity_inputs, user_id};

/// The model's name, as the example repository's feature service is named.
pub(crate) const MODEL: &str = "churn";
/// The second view the model reads.
pub(crate) const PROFILE: &str = "customer_profile";
/// Rows the model is fitted on (the first users).
const FIT_ROWS: usize = 20_000;

const SIGNUP: [&str; 4] = ["email", "google", "apple", "guest_checkout"];
const COUNTRIES: [&str; 5] = ["FR", "DE", "ES", "IT", "NL"];

/// One `customer_profile` row per user, as the CRM sync would write it.
pub(crate) fn profile_rows(users: usize, now: i64, seed: u64) -> Vec<(RowKey, OnlineRow)> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..users)
        .map(|i| {
            let event_time = now - rng.random_range(0..3_600_000_000);
            let values = vec![
                ("signup_method".to_owned(), Value::String(SIGNUP[rng.random_range(0..SIGNUP.len())].into())),
                ("country".to_owned(), Value::String(COUNTRIES[rng.random_range(0..COUNTRIES.len())].into())),
                ("newsletter_opt_in".to_owned(), Value::Bool(rng.random_bool(0.4))),
                ("signed_up_at".to_owned(), Value::Timestamp(now - rng.random_range(DAY_US..1_500 * DAY_US))),
            ];
            (RowKey::new("user", user_id(i), PROFILE), OnlineRow { event_time, created: event_time, values })
        })
        .collect()
}

/// The model's inputs for every user, as the server reads them online at `now`: one column per
/// feature, named `view__feature`.
pub(crate) struct Inputs {
    /// The features, in the model's input order.
    pub(crate) features: Vec<FeatureRef>,
    /// Their values, one row per user.
    pub(crate) table: Table,
}

impl Inputs {
    /// The inputs of `rows` and `profiles` at `now`.
    pub(crate) fn of(rows: &Rows, profiles: &[(RowKey, OnlineRow)], now: i64) -> Result<Self> {
        let mut features = Vec::new();
        let mut table = Table::default();
        for (name, column) in user_activity_inputs(rows, now) {
            features.push(FeatureRef { view: VIEW.into(), feature: name.into() });
            table.push(format!("{VIEW}__{name}"), column)?;
        }
        let opt_in =
            profiles.iter().map(|(_, r)| r.get("newsletter_opt_in").and_then(number)).collect::<Vec<Option<f64>>>();
        let age = profiles
            .iter()
            .map(|(_, r)| match r.get("signed_up_at") {
                Some(Value::Timestamp(t)) => Some((now - t) as f64 / DAY_US as f64),
                _ => None,
            })
            .collect();
        for (name, column) in
            [("newsletter_opt_in", Column::Numeric(opt_in)), ("account_age_days", Column::Numeric(age))]
        {
            features.push(FeatureRef { view: PROFILE.into(), feature: name.into() });
            table.push(format!("{PROFILE}__{name}"), column)?;
        }
        ensure!(table.rows() == rows.rows.len(), "{} input rows for {} users", table.rows(), rows.rows.len());
        Ok(Self { features, table })
    }
}

/// A label with a churn-like shape: long since the last purchase, few recent orders and sessions.
fn labels(table: &Table, rows: usize, seed: u64) -> Result<Vec<bool>> {
    let col = |name: &str| -> Result<&Vec<Option<f64>>> {
        let i = table.names.iter().position(|n| n == &format!("{VIEW}__{name}")).context("missing column")?;
        match &table.columns[i] {
            Column::Numeric(v) => Ok(v),
            Column::Categorical(_) => anyhow::bail!("`{name}` is not numeric"),
        }
    };
    let (days, orders, sessions) = (col("days_since_last_purchase")?, col("orders_30d")?, col("sessions_7d")?);
    let mut rng = SmallRng::seed_from_u64(seed);
    Ok((0..rows)
        .map(|i| {
            let z = days[i].unwrap_or(0.0) / 60.0 - orders[i].unwrap_or(0.0) * 0.6 - sessions[i].unwrap_or(0.0) * 0.15;
            z + rng.random_range(-1.5..1.5) > 1.0
        })
        .collect())
}

/// Fits one `churn` version per algorithm on the first rows of `inputs`, registers them for
/// `client` in the data directory's model registry and promotes the first to `production`.
/// Returns each version's `(algorithm name, reference)`, e.g. `("logistic", "churn@1")`.
pub(crate) async fn register(
    data: &Path,
    client: &ClientId,
    inputs: &Inputs,
    algorithms: &[Algorithm],
) -> Result<Vec<(&'static str, String)>> {
    let url = format!("sqlite://{}?mode=rwc", data.join("registry.db").display());
    let registry =
        ModelRegistry::connect(&url, data.join("models")).await.context("cannot open the data directory's registry")?;
    let fit = inputs.table.take(&(0..FIT_ROWS.min(inputs.table.rows())).collect::<Vec<_>>());
    let encoder = Encoder::fit(&fit)?;
    ensure!(
        encoder.features.len() == inputs.features.len()
            && encoder.features.iter().all(|f| !matches!(f.encoding, Encoding::Raw)),
        "the encoder kept {} of {} inputs",
        encoder.features.len(),
        inputs.features.len()
    );
    let x = encoder.encode_table(&fit)?;
    let y = labels(&fit, fit.rows(), 7)?;
    let mut versions = Vec::new();
    for (i, &algorithm) in algorithms.iter().enumerate() {
        let version = i as i64 + 1;
        let started = std::time::Instant::now();
        let classifier = Classifier::fit(algorithm, &x, encoder.width(), &y, &FitParams::default())?;
        eprintln!(
            "feature_lookup: {MODEL} v{version} ({}) fitted on {} rows in {:.1}s",
            algorithm.name(),
            fit.rows(),
            started.elapsed().as_secs_f64()
        );
        let artifact = Artifact {
            manifest: manifest(client, version, algorithm, encoder.clone(), inputs.features.clone()),
            weights: Weights::Native(classifier),
        };
        registry.register(client, &artifact).await?;
        if i == 0 {
            registry.promote(client, MODEL, version, "production").await?;
        }
        versions.push((algorithm.name(), format!("{MODEL}@{version}")));
    }
    Ok(versions)
}

fn manifest(
    client: &ClientId,
    version: i64,
    algorithm: Algorithm,
    encoder: Encoder,
    features: Vec<FeatureRef>,
) -> Manifest {
    Manifest {
        format: livora_models::artifact::FORMAT,
        model: MODEL.into(),
        version,
        client_id: client.as_str().into(),
        algorithm,
        feature_service: MODEL.into(),
        feature_registry_version: 1,
        entity: "user".into(),
        join_key: "user_id".into(),
        features,
        encoder,
        label: "synthetic churn label of the lookup benchmark".into(),
        training: None,
        evaluation: None,
        offers: Vec::new(),
        ranking: None,
        code_version: env!("CARGO_PKG_VERSION").into(),
        created_at: Utc::now(),
    }
}
