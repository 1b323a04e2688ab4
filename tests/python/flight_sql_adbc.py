"""Interop: the ADBC Flight SQL driver queries a running `livora serve`, as an analyst's tool would.

Usage: flight_sql_adbc.py HOST:PORT CLIENT_ID API_KEY

Connects with basic credentials (user = client id, password = api key: the driver runs the Flight
handshake and keeps the bearer token), runs SQL through DB-API (plainly, prepared, and with bound parameters), reads the metadata (catalogs,
schemas, tables with their columns) and records what a syntax error answers. Prints a JSON summary
on stdout; the Rust test (`cli/tests/flight_e2e.rs`) checks it. Exits non-zero on any unexpected
failure.
"""

import datetime
import json
import sys

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager


def main() -> None:
    target, client_id, key = sys.argv[1:4]
    out = {}
    with flightsql.connect(f"grpc://{target}", db_kwargs={"username": client_id, "password": key}) as conn:
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT event_type, COUNT(*) AS n FROM events GROUP BY event_type ORDER BY event_type"
            )
            out["counts"] = [[t, int(n)] for t, n in cursor.fetchall()]

            cursor.execute("SELECT user_id, orders_30d FROM user_activity ORDER BY event_timestamp")
            table = cursor.fetch_arrow_table()
            out["history"] = table.to_pylist()

            cursor.adbc_prepare("SELECT COUNT(*) AS n FROM events WHERE event_type = 'purchase'")
            cursor.execute("SELECT COUNT(*) AS n FROM events WHERE event_type = 'purchase'")
            out["prepared"] = int(cursor.fetchone()[0])

            # Parameters: the driver prepares, binds the values with DoPut and runs the handle
            # the server answered. A quote in a value stays a value.
            query = "SELECT COUNT(*) AS n FROM events WHERE event_type = ? AND event_type <> ?"
            cursor.execute(query, ("purchase", "it's"))
            out["parameters"] = int(cursor.fetchone()[0])
            cursor.execute(query, ("page_view", "purchase"))
            out["parameters_again"] = int(cursor.fetchone()[0])
            cursor.execute(
                "SELECT COUNT(*) AS n FROM events WHERE timestamp >= $1 AND event_type = $2",
                (datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc), "purchase"),
            )
            out["parameters_numbered"] = int(cursor.fetchone()[0])
            try:
                cursor.execute("SELECT ? AS a, ? AS b FROM events", (1,))
                cursor.fetchall()
                out["parameters_miscounted"] = None
            except adbc_driver_manager.Error as e:
                out["parameters_miscounted"] = {"type": type(e).__name__, "message": str(e)}

            try:
                cursor.execute("SELECT event_type FORM events")
                cursor.fetchall()
                out["syntax_error"] = None
            except adbc_driver_manager.Error as e:
                out["syntax_error"] = {"type": type(e).__name__, "message": str(e)}

        objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
        out["catalogs"] = [c["catalog_name"] for c in objects]
        out["tables"] = sorted(
            t["table_name"] for c in objects for s in c["catalog_db_schemas"] for t in s["db_schema_tables"]
        )
        events = conn.adbc_get_table_schema("events")
        out["events_columns"] = events.names[:3]
        out["table_types"] = conn.adbc_get_table_types()

    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
