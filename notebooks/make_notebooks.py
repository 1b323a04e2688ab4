"""Writes the notebooks of this folder from the cells below (`python3 notebooks/make_notebooks.py`).

The notebooks are the source users open; this script keeps them reviewable as plain Python in
diffs. `cli/tests/notebooks.rs` executes both against a running `livora serve`.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CONNECT = '''import json, os
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.flight as flight

# Where Livora serves Flight (the gRPC port of `livora serve`) and who you are.
TARGET = os.environ.get("LIVORA_FLIGHT", "127.0.0.1:50051")
CLIENT = os.environ.get("LIVORA_CLIENT", "demo")
API_KEY = os.environ["LIVORA_API_KEY"]  # printed once by `livora clients create`'''

ANALYST = [
    new_markdown_cell(
        "# The analyst's journey: events and a funnel over Flight SQL\n\n"
        "Livora serves the shop's raw events, feature history and prediction logs over Arrow Flight "
        "SQL, so pandas (here through the ADBC driver, `pip install adbc-driver-flightsql`) or a JDBC "
        "tool such as DBeaver queries them directly, without exports. Every table is your client's "
        "only: `events`, each feature view by name, `<model>_predictions`."
    ),
    new_code_cell(CONNECT + '''

import adbc_driver_flightsql.dbapi as flightsql

conn = flightsql.connect(f"grpc://{TARGET}", db_kwargs={"username": CLIENT, "password": API_KEY})
cursor = conn.cursor()'''),
    new_markdown_cell("## What arrived\n\nEvents by type, straight into pandas."),
    new_code_cell('''cursor.execute("SELECT event_type, COUNT(*) AS events FROM events GROUP BY event_type ORDER BY events DESC")
by_type = cursor.fetch_df()
by_type'''),
    new_markdown_cell(
        "## The funnel\n\nHow many users reached each step: viewed a product, added to cart, started "
        "a checkout, bought. Each step can only lose users."
    ),
    new_code_cell('''steps = ["product_view", "add_to_cart", "checkout_start", "purchase"]
cursor.execute(
    "SELECT event_type, COUNT(DISTINCT user_id) AS users FROM events "
    "WHERE user_id IS NOT NULL GROUP BY event_type"
)
users = dict(cursor.fetchall())
funnel = [(step, int(users.get(step, 0))) for step in steps]
assert 0 < funnel[-1][1] <= funnel[0][1], f"buyers should be some of the viewers: {funnel}"
funnel'''),
    new_code_cell('''import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(6, 3))
ax.barh([s for s, _ in funnel][::-1], [n for _, n in funnel][::-1])
for i, (step, n) in enumerate(funnel[::-1]):
    ax.text(n, i, f" {n} ({n / funnel[0][1]:.0%})", va="center")
ax.set_xlabel("users")
ax.set_title("Shop funnel")
fig.tight_layout()
fig.savefig(os.environ.get("LIVORA_FUNNEL_PNG", "funnel.png"))'''),
    new_markdown_cell("## Purchases per day"),
    new_code_cell('''cursor.execute(
    "SELECT CAST(timestamp AS DATE) AS day, COUNT(*) AS purchases FROM events "
    "WHERE event_type = 'purchase' GROUP BY day ORDER BY day"
)
daily = cursor.fetch_df()
purchases_total = int(by_type.set_index("event_type").loc["purchase", "events"])
assert daily["purchases"].sum() == purchases_total, "every purchase falls on one day"
daily.tail()'''),
    new_code_cell('''cursor.close()
conn.close()'''),
]

SCIENTIST = [
    new_markdown_cell(
        "# The data scientist's journey: define, apply, build a training set over Flight, train\n\n"
        "Features are defined as code in the feature repository and registered with `livora apply`; "
        "their history is served over Arrow Flight, and a point-in-time correct training set is one "
        "`DoGet` away: no export, no leakage."
    ),
    new_code_cell(CONNECT + '''

client = flight.connect(f"grpc://{TARGET}")
options = flight.FlightCallOptions(headers=[client.authenticate_basic_token(CLIENT, API_KEY)])

def pull(command):
    """A dataset, by its JSON command, as an Arrow table."""
    info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(command)), options)
    return client.do_get(info.endpoints[0].ticket, options).read_all()'''),
    new_markdown_cell(
        "## Define a feature and apply it\n\n"
        "A new streaming view in the example repository, validated and planned by `livora apply` "
        "(`--dry-run` here: drop it to record a new registry version)."
    ),
    new_code_cell('''import shutil, subprocess, tempfile

LIVORA = os.environ.get("LIVORA_BIN", "livora")
DATA_DIR = os.environ.get("LIVORA_DATA_DIR", "./livora-data")
REPO = os.environ.get("LIVORA_REPO", "feature-store/example-repo")

repo = tempfile.mkdtemp()
shutil.copytree(REPO, repo, dirs_exist_ok=True)
with open(os.path.join(repo, "user_recency.toml"), "w") as f:
    f.write(\'\'\'[[feature_view]]
name = "user_recency"
entity = "user"
source = "shop_events"
ttl = "30d"
description = "How recently a user searched."

[[feature_view.feature]]
name = "searches_24h"
aggregate = "count"
event_types = ["search"]
window = "24h"
\'\'\')
plan = subprocess.run(
    [LIVORA, "--data-dir", DATA_DIR, "apply", repo, "--client", CLIENT, "--dry-run"],
    capture_output=True, text=True, check=True,
).stdout
print(plan)
assert "+ view user_recency" in plan'''),
    new_markdown_cell("## What you can read\n\n`ListFlights` lists your datasets and their schemas."),
    new_code_cell('''for info in client.list_flights(options=options):
    print("/".join(p.decode() for p in info.descriptor.path), info.schema.names[:6], "...")'''),
    new_markdown_cell(
        "## A point-in-time training set\n\n"
        "Every user of `user_activity`, sampled daily; each row gets the feature values as they "
        "were at that moment (the latest row at or before it, within the view's ttl)."
    ),
    new_code_cell('''history = pull({"dataset": "feature_view", "view": "user_activity"}).to_pandas()
first, last = history["event_timestamp"].min(), history["event_timestamp"].max()
start = (first + timedelta(days=7)).floor("D")
end = (last - timedelta(days=14)).floor("D")
features = ["orders_30d", "revenue_30d", "product_views_7d", "add_to_carts_7d", "sessions_7d", "days_since_last_seen"]
training = pull({
    "dataset": "training",
    "features": [f"user_activity:{f}" for f in features],
    "spine": {"view": "user_activity", "start": start.isoformat(), "end": end.isoformat(), "cadence": "1d"},
}).to_pandas()
print(len(training), "rows from", start, "to", end)
training.head()'''),
    new_markdown_cell(
        "## Labels from the events, after each row's time\n\n"
        "Did the user buy in the 14 days after the row's time? Labels come from the raw events, "
        "never from features."
    ),
    new_code_cell('''purchases = pull({"dataset": "events", "event_types": ["purchase"]}).to_pandas()[["user_id", "timestamp"]]
by_user = purchases.groupby("user_id")["timestamp"].apply(sorted).to_dict()

def bought_within(row, days=14):
    t = row["event_timestamp"]
    return any(t < p <= t + timedelta(days=days) for p in by_user.get(row["user_id"], []))

training["label"] = training.apply(bought_within, axis=1)
training["label"].mean()'''),
    new_markdown_cell("## Train in Python, split by time"),
    new_code_cell('''from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

data = training.dropna(subset=["orders_30d"]).fillna(0)
split = data["event_timestamp"].quantile(0.75)
train, test = data[data["event_timestamp"] < split], data[data["event_timestamp"] >= split]
model = LogisticRegression(max_iter=1000).fit(train[features], train["label"])
auc = roc_auc_score(test["label"], model.predict_proba(test[features])[:, 1])
print(f"{len(train)} training rows, {len(test)} evaluation rows, ROC AUC {auc:.3f}")
assert 0.5 < auc <= 1.0, auc'''),
    new_markdown_cell(
        "## Or train in Livora\n\n"
        "`livora train churn --client <you> --start … --end … --promote production` trains the zoo's "
        "churn model on the same features and registers it; `livora models show churn` prints its "
        "metrics beside the baseline's, and every score it serves lands in the "
        "`churn_predictions` table (`SELECT * FROM churn_predictions` over Flight SQL)."
    ),
]


def write(name, cells):
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, Path(__file__).with_name(name))


write("analyst.ipynb", ANALYST)
write("data_scientist.ipynb", SCIENTIST)
