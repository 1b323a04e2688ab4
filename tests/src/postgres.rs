//! A PostgreSQL database of a test's own, on the local server.
//!
//! The server is `postgres://postgres@127.0.0.1:5432/test` (`LIVORA_TEST_POSTGRES_URL` overrides).
//! Each test gets a fresh database (`livora_test_<uuid>`), created through the `test` database and
//! dropped at the end, so tests in parallel do not collide. A test fails, not skips, when
//! PostgreSQL is absent.

use std::future::Future;

use sqlx::{Connection, Executor, PgConnection};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The admin URL of the test server.
pub fn admin_url() -> String {
    std::env::var("LIVORA_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// `url` with its database replaced by `database` (the query string is kept).
fn with_database(url: &str, database: &str) -> String {
    let (base, rest) = url.rsplit_once('/').expect("a postgres:// URL with a database");
    match rest.split_once('?') {
        Some((_, query)) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// Runs `sql` on the admin database.
async fn admin(sql: &str) -> Result<(), sqlx::Error> {
    let url = admin_url();
    let mut conn = PgConnection::connect(&url).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL must run at {url} with a `test` database (trust auth), or point \
             LIVORA_TEST_POSTGRES_URL at one: {e}"
        )
    });
    conn.execute(sql).await?;
    conn.close().await
}

/// Runs `body` with the URL of a fresh database, then drops it, whether `body` passed or panicked.
pub async fn with_database_of_its_own<F, Fut>(body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let name = format!("livora_test_{}", uuid::Uuid::new_v4().simple());
    admin(&format!("CREATE DATABASE {name}")).await.expect("PostgreSQL lets the test create a database");
    let result = tokio::spawn(body(with_database(&admin_url(), &name))).await;
    // FORCE: the store's pool may still hold connections as it shuts down.
    if let Err(e) = admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await {
        eprintln!("cannot drop test database {name}: {e}");
    }
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn a_database_name_replaces_the_one_in_the_url() {
        assert_eq!(with_database("postgres://u@h:5432/test", "x"), "postgres://u@h:5432/x");
        assert_eq!(with_database("postgres://u@h/test?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
    }
}
