//! Training on simulated shop traffic with a known ground truth: the simulator's customers
//! churn by a hidden decline process, and its leads convert by a hidden interest. The events
//! go to a lake; `user_activity`'s history is backfilled from it by the batch engine; a
//! customer-profile table comes from the sign-ups; then the churn, lead-scoring and
//! next-best-offer jobs run. The simulator's customers buy mostly from one or two favourite
//! categories, which their views and carts reveal: the offers of those categories are what a
//! ranker must put first.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use indicatif::ProgressBar;
use livora_common::{ClientId, Event};
use livora_feature_store::backfill::{BackfillOptions, backfill};
use livora_feature_store::{LocalOfflineStore, Repo, load_repo};
use livora_ingest::lake::{LakeConfig, LakeReader, store};
use livora_models::{Algorithm, Artifact, Evaluation, Training, zoo};
use livora_simulator::{SimConfig, Simulator};
use livora_training::{Purchases, TrainRequest, fit, prepare};

const USERS: u32 = 2_000;
const DAYS: u32 = 120;

fn shop() -> ClientId {
    ClientId::new("shop").expect("client id")
}

fn day0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).single().expect("time")
}

fn simulated() -> Vec<Event> {
    let mut sim = Simulator::new(SimConfig { client_id: shop(), users: USERS, days: DAYS, start: day0(), seed: 11 });
    sim.events()
        .map(|mut v| {
            v["received_at"] = v["timestamp"].clone();
            serde_json::from_value(v).expect("a simulated event is canonical")
        })
        .collect()
}

struct Shop {
    _dir: tempfile::TempDir,
    root: PathBuf,
    repo: Repo,
    purchases: Purchases,
}

