//! `livora models …` as a data scientist runs them: a scikit-learn model exported to ONNX is
//! imported against the client's features (its columns checked against the graph), versions are
//! listed and shown, an alias is promoted and rolled back, and mistakes are refused with what to
//! do instead.

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
fn import_list_show_promote_rollback() {
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
