//! Per-client token buckets, counted in events.
//!
//! A request is let in when the client's bucket holds at least one token; its events are then
//! taken from the bucket, which may go into debt for a large batch. A client in debt is refused
//! with 429 and a `Retry-After` that says when the bucket is positive again, so a sender that
//! honours it is never refused twice for the same batch.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use livora_common::ClientId;

use crate::config::RateLimitConfig;

/// The rate limiter of the collector.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<ClientId, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// A limiter with the configured rate; a rate of 0 lets everything through.
    pub fn new(config: &RateLimitConfig) -> Self {
        Self {
            rate: f64::from(config.events_per_second),
            burst: f64::from(config.burst),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `events` tokens from `client`'s bucket at time `now`. `Err(seconds)` says how long
    /// to wait before retrying when the bucket is empty.
    pub fn acquire(&self, client: &ClientId, events: usize, now: Instant) -> Result<(), u64> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(client.clone()).or_insert(Bucket { tokens: self.burst, at: now });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            let wait = (1.0 - bucket.tokens) / self.rate;
            return Err(wait.ceil().max(1.0) as u64);
        }
        bucket.tokens -= events as f64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limiter(rate: u32, burst: u32) -> RateLimiter {
        RateLimiter::new(&RateLimitConfig { events_per_second: rate, burst })
    }

    #[test]
    fn a_burst_passes_then_the_client_waits_for_refill() {
        let l = limiter(100, 200);
        let c = ClientId::new("a").expect("valid");
        let t0 = Instant::now();
        assert_eq!(l.acquire(&c, 100, t0), Ok(()));
        assert_eq!(l.acquire(&c, 100, t0), Ok(()));
        // Bucket empty: 1 token needs 0.01 s at 100/s, rounded up to the 1 s of Retry-After.
        assert_eq!(l.acquire(&c, 100, t0), Err(1));
        assert_eq!(l.acquire(&c, 100, t0 + Duration::from_millis(1500)), Ok(()));
    }

    #[test]
    fn debt_from_a_large_batch_is_reflected_in_retry_after() {
        let l = limiter(10, 100);
        let c = ClientId::new("a").expect("valid");
        let t0 = Instant::now();
        assert_eq!(l.acquire(&c, 150, t0), Ok(()), "a positive bucket admits a batch");
        // 50 tokens of debt + 1 at 10/s: 5.1 s.
        assert_eq!(l.acquire(&c, 1, t0), Err(6));
    }

    #[test]
    fn clients_have_separate_buckets_and_zero_rate_disables() {
        let l = limiter(1, 100);
        let (a, b) = (ClientId::new("a").expect("valid"), ClientId::new("b").expect("valid"));
        let t0 = Instant::now();
        assert_eq!(l.acquire(&a, 100, t0), Ok(()));
        assert!(l.acquire(&a, 1, t0).is_err());
        assert_eq!(l.acquire(&b, 100, t0), Ok(()));
        let off = limiter(0, 0);
        for _ in 0..1000 {
            assert_eq!(off.acquire(&a, 100, t0), Ok(()));
        }
    }
}
