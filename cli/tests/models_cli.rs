//! `livora models …` as a data scientist runs them: a scikit-learn model exported to ONNX is
//! imported against the client's features (its columns checked against the graph), versions are
//! listed and shown, an alias is promoted and rolled back, a canary runs beside it and ends, and
//! mistakes are refused with what to do instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_livora");
const INSTALL: &str = "python3 -m pip install onnxruntime scikit-learn skl2onnx";

/// The eight numeric features the test models read, in column order.
const FEATURES: &str = "user_activity:orders_lifetime,user_activity:revenue_lifetime,user_activity:orders_30d,\
user_activity:revenue_30d,user_activity:avg_order_value_30d,user_activity:max_order_value_30d,\
user_activity:orders_7d,user_activity:product_views_7d";

fn python(args: &[&str]) -> String {
    let out = Command::new("python3").args(args).output().unwrap_or_else(|e| panic!("python3: {e}; {INSTALL}"));
    assert!(out.status.success(), "python3 {args:?}: {}\n{INSTALL}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

/// `ORT_DYLIB_PATH`, else the library the `onnxruntime` wheel ships.
fn runtime_library() -> PathBuf {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let package = python(&["-c", "import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))"]);
    let capi = Path::new(package.trim()).join("capi");
    std::fs::read_dir(&capi)
        .expect("onnxruntime/capi")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libonnxruntime.so")))
        .unwrap_or_else(|| panic!("no libonnxruntime.so* in {}; {INSTALL}", capi.display()))
}

fn livora(data_dir: &Path, args: &[&str]) -> (bool, String) {
    let o: Output = Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("ORT_DYLIB_PATH", runtime_library())
        .output()
        .expect("livora runs");
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    (o.status.success(), text)
}

#[test]
fn import_list_show_promote_rollback_canary() {
    let data = tempfile::tempdir().expect("tempdir");
    let models = tempfile::tempdir().expect("tempdir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../inference/tests/python/sklearn_onnx.py");
    python(&[script.to_str().expect("path"), "--out", models.path().to_str().expect("path")]);
    let onnx = |name: &str| models.path().join(name).display().to_string();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../feature-store/example-repo");
    let (ok, out) = livora(data.path(), &["apply", repo.to_str().expect("path"), "--client", "shop"]);
    assert!(ok, "{out}");

    let (ok, out) = livora(data.path(), &["models", "list", "--client", "shop"]);
    assert!(ok && out.contains("has no models"), "{out}");

    let import = |file: &str, features: &str| {
        livora(
            data.path(),
            &["models", "import", "churn", "--client", "shop", "--onnx", &onnx(file), "--features", features],
        )
    };
    let (ok, out) = import("logistic.onnx", FEATURES);
    assert!(ok, "{out}");
    assert!(out.contains("imported churn v1 (onnx, input `X`, output `probabilities`; 8 columns)"), "{out}");
    let (ok, out) = import("gradient_boosting.onnx", FEATURES);
    assert!(ok && out.contains("imported churn v2"), "{out}");

    // The graph is checked against the features; a string feature is not a model input.
    let (ok, out) = import("logistic.onnx", "user_activity:orders_30d,user_activity:revenue_30d");
    assert!(!ok && out.contains("the ONNX model reads 8 columns, but 2 features were given"), "{out}");
    let (ok, out) = import("logistic.onnx", "user_activity:last_touch_channel");
    assert!(!ok && out.contains("feature `user_activity:last_touch_channel` is string"), "{out}");
    let (ok, out) = import("logistic_zipmap.onnx", FEATURES);
    assert!(!ok && out.contains("zipmap"), "{out}");
    let (ok, out) = import("rows.json", FEATURES);
    assert!(!ok, "a file that is not ONNX is refused: {out}");

    let (ok, out) = livora(data.path(), &["models", "list", "--client", "shop"]);
    assert!(ok && out.contains("churn               2  onnx") && out.contains("churn               1  onnx"), "{out}");
    let (ok, out) = livora(data.path(), &["models", "show", "churn@2", "--client", "shop"]);
    assert!(ok && out.contains("imported: not trained by Livora"), "{out}");
    assert!(out.contains("user_activity__product_views_7d"), "{out}");

    // Aliases: none yet, then promote, promote, roll back.
    let (ok, out) = livora(data.path(), &["models", "show", "churn", "--client", "shop"]);
    assert!(!ok && out.contains("livora models promote churn <version> --alias production"), "{out}");
    let (ok, out) = livora(data.path(), &["models", "promote", "churn", "1", "--client", "shop"]);
    assert!(ok && out.contains("churn production: v1 (was none)"), "{out}");
    let (ok, out) = livora(data.path(), &["models", "promote", "churn", "2", "--client", "shop"]);
    assert!(ok && out.contains("churn production: v2 (was v1)"), "{out}");
    let (ok, out) = livora(data.path(), &["models", "rollback", "churn", "--client", "shop"]);
    assert!(ok && out.contains("churn production: v1 (was v2)"), "{out}");
    let (ok, out) = livora(data.path(), &["models", "show", "churn", "--client", "shop"]);
    assert!(ok && out.contains("churn v1 (onnx)") && out.contains("aliases:   production"), "{out}");
    let (ok, out) = livora(data.path(), &["models", "compare", "churn@1", "churn@2", "--client", "shop"]);
    assert!(ok && out.contains("churn@1") && out.contains("churn@2"), "{out}");

    // A canary beside `production` (v1): v2 scores a tenth of its entities.
    let canary = |args: &[&str]| {
        let mut all = vec!["models", "canary", "churn", "--client", "shop"];
        all.extend_from_slice(args);
        livora(data.path(), &all)
    };
    let (ok, out) = canary(&["2", "--weight", "10"]);
    assert!(ok && out.contains("churn production → v1 (canary v2 at 10%); before: no canary"), "{out}");
    let (ok, out) = livora(data.path(), &["models", "list", "--client", "shop"]);
    assert!(ok && out.contains("canary: churn production → v1 (canary v2 at 10%)"), "{out}");
    assert!(out.contains("production canary 10%"), "the canary version's row says so: {out}");
    let (ok, out) = livora(data.path(), &["models", "show", "churn", "--client", "shop"]);
    assert!(ok && out.contains("canary:    production → v1 (canary v2 at 10%)"), "{out}");
    let (ok, out) = canary(&["2", "--weight", "25"]);
    assert!(ok && out.contains("churn production → v1 (canary v2 at 25%); before: canary v2 at 10%"), "{out}");

    // Mistakes are refused, naming the field and the reason.
    let (ok, out) = canary(&["2", "--weight", "0"]);
    assert!(!ok && out.contains("weight: 0 is not a share of entities from 1 to 100 (percent)"), "{out}");
    let (ok, out) = canary(&["2", "--weight", "101"]);
    assert!(!ok && out.contains("weight: 101 is not a share of entities from 1 to 100 (percent)"), "{out}");
    let (ok, out) = canary(&["1", "--weight", "10"]);
    assert!(!ok && out.contains("version: `production` of model `churn` already points at v1"), "{out}");
    let (ok, out) = canary(&["9", "--weight", "10"]);
    assert!(!ok && out.contains("model `churn` has no version 9 for client `shop`"), "{out}");
    let (ok, out) = canary(&["2", "--weight", "10", "--alias", "canary"]);
    assert!(!ok && out.contains("alias: `canary` is not one of production, staging, shadow"), "{out}");
    let (ok, out) = canary(&["2", "--weight", "10", "--alias", "staging"]);
    assert!(!ok && out.contains("alias: `staging` of model `churn` points at no version"), "{out}");
    let (ok, out) = canary(&["2"]);
    assert!(!ok && out.contains("--weight"), "a weight is required: {out}");
    let (ok, out) = canary(&["2", "--weight", "10", "--clear"]);
    assert!(!ok && out.contains("cannot be used with"), "{out}");
    // The same features in another order: refused, saying why.
    let swapped = FEATURES.replacen(
        "user_activity:orders_lifetime,user_activity:revenue_lifetime",
        "user_activity:revenue_lifetime,user_activity:orders_lifetime",
        1,
    );
    let (ok, out) = import("logistic.onnx", &swapped);
    assert!(ok && out.contains("imported churn v3"), "{out}");
    let (ok, out) = canary(&["3", "--weight", "10"]);
    assert!(
        !ok && out.contains(
            "version: v3 cannot be the canary of `production` (v1) of model `churn`: v3 reads 8 features and v1 \
             reads 8: feature 1 is `user_activity:revenue_lifetime` in v3 but `user_activity:orders_lifetime` in v1"
        ),
        "{out}"
    );

    // Cleared, set again, and ended by promoting the canary's version.
    let (ok, out) = canary(&["--clear"]);
    assert!(ok && out.contains("churn production → v1 (canary v2 at 25% cleared: v1 scores every entity)"), "{out}");
    let (ok, out) = canary(&["--clear"]);
    assert!(ok && out.contains("churn production: no canary to clear"), "{out}");
    let (ok, out) = canary(&["2", "--weight", "5"]);
    assert!(ok, "{out}");
    let (ok, out) = livora(data.path(), &["models", "promote", "churn", "2", "--client", "shop"]);
    assert!(ok && out.contains("churn production: v2 (was v1)"), "{out}");
    assert!(out.contains("canary v2 at 5% ended: v2 scores every entity"), "{out}");
    let (ok, out) = livora(data.path(), &["models", "show", "churn", "--client", "shop"]);
    assert!(ok && out.contains("churn v2 (onnx)") && !out.contains("canary"), "{out}");

    // A model served by a SageMaker endpoint: registered with its features; Livora calls it.
    let (ok, out) = livora(
        data.path(),
        &[
            "models",
            "import",
            "churn_sm",
            "--client",
            "shop",
            "--sagemaker-endpoint",
            "churn-xgb-prod",
            "--features",
            "user_activity:orders_30d,user_activity:revenue_30d",
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("imported churn_sm v1 (sagemaker endpoint `churn-xgb-prod`, text/csv; 2 columns)"), "{out}");
    let (ok, out) = livora(
        data.path(),
        &["models", "import", "x", "--client", "shop", "--sagemaker-endpoint", "a b", "--features", FEATURES],
    );
    assert!(!ok && out.contains("--sagemaker-endpoint `a b`: an endpoint name is 1 to 63"), "{out}");
    let (ok, out) = livora(data.path(), &["models", "import", "x", "--client", "shop", "--features", FEATURES]);
    assert!(!ok && out.contains("--onnx"), "one of --onnx and --sagemaker-endpoint is required: {out}");

    // Tenancy: another client sees none of it.
    let (ok, out) = livora(data.path(), &["models", "show", "churn@1", "--client", "other"]);
    assert!(!ok && out.contains("no version 1 for client `other`"), "{out}");
    let (ok, out) = livora(data.path(), &["models", "promote", "churn", "9", "--client", "shop", "--alias", "canary"]);
    assert!(!ok && out.contains("`canary` is not one of production, staging, shadow"), "{out}");
}