async fn shop_with_history() -> Shop {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();
    let events = simulated();
    // The lake under `root/lake`, which is also the offline root (as in `livora serve`'s default).
    livora_tests::write_lake(&root, &events).expect("lake");
    let root = root.join("lake");
    livora_tests::write_customer_profiles(&root, "shop", &events).expect("profiles");
    let repo = load_repo(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../feature-store/example-repo"))
        .expect("the example repository loads");
    let store = LocalOfflineStore::new(&root);
    let options =
        BackfillOptions::new(day0(), day0() + chrono::Duration::days(i64::from(DAYS)), Duration::from_secs(86_400));
    let lake = LakeReader::new(store::open(&root.display().to_string(), &LakeConfig::default()).expect("lake"));
    let from_lake = lake.read_events("shop", (None, None)).await.expect("events read back");
    assert_eq!(from_lake.len(), events.len());
    for view in ["user_activity", "user_interests"] {
        backfill(&store, &shop(), &repo, view, &from_lake, &options, Utc::now().timestamp_micros(), &|_, _| {})
            .expect("backfill");
    }
    let purchases = lake.user_event_props("shop", zoo::PURCHASE).await.expect("purchases");
    let times = lake.user_event_times("shop", zoo::PURCHASE).await.expect("purchase times");
    let purchases = Purchases::with_categories(purchases.events, purchases.latest);
    assert_eq!(purchases.times, times.times, "both readers see the same purchases");
    assert_eq!(purchases.latest, times.latest);
    Shop { _dir: dir, root, repo, purchases }
}

fn request(model: &'static livora_models::ModelSpec, algorithm: Algorithm) -> TrainRequest {
    TrainRequest {
        client: shop(),
        model,
        start: day0() + chrono::Duration::days(14),
        end: day0() + chrono::Duration::days(i64::from(DAYS) - 1),
        cadence: Duration::from_secs(86_400),
        algorithm: Some(algorithm),
        params: model.params,
        test_fraction: 0.25,
    }
}

fn evaluation(a: &Artifact) -> &Evaluation {
    a.manifest.evaluation.as_ref().expect("a trained model is evaluated")
}

fn training(a: &Artifact) -> &Training {
    a.manifest.training.as_ref().expect("a trained model says how")
}

fn weights(a: &Artifact) -> String {
    a.classifier().expect("native").to_json().expect("json")
}

#[tokio::test(flavor = "multi_thread")]
async fn churn_and_lead_scoring_learn_the_simulated_truth() {
    let shop = shop_with_history().await;
    let store = Arc::new(LocalOfflineStore::new(&shop.root));
    let bar = ProgressBar::hidden();
    for spec in [&zoo::CHURN, &zoo::LEAD_SCORING] {
        let req = request(spec, Algorithm::Gbdt);
        let prepared =
            prepare(&req, &shop.repo, 1, store.as_ref(), &shop.root, &shop.purchases, &bar).expect("prepare");
        // Rows whose label window is still open were dropped, not guessed.
        assert!(prepared.dropped.label_not_observed > 0, "{:?}", prepared.dropped);
        assert!(prepared.features.iter().all(|f| !f.feature.ends_with("_at")), "instants are not model inputs");
        let gbdt = fit(&req, &prepared, 1, &bar).expect("fit gbdt");
        let logistic = fit(&request(spec, Algorithm::Logistic), &prepared, 2, &bar).expect("fit logistic");
        let (g, l) = (evaluation(&gbdt), evaluation(&logistic));
        eprintln!(
            "{}: {} train / {} evaluation rows, {:.1}% / {:.1}% positive; AUC gbdt {:.4}, logistic {:.4}; \
             log loss gbdt {:.4}, logistic {:.4}, prior {:.4}",
            spec.name,
            training(&gbdt).train_rows,
            training(&gbdt).test_rows,
            100.0 * training(&gbdt).train_positive_rate,
            100.0 * g.model.positives as f64 / g.model.rows as f64,
            g.model.roc_auc,
            l.model.roc_auc,
            g.model.log_loss,
            l.model.log_loss,
            l.baseline.log_loss
        );
        assert_eq!(g.baseline_algorithm, Algorithm::Logistic);
        assert_eq!(l.baseline_algorithm, Algorithm::Prior);
        assert_eq!(g.baseline, l.model, "the baseline is evaluated on the same rows as the model");
        // Stated targets on this simulation (measured with the zoo's parameters: churn gbdt
        // 0.742, logistic 0.712; leads gbdt 0.860, logistic 0.859).
        assert!(g.model.log_loss < l.baseline.log_loss, "{}: gbdt log loss vs the prior: {g:?} {l:?}", spec.name);
        match spec.name {
            "churn" => {
                assert!(g.model.roc_auc > 0.73, "churn: gbdt AUC {}", g.model.roc_auc);
                assert!(g.model.roc_auc > l.model.roc_auc + 0.02, "churn: trees beat the linear baseline: {g:?}");
            }
            _ => {
                assert!(g.model.roc_auc > 0.84 && l.model.roc_auc > 0.84, "leads: {g:?} {l:?}");
                // On par: the leads' signal is close to additive here.
                assert!(g.model.roc_auc > l.model.roc_auc - 0.005, "leads: trees vs the baseline: {g:?} {l:?}");
                assert!(l.model.log_loss < l.baseline.log_loss, "leads: logistic log loss vs the prior: {l:?}");
            }
        }

        // Seeded: the same data and seed give the same dataset fingerprint and weights.
        let again = fit(&req, &prepared, 1, &bar).expect("fit again");
        assert_eq!(training(&again).dataset_fingerprint, training(&gbdt).dataset_fingerprint);
        assert_eq!(weights(&again), weights(&gbdt));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_range_without_observable_labels_is_refused_with_advice() {
    let shop = shop_with_history().await;
    let store = LocalOfflineStore::new(&shop.root);
    let bar = ProgressBar::hidden();
    // The last 20 days: no churn label window (30 days) has closed by the lake's last event.
    let mut req = request(&zoo::CHURN, Algorithm::Gbdt);
    req.start = day0() + chrono::Duration::days(i64::from(DAYS) - 20);
    let prepared = prepare(&req, &shop.repo, 1, &store, &shop.root, &shop.purchases, &bar).expect("prepare");
    assert!(prepared.labels.is_empty());
    let err = fit(&req, &prepared, 1, &bar).expect_err("nothing to train on");
    assert!(err.to_string().contains("widen --start/--end"), "{err}");

    req.end = req.start;
    let err = prepare(&req, &shop.repo, 1, &store, &shop.root, &shop.purchases, &bar).expect_err("empty range");
    assert!(err.to_string().contains("--end"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn next_best_offer_ranks_the_offers_customers_take_above_popularity() {
    let shop = shop_with_history().await;
    let store = LocalOfflineStore::new(&shop.root);
    let bar = ProgressBar::hidden();
    let req = request(&zoo::NEXT_BEST_OFFER, Algorithm::Mlp);
    let prepared = prepare(&req, &shop.repo, 1, &store, &shop.root, &shop.purchases, &bar).expect("prepare");
    // The catalogue is the repository's offers, by name; every row accepted at least one.
    let offers: Vec<&String> = shop.repo.offers.keys().collect();
    assert_eq!(prepared.offers.iter().collect::<Vec<_>>(), offers);
    assert!(prepared.labels.is_empty() && !prepared.accepted.is_empty());
    assert!(prepared.accepted.iter().all(|a| !a.is_empty() && a.iter().all(|&o| o < offers.len())));
    // Users who buy nothing in the horizon are outside the population, not negatives.
    assert!(prepared.dropped.not_in_population > prepared.accepted.len(), "{:?}", prepared.dropped);

    let mlp = fit(&req, &prepared, 1, &bar).expect("fit mlp");
    let m = &mlp.manifest;
    assert_eq!(m.offers.len(), offers.len());
    assert!(m.evaluation.is_none());
    let r = m.ranking.as_ref().expect("a ranker is evaluated");
    assert_eq!(r.baseline_algorithm, Algorithm::Popularity);
    let at = |metrics: &[livora_models::RankingMetrics], k: usize| {
        metrics.iter().find(|x| x.k == k).cloned().expect("metrics at k")
    };
    let (model3, base3, model1, base1) = (at(&r.model, 3), at(&r.baseline, 3), at(&r.model, 1), at(&r.baseline, 1));
    eprintln!(
        "next_best_offer: {} train / {} evaluation rows, {} offers; NDCG@3 mlp {:.4}, popularity {:.4}; \
         precision@1 mlp {:.4}, popularity {:.4}; recall@3 mlp {:.4}, popularity {:.4}; {} epochs",
        training(&mlp).train_rows,
        training(&mlp).test_rows,
        m.offers.len(),
        model3.ndcg_at_k,
        base3.ndcg_at_k,
        model1.precision_at_k,
        base1.precision_at_k,
        model3.recall_at_k,
        base3.recall_at_k,
        match &mlp.weights {
            livora_models::Weights::Ranker(livora_models::Ranker::Mlp(n)) => n.epochs,
            _ => 0,
        }
    );
    assert_eq!(model3.rows, base3.rows, "the baseline is evaluated on the same rows as the model");
    // Stated targets on this simulation (measured with the zoo's parameters: NDCG@3 0.528 vs
    // popularity 0.340, precision@1 0.392 vs 0.212): the network finds the favourite categories
    // that popularity cannot.
    assert!(model3.ndcg_at_k > 0.48 && model3.ndcg_at_k > base3.ndcg_at_k + 0.12, "NDCG@3: {model3:?} vs {base3:?}");
    assert!(model1.precision_at_k > base1.precision_at_k + 0.12, "precision@1: {model1:?} vs {base1:?}");

    // Seeded: the same data and seed give the same weights.
    let again = fit(&req, &prepared, 1, &bar).expect("fit again");
    let json = |a: &Artifact| a.ranker().expect("a ranker").to_json().expect("json");
    assert_eq!(json(&again), json(&mlp));

    // A classifier algorithm does not fit a ranking model, and the error says which do.
    let err = fit(&request(&zoo::NEXT_BEST_OFFER, Algorithm::Gbdt), &prepared, 1, &bar).expect_err("gbdt");
    assert!(err.to_string().contains("use one of popularity, mlp"), "{err}");
}
