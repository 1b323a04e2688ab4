"""Fits scikit-learn models, exports them to ONNX with skl2onnx, and writes what they score.

The ONNX runtime tests of `livora-inference` run this and compare their scores with
scikit-learn's on the same float32 rows. Writes into --out:

- `logistic.onnx`, `gradient_boosting.onnx`: binary classifiers exported with `zipmap=False` (one
  `probabilities` output of shape [N, 2]);
- `logistic_zipmap.onnx`: the same logistic regression with skl2onnx's default ZipMap output (a
  sequence of maps), which the runtime must refuse with a clear error;
- `rows.json`: the rows, as float32 values (a list of lists);
- `<name>_proba.json`: scikit-learn's `predict_proba(rows)[:, 1]` for each classifier.

Needs: python3 -m pip install onnxruntime scikit-learn skl2onnx
"""

import argparse
import json
import pathlib

import numpy as np
from sklearn.datasets import make_classification
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from skl2onnx import to_onnx

N_FEATURES = 8
OPSETS = {"": 17, "ai.onnx.ml": 3}


def export(model, rows, zipmap):
    """The ONNX bytes of a fitted classifier; `zipmap=False` gives a plain probability tensor."""
    options = None if zipmap else {id(model): {"zipmap": False}}
    # Opsets pinned below skl2onnx's newest, so that older ONNX Runtimes (>= 1.17) load the models.
    return to_onnx(model, rows[:1], options=options, target_opset=OPSETS).SerializeToString()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=pathlib.Path, help="directory to write into")
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)

    x, y = make_classification(
        n_samples=2000, n_features=N_FEATURES, n_informative=5, n_redundant=2, random_state=7
    )
    # The runtime sees float32; scikit-learn scores the same float32 rows (upcast to float64).
    rows = x.astype(np.float32)

    models = {
        "logistic": LogisticRegression(max_iter=1000).fit(rows, y),
        # Not HistGradientBoostingClassifier: skl2onnx 1.20.0 fails to convert it under
        # scikit-learn 1.9 ("Expected an int, got a boolean" in TreeEnsembleClassifier).
        "gradient_boosting": GradientBoostingClassifier(n_estimators=50, random_state=7).fit(rows, y),
    }
    for name, model in models.items():
        (out / f"{name}.onnx").write_bytes(export(model, rows, zipmap=False))
        proba = model.predict_proba(rows)[:, 1]
        (out / f"{name}_proba.json").write_text(json.dumps(proba.tolist()))
    (out / "logistic_zipmap.onnx").write_bytes(export(models["logistic"], rows, zipmap=True))
    # float32 -> Python float is exact, and json writes the shortest text that reads back the same.
    (out / "rows.json").write_text(json.dumps(rows.tolist()))


if __name__ == "__main__":
    main()
