//! `livora apply` and `livora features …` as a user runs them: the example repository applies,
//! a second apply changes nothing, a breaking change is refused with the way out, and a broken
//! repository is refused with every problem located.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_livora");

fn livora(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN).arg("--data-dir").arg(data_dir).args(args).output().expect("livora runs")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn example_repo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../feature-store/example-repo")
}

#[test]
fn apply_plan_list_describe_and_refusals() {
    let data = tempfile::tempdir().unwrap();
    let repo = example_repo();
    let repo = repo.to_str().unwrap();

    let first = livora(data.path(), &["apply", repo, "--client", "demo"]);
    let (out, err) = text(&first);
    assert!(first.status.success(), "{out}{err}");
    assert!(out.contains("+ view user_activity") && out.contains("26 to add, 0 to change, 0 to remove."), "{out}");
    assert!(out.contains("now at version 1"), "{out}");

    let again = livora(data.path(), &["apply", repo, "--client", "demo"]);
    let (out, _) = text(&again);
    assert!(again.status.success() && out.contains("No changes.") && out.contains("stays at version 1"), "{out}");

    let list = livora(data.path(), &["features", "list", "--client", "demo"]);
    let (out, _) = text(&list);
    assert!(out.contains("user_activity") && out.contains("25 features of user, streaming, ttl 90d, online"), "{out}");
    assert!(out.contains("home_and_garden_week         categories home, garden"), "{out}");
    let describe = livora(data.path(), &["features", "describe", "revenue_30d", "--client", "demo"]);
    assert!(!describe.status.success(), "a feature is not a view or service");
    let describe = livora(data.path(), &["features", "describe", "user_activity", "--client", "demo"]);
    let (out, _) = text(&describe);
    assert!(
        out.contains("revenue_30d                  float64    sum(props.revenue) of purchase over 30d (hop 1d)"),
        "{out}"
    );
    let other = livora(data.path(), &["features", "list", "--client", "other"]);
    assert!(!other.status.success(), "another client sees nothing");

    // A breaking change is refused, and the message names the way out.
    let changed = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, changed.path().join(path.file_name().unwrap())).unwrap();
    }
    let product = changed.path().join("product_activity.toml");
    let text_before = std::fs::read_to_string(&product).unwrap();
    std::fs::write(&product, text_before.replacen("window = \"1h\"", "window = \"2h\"", 1)).unwrap();
    let refused = livora(data.path(), &["apply", changed.path().to_str().unwrap(), "--client", "demo"]);
    let (_, err) = text(&refused);
    assert!(!refused.status.success());
    assert!(err.contains("publish the change as `product_activity@v2`"), "{err}");

    // A broken repository: every problem, each with its file and line; nothing applied.
    std::fs::write(
        changed.path().join("bad.toml"),
        "[[entity]]\nname = \"x\"\njoin_keys = []\nvalue_type = \"float64\"\n",
    )
    .unwrap();
    let broken = livora(data.path(), &["apply", changed.path().to_str().unwrap(), "--client", "demo"]);
    let (_, err) = text(&broken);
    assert!(!broken.status.success());
    assert!(err.contains("bad.toml:1: entity `x`: join_keys must name at least one column"), "{err}");
    assert!(err.contains("bad.toml:4: entity `x`: value_type must be string, int64 or bool"), "{err}");
    let history = livora(data.path(), &["features", "history", "--client", "demo"]);
    assert_eq!(text(&history).0.lines().count(), 2, "only version 1 was recorded");
}

/// `livora … | head` closes the pipe early; the command's output ends there, quietly, and the
/// command still succeeds (it used to panic in `println!`).
#[test]
fn a_reader_that_closes_the_pipe_ends_the_output_without_a_panic() {
    let data = tempfile::tempdir().unwrap();
    // A pipe whose reader is gone: every write to it fails with a broken pipe.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(data.path())
        .args(["clients", "create", "shop"])
        .stdout(writer)
        .output()
        .expect("livora runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // The command itself was carried out.
    let listed = livora(data.path(), &["clients", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("shop"), "{}", text(&listed).1);
}
