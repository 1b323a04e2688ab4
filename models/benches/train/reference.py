#!/usr/bin/env python3
"""scikit-learn reference for the training benchmark (benches/train/main.rs runs this).

Loads the encoded matrices the Rust bench wrote (x_train.npy, y_train.npy, x_test.npy,
y_test.npy: little-endian f64, the very bytes Livora trains on) and times, best of 3:

- LogisticRegression(C=1.0, max_iter=300)  (lbfgs; Livora's l2 = 1.0 is 1 / C)
- HistGradientBoostingClassifier()  (defaults: 100 trees, 31 leaves, early stopping on a random
  10 % of the rows when there are more than 10,000)
- HistGradientBoostingClassifier(max_iter=300, learning_rate=0.1, max_depth=5)  (Livora's defaults)

Prints JSON on stdout: versions, thread pools, the SHA-256 of each input file, and per model the
fit seconds (wall, CPU, and the cores other processes kept busy) of every run, the scoring seconds of the evaluation rows (best of 3),
ROC AUC / PR AUC / log loss of the fastest fit on the evaluation rows, and trees or iterations
used. Writes that fit's probabilities to sklearn_<key>.pred.f64 (raw little-endian f64) so the
Rust side can score them with its own metrics.

    python3 reference.py --dir DIR

Needs: pip install scikit-learn numpy  (fails with that command when they are missing).
"""

import argparse
import hashlib
import json
import os
import platform
import sys
import time
import warnings

RUNS = 3
INSTALL = "pip install scikit-learn numpy"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    args = parser.parse_args()
    try:
        import numpy as np
        import sklearn
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import average_precision_score, log_loss, roc_auc_score
        from threadpoolctl import threadpool_info
    except ImportError as e:
        print(f"scikit-learn is missing ({e}); install it with: {INSTALL}", file=sys.stderr)
        sys.exit(2)

    sha256, arrays = {}, {}
    for name in ["x_train.npy", "y_train.npy", "x_test.npy", "y_test.npy"]:
        path = os.path.join(args.dir, name)
        with open(path, "rb") as f:
            sha256[name] = hashlib.sha256(f.read()).hexdigest()
        arrays[name] = np.load(path)
    x_train, x_test = arrays["x_train.npy"], arrays["x_test.npy"]
    y_train, y_test = arrays["y_train.npy"].astype(int), arrays["y_test.npy"].astype(int)

    models = [
        ("logistic", "LogisticRegression(C=1.0, max_iter=300)", lambda: LogisticRegression(C=1.0, max_iter=300)),
        ("hgb_default", "HistGradientBoostingClassifier()", HistGradientBoostingClassifier),
        (
            "hgb_matched",
            "HistGradientBoostingClassifier(max_iter=300, learning_rate=0.1, max_depth=5)",
            lambda: HistGradientBoostingClassifier(max_iter=300, learning_rate=0.1, max_depth=5),
        ),
    ]
    results = []
    for key, name, make in models:
        runs = []
        for _ in range(RUNS):
            model = make()
            wall, cpu, busy = time.perf_counter(), time.process_time(), machine_busy()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model.fit(x_train, y_train)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            others = max(0.0, (machine_busy() - busy - cpu) / wall)
            p = model.predict_proba(x_test)[:, 1]
            runs.append((wall, cpu, model, p, [str(w.message) for w in caught], others))
            print(f"  sklearn {key} fit: {wall:.3f} s (CPU {cpu:.2f} s; other processes {others:.2f} cores)", file=sys.stderr)
        wall, cpu, model, p, caught, _ = min(runs, key=lambda r: r[0])
        predict = min(timed(lambda: model.predict_proba(x_test)) for _ in range(RUNS))
        p.astype("<f8").tofile(os.path.join(args.dir, f"sklearn_{key}.pred.f64"))
        result = {
            "key": key,
            "name": name,
            "fit_seconds": [r[0] for r in runs],
            "cpu_seconds": [r[1] for r in runs],
            "other_cores": [r[5] for r in runs],
            "predict_seconds": predict,
            "roc_auc": roc_auc_score(y_test, p),
            "pr_auc": average_precision_score(y_test, p),
            "log_loss": log_loss(y_test, p),
            "roc_auc_runs": [roc_auc_score(y_test, r[3]) for r in runs],
            "iterations": int(model.n_iter_[0] if key == "logistic" else model.n_iter_),
            "warnings": caught,
        }
        if key == "logistic":
            result["coef"] = model.coef_[0].tolist()
            result["intercept"] = float(model.intercept_[0])
        results.append(result)

    threads = ", ".join(f"{p['internal_api']} {p['num_threads']}" for p in threadpool_info())
    print(
        json.dumps(
            {
                "python": platform.python_version(),
                "sklearn": sklearn.__version__,
                "numpy": np.__version__,
                "threads": threads,
                "sha256": sha256,
                "models": results,
            }
        )
    )


def machine_busy():
    """Busy CPU seconds of the whole machine so far (/proc/stat: all but idle and iowait)."""
    with open("/proc/stat") as f:
        ticks = [float(t) for t in f.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def timed(f):
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
