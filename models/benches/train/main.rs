//! Training benchmark: Livora's logistic regression and gradient-boosted trees against
//! scikit-learn's `LogisticRegression` and `HistGradientBoostingClassifier`, in one run on the
//! same data.
//!
//! Generates (seeded) a churn-like training set, encodes it with [`Encoder`] fitted on the
//! training rows (exactly what `livora train` does), writes the encoded matrices as `.npy` files,
//! times Livora's fits in-process (best of 3), scoring of the evaluation rows and single-row
//! latency, then runs `reference.py` beside this file on the same files and prints one table.
//!
//! ```sh
//! cargo bench -p livora-models --bench train
//! cargo bench -p livora-models --bench train -- --train-rows 20000 --test-rows 5000 --no-reference
//! ```
//!
//! Flags: `--train-rows N` (200,000), `--test-rows N` (50,000), `--seed N` (7), `--dir PATH`
//! (keep the files there instead of a temporary directory), `--no-reference` (Livora only).
//!
//! Both engines use every core by default (forust through rayon, scikit-learn through OpenMP and
//! OpenBLAS). On a machine shared with other work, OpenMP's threads slow down far more than
//! rayon's when a core is taken; `RAYON_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1`
//! (inherited by `reference.py`) compares the two on one thread each.

mod data;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use livora_models::{Algorithm, Classifier, ClassifierMetrics, Encoder, FitParams, classifier_metrics};
use serde::Deserialize;

const RUNS: usize = 3;
const LATENCY_CALLS: usize = 10_000;

struct Args {
    train_rows: usize,
    test_rows: usize,
    seed: u64,
    dir: Option<PathBuf>,
    reference: bool,
}

fn parse_args() -> Result<Args> {
    let mut args = Args { train_rows: 200_000, test_rows: 50_000, seed: 7, dir: None, reference: true };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--train-rows" => args.train_rows = value()?.parse()?,
            "--test-rows" => args.test_rows = value()?.parse()?,
            "--seed" => args.seed = value()?.parse()?,
            "--dir" => args.dir = Some(PathBuf::from(value()?)),
            "--no-reference" => args.reference = false,
            // cargo bench passes `--bench`.
            "--bench" => {}
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(args)
}

/// CPU seconds of this process so far, all threads (`/proc/self/stat`, 100 ticks a second).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: Vec<f64> = after.split_whitespace().skip(11).take(2).filter_map(|t| t.parse().ok()).collect();
    ticks.iter().sum::<f64>() / 100.0
}

/// Busy CPU seconds of the whole machine so far (`/proc/stat`: all but idle and iowait).
fn machine_busy() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> =
        stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|t| t.parse().ok()).collect();
    let idle = ticks.get(3).unwrap_or(&0.0) + ticks.get(4).unwrap_or(&0.0);
    // Guest time is already counted in user time.
    (ticks.iter().take(8).sum::<f64>() - idle) / 100.0
}

