//! Integration tests of the online store: one conformance suite ([`conformance`]) run against
//! every backend, plus the tests particular to each.
//!
//! - [`redb`] runs on a temporary directory.
//! - [`redis`] needs Redis at `redis://127.0.0.1:6379` (`LIVORA_TEST_REDIS_URL` overrides); each
//!   test writes under a key prefix of its own and deletes its keys at the end.
//! - [`dynamodb`] needs moto at `http://127.0.0.1:5000` (`LIVORA_TEST_DYNAMODB_ENDPOINT`
//!   overrides; start it with `moto_server -p 5000 &` after `pip install 'moto[server]'`); each
//!   test works in a table of its own and deletes it at the end.
//!
//! The service tests fail, not skip, when their service is absent.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[macro_use]
#[path = "online/conformance.rs"]
mod conformance;
#[path = "online/dynamodb.rs"]
mod dynamodb;
#[path = "online/redb.rs"]
mod redb;
#[path = "online/redis.rs"]
mod redis;

use std::future::Future;

/// Runs `body` on its own task, then `cleanup`, then re-raises `body`'s panic if it had one.
async fn with_cleanup<Body, Clean>(body: Body, cleanup: Clean)
where
    Body: Future<Output = ()> + Send + 'static,
    Clean: Future<Output = ()>,
{
    let outcome = tokio::spawn(body).await;
    cleanup.await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