/// Wall and CPU seconds of one measurement, and the cores other processes kept busy meanwhile.
#[derive(Clone, Copy)]
struct Timing {
    wall: f64,
    cpu: f64,
    others: f64,
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One line of the results table.
struct Row {
    engine: &'static str,
    model: String,
    fit: Timing,
    metrics: (f64, f64, f64),
    used: String,
    predict: f64,
    /// Median and p99 of one-row predictions (Livora only).
    latency: Option<(Duration, Duration)>,
}

/// Runs `f` [`RUNS`] times, printing each; the fastest run's timing and result.
fn best_of<T>(label: &str, mut f: impl FnMut() -> T) -> (Timing, T) {
    let mut best: Option<(Timing, T)> = None;
    for run in 1..=RUNS {
        let (cpu, busy, start) = (cpu_seconds(), machine_busy(), Instant::now());
        let out = f();
        let wall = start.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu;
        let others = ((machine_busy() - busy - cpu) / wall).max(0.0);
        println!("  {label} {run}/{RUNS}: {wall:.3} s (CPU {cpu:.2} s; other processes {others:.2} cores)");
        if best.as_ref().is_none_or(|b| wall < b.0.wall) {
            best = Some((Timing { wall, cpu, others }, out));
        }
    }
    best.expect("RUNS > 0")
}

fn triple(m: &ClassifierMetrics) -> (f64, f64, f64) {
    (m.roc_auc, m.pr_auc, m.log_loss)
}

/// Median and p99 of [`LATENCY_CALLS`] one-row predictions, cycling through `x`'s rows.
fn latency(model: &Classifier, x: &[f64], width: usize) -> (Duration, Duration) {
    let mut times: Vec<Duration> = x
        .chunks_exact(width)
        .cycle()
        .take(LATENCY_CALLS)
        .map(|row| {
            let start = Instant::now();
            black_box(model.predict(black_box(row), width));
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[times.len() / 2], times[times.len() * 99 / 100])
}

/// The penalised objective linfa and scikit-learn both minimise, `Σ log loss + l2/2 · ‖w‖²`
/// (intercept not penalised), and the largest absolute component of its gradient.
fn objective(x: &[f64], width: usize, y: &[bool], w: &[f64], b: f64, l2: f64) -> (f64, f64) {
    let (mut loss, mut grad) = (0.0, vec![0.0; width + 1]);
    for (row, &label) in x.chunks_exact(width).zip(y) {
        let z = b + row.iter().zip(w).map(|(a, c)| a * c).sum::<f64>();
        let t = if label { -z } else { z };
        loss += t.max(0.0) + (-t.abs()).exp().ln_1p();
        let g = 1.0 / (1.0 + (-z).exp()) - if label { 1.0 } else { 0.0 };
        row.iter().zip(&mut grad).for_each(|(a, gr)| *gr += g * a);
        grad[width] += g;
    }
    w.iter().zip(&mut grad).for_each(|(c, gr)| *gr += l2 * c);
    let penalty = 0.5 * l2 * w.iter().map(|c| c * c).sum::<f64>();
    (loss + penalty, grad.iter().fold(0.0, |m, g| g.abs().max(m)))
}

/// The trees a forust booster built and the number its predictions use (fewer after early
/// stopping: it keeps the rounds past the best one but predicts with the best).
fn trees(model: &Classifier) -> Result<(usize, usize)> {
    let json: serde_json::Value = serde_json::from_str(&model.to_json()?)?;
    let built = json["trees"].as_array().map_or(0, Vec::len);
    let used = json["prediction_iteration"].as_u64().map_or(built, |n| n as usize);
    Ok((built, used))
}

#[derive(Deserialize)]
struct Reference {
    python: String,
    sklearn: String,
    numpy: String,
    threads: String,
    sha256: std::collections::BTreeMap<String, String>,
    models: Vec<ReferenceModel>,
}

#[derive(Deserialize)]
struct ReferenceModel {
    key: String,
    name: String,
    fit_seconds: Vec<f64>,
    cpu_seconds: Vec<f64>,
    other_cores: Vec<f64>,
    predict_seconds: f64,
    roc_auc: f64,
    pr_auc: f64,
    log_loss: f64,
    roc_auc_runs: Vec<f64>,
    iterations: usize,
    warnings: Vec<String>,
    #[serde(default)]
    coef: Vec<f64>,
    #[serde(default)]
    intercept: f64,
}

fn run_reference(dir: &Path) -> Result<Reference> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/train/reference.py");
    println!("running python3 {script} --dir {} (load {})", dir.display(), load());
    let out = Command::new("python3")
        .args([script, "--dir"])
        .arg(dir)
        .output()
        .context("running python3 (install Python 3, then: pip install scikit-learn numpy)")?;
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    ensure!(out.status.success(), "reference.py failed ({}); see its message above", out.status);
    serde_json::from_slice(&out.stdout).context("reading reference.py's JSON")
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let temp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    println!("load average at start: {}", load());
    let threads = ["RAYON_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"]
        .map(|v| format!("{v}={}", std::env::var(v).unwrap_or_else(|_| "unset".into())));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("{cores} cores; {}", threads.join(" "));

    let start = Instant::now();
    let (train, test) = (data::generate(args.train_rows, args.seed)?, data::generate(args.test_rows, args.seed + 1)?);
    let encoder = Encoder::fit(&train.table)?;
    let width = encoder.width();
    let (x_train, x_test) = (encoder.encode_table(&train.table)?, encoder.encode_table(&test.table)?);
    let positives = |y: &[bool]| y.iter().filter(|&&v| v).count() as f64 / y.len() as f64;
    println!(
        "data: {} train + {} test rows, {} features -> {width} model columns, positive rate {:.3} / {:.3} ({:.1} s)",
        args.train_rows,
        args.test_rows,
        train.table.names.len(),
        positives(&train.y),
        positives(&test.y),
        start.elapsed().as_secs_f64()
    );
    for f in encoder.features.iter().filter(|f| f.missing_rate > 0.0) {
        println!("  {} missing on {:.1} % of training rows", f.name, 100.0 * f.missing_rate);
    }
    let labels = |y: &[bool]| y.iter().map(|&v| if v { 1.0 } else { 0.0 }).collect::<Vec<f64>>();
    let mut sha = Vec::new();
    for (name, shape, values) in [
        ("x_train.npy", vec![args.train_rows, width], x_train.clone()),
        ("y_train.npy", vec![args.train_rows], labels(&train.y)),
        ("x_test.npy", vec![args.test_rows, width], x_test.clone()),
        ("y_test.npy", vec![args.test_rows], labels(&test.y)),
    ] {
        sha.push((name, data::write_npy(&dir.join(name), &shape, &values)?));
    }

    let params = FitParams::default();
    let mut rows = Vec::new();
    let mut logistic = None;
    for algorithm in [Algorithm::Logistic, Algorithm::Gbdt] {
        let fit = || Classifier::fit(algorithm, &x_train, width, &train.y, &params).expect("the bench data fits");
        let (fit, model) = best_of(&format!("livora {algorithm} fit"), fit);
        let (predict, p) = best_of(&format!("livora {algorithm} predict"), || model.predict(&x_test, width));
        let latency = Some(latency(&model, &x_test, width));
        let used = match algorithm {
            Algorithm::Gbdt => trees(&model).map(|(built, used)| format!("{used} trees ({built} built)"))?,
            _ => format!("≤ {} iterations", params.max_iterations),
        };
        let metrics = triple(&classifier_metrics(&p, &test.y));
        let model_name = algorithm.to_string();
        rows.push(Row { engine: "Livora", model: model_name, fit, metrics, used, predict: predict.wall, latency });
        if let Classifier::Logistic(lr) = model {
            logistic = Some(lr);
        }
    }

    let mut reference = None;
    if args.reference {
        let r = run_reference(&dir)?;
        for (name, hash) in &sha {
            ensure!(r.sha256.get(*name) == Some(hash), "{name}: Python read other bytes than Rust wrote");
        }
        for m in &r.models {
            // The same metric code on the reference's probabilities.
            let p = data::read_f64(&dir.join(format!("sklearn_{}.pred.f64", m.key)))?;
            let ours = triple(&classifier_metrics(&p, &test.y));
            let gap = (ours.0 - m.roc_auc).abs().max((ours.1 - m.pr_auc).abs()).max((ours.2 - m.log_loss).abs());
            println!("  {}: Livora's metrics on its probabilities differ from sklearn's by {gap:.1e}", m.key);
            let best = (0..m.fit_seconds.len()).min_by(|&a, &b| m.fit_seconds[a].total_cmp(&m.fit_seconds[b]));
            let best = best.context("no fit times")?;
            let (lo, hi) = m.roc_auc_runs.iter().fold((1.0f64, 0.0f64), |(l, h), &a| (l.min(a), h.max(a)));
            let used = if m.key == "logistic" { "iterations" } else { "trees" };
            rows.push(Row {
                engine: "scikit-learn",
                model: m.name.clone(),
                fit: Timing { wall: m.fit_seconds[best], cpu: m.cpu_seconds[best], others: m.other_cores[best] },
                metrics: (m.roc_auc, m.pr_auc, m.log_loss),
                used: format!("{} {used}{}", m.iterations, spread(lo, hi)),
                predict: m.predict_seconds,
                latency: None,
            });
            m.warnings.iter().for_each(|w| println!("  {} warned: {w}", m.key));
        }
        reference = Some(r);
    }
    let truth = triple(&classifier_metrics(&test.p, &test.y));
    println!("load average at end: {}\n", load());

    report(&rows, truth, args.test_rows);
    if let (Some(r), Some(lr)) = (&reference, &logistic) {
        let sk = r.models.iter().find(|m| m.key == "logistic").context("no logistic reference")?;
        let ours = objective(&x_train, width, &train.y, &lr.coefficients, lr.intercept, params.l2);
        let theirs = objective(&x_train, width, &train.y, &sk.coef, sk.intercept, params.l2);
        let dcoef = lr.coefficients.iter().zip(&sk.coef).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        println!("\nlogistic objective Σ log loss + l2/2·‖w‖² on the training rows (l2 = {}):", params.l2);
        println!("  livora  {:.4} (max |gradient| {:.2e})", ours.0, ours.1);
        println!("  sklearn {:.4} (max |gradient| {:.2e}); max |Δ coefficient| {dcoef:.2e}", theirs.0, theirs.1);
        println!("\nPython {}, scikit-learn {}, NumPy {}; threads: {}", r.python, r.sklearn, r.numpy, r.threads);
    }
    Ok(())
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn spread(lo: f64, hi: f64) -> String {
    if hi - lo > 1e-6 { format!("; ROC AUC {lo:.4}–{hi:.4} over the fits") } else { String::new() }
}

/// The sklearn row Livora's `model` is compared with.
fn matching(model: &str) -> &'static str {
    if model == "logistic" { "LogisticRegression" } else { "HistGradientBoostingClassifier(max_iter=300" }
}

fn report(rows: &[Row], truth: (f64, f64, f64), test_rows: usize) {
    println!(
        "| engine | model | fit s (best of {RUNS}) | CPU s | others' cores | ROC AUC | PR AUC | log loss | trees / iterations | ΔROC AUC vs sklearn | fit time ÷ sklearn |"
    );
    println!("|---|---|--:|--:|--:|--:|--:|--:|---|--:|--:|");
    for r in rows {
        let reference = rows.iter().find(|s| s.engine == "scikit-learn" && s.model.starts_with(matching(&r.model)));
        let (delta, ratio) = match reference.filter(|_| r.engine == "Livora") {
            Some(s) => (format!("{:+.4}", r.metrics.0 - s.metrics.0), format!("{:.2}×", r.fit.wall / s.fit.wall)),
            None => ("".into(), "".into()),
        };
        let (roc, pr, ll) = r.metrics;
        println!(
            "| {} | {} | {:.3} | {:.2} | {:.2} | {roc:.4} | {pr:.4} | {ll:.4} | {} | {delta} | {ratio} |",
            r.engine, r.model, r.fit.wall, r.fit.cpu, r.fit.others, r.used
        );
    }
    println!("| (the true probabilities) | — | — | — | — | {:.4} | {:.4} | {:.4} | — | | |", truth.0, truth.1, truth.2);

    println!("\n| engine | model | predict {test_rows} rows s (best of {RUNS}) | one row p50 µs | one row p99 µs |");
    println!("|---|---|--:|--:|--:|");
    for r in rows {
        let (p50, p99) = r
            .latency
            .map_or(("—".into(), "—".into()), |(a, b)| (format!("{:.2}", micros(a)), format!("{:.2}", micros(b))));
        println!("| {} | {} | {:.4} | {p50} | {p99} |", r.engine, r.model, r.predict);
    }

    let sklearn_gbdt: Vec<&Row> = rows.iter().filter(|r| r.model.starts_with("HistGradient")).collect();
    let livora_gbdt = rows.iter().find(|r| r.engine == "Livora" && r.model == "gbdt");
    if let Some(l) = livora_gbdt {
        for s in sklearn_gbdt {
            println!(
                "gbdt against {}: ΔROC AUC {:+.4}, fit time {:.2}×",
                s.model,
                l.metrics.0 - s.metrics.0,
                l.fit.wall / s.fit.wall
            );
        }
    }
}
