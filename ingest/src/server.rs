//! The HTTP collector: `POST /v1/events`, `/healthz`, `/readyz`, `/metrics`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use livora_common::{ClientId, Event, Problem};
use serde::Serialize;

use crate::auth::ClientStore;
use crate::config::IngestConfig;
use crate::enrich::{Enricher, RequestMeta};
use crate::error::{IngestError, Result};
use crate::log::{EventLog, LogRecord, Rejection};
use crate::metrics::{Metrics, StatusLabel};
use crate::rate_limit::RateLimiter;
use crate::validate::{Limits, parse_batch};

/// Everything a request handler needs.
pub struct Collector {
    config: IngestConfig,
    limits: Limits,
    clients: Arc<ClientStore>,
    limiter: RateLimiter,
    log: Arc<dyn EventLog>,
    enricher: Enricher,
    metrics: Arc<Metrics>,
    ready: AtomicBool,
}

/// The body of a 200 answer.
#[derive(Debug, Serialize)]
pub struct Accepted {
    /// How many events were accepted (all of the batch).
    pub accepted: usize,
}

impl Collector {
    /// A collector appending to `log`.
    pub fn new(
        config: IngestConfig,
        clients: Arc<ClientStore>,
        log: Arc<dyn EventLog>,
        enricher: Enricher,
        metrics: Arc<Metrics>,
    ) -> Self {
        let limits = Limits {
            max_batch_events: config.max_batch_events,
            max_event_bytes: config.max_event_bytes.as_usize(),
            max_future: chrono::Duration::from_std(config.max_future).unwrap_or(chrono::Duration::MAX),
        };
        Self {
            limiter: RateLimiter::new(&config.rate_limit),
            config,
            limits,
            clients,
            log,
            enricher,
            metrics,
            ready: AtomicBool::new(true),
        }
    }

    /// Marks the collector not ready (`/readyz` answers 503), e.g. while shutting down.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// The routes of the collector.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/v1/events", post(post_events))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(self)
    }

    async fn ingest(&self, peer: SocketAddr, headers: &HeaderMap, body: Body) -> Result<Accepted> {
        let started = Instant::now();
        let received_at = Utc::now();
        check_content_type(headers)?;
        let client = self.authenticate(headers).await?;
        let body = read_body(body, self.config.max_request_bytes).await?;
        let valid = match parse_batch(&body, &client, &self.limits, received_at) {
            Ok(events) => events,
            Err(problems) => {
                // Refused requests are kept in the log too, so they count against the rate limit
                // (as one event): a broken sender cannot fill the log faster than a working one.
                if let Err(retry_after_secs) = self.limiter.acquire(&client, 1, Instant::now()) {
                    return Err(IngestError::RateLimited { client: client.to_string(), retry_after_secs });
                }
                return Err(self.reject(client, received_at, problems, &body).await);
            }
        };
        if let Err(retry_after_secs) = self.limiter.acquire(&client, valid.len(), Instant::now()) {
            return Err(IngestError::RateLimited { client: client.to_string(), retry_after_secs });
        }
        let meta = RequestMeta {
            ip: client_ip(peer, headers, self.config.trust_forwarded_for),
            user_agent: headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
        };
        let events: Vec<Event> = valid
            .into_iter()
            .map(|v| Event {
                enrichment: self.enricher.enrich(v.context_ip.as_deref(), v.context_ua.as_deref(), &meta),
                event_id: v.event_id,
                timestamp: v.timestamp,
                client_id: client.clone(),
                user_id: v.user_id,
                anon_id: v.anon_id,
                session_id: v.session_id,
                event_type: v.event_type,
                props: v.props,
                context: v.context,
                received_at,
            })
            .collect();
        let accepted = events.len();
        let appending = Instant::now();
        self.log.append(&client, LogRecord::Events(events).encode()).await?;
        self.metrics.append_seconds.observe(appending.elapsed().as_secs_f64());
        self.metrics.events_accepted.inc_by(accepted as u64);
        self.metrics.request_seconds.observe(started.elapsed().as_secs_f64());
        Ok(Accepted { accepted })
    }

    async fn authenticate(&self, headers: &HeaderMap) -> Result<ClientId> {
        let key = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or(IngestError::Unauthenticated("missing `Authorization: Bearer <api key>` header"))?;
        let owner = self
            .clients
            .verify(key)
            .await
            .map_err(|e| match e {
                crate::auth::ClientsError::Db(db) => IngestError::Registry(db),
                other => IngestError::Registry(sqlx::Error::Protocol(other.to_string())),
            })?
            .ok_or(IngestError::Unauthenticated("unknown or revoked api key"))?;
        let claimed = headers
            .get("x-client-id")
            .ok_or_else(|| IngestError::Invalid(vec![Problem::request("X-Client-Id", "header is required")]))?;
        if claimed.as_bytes() != owner.as_str().as_bytes() {
            return Err(IngestError::WrongClient(String::from_utf8_lossy(claimed.as_bytes()).into_owned()));
        }
        Ok(owner)
    }

    /// Keeps a refused request for the quarantine table, then returns the 400 to answer.
    async fn reject(
        &self,
        client: ClientId,
        received_at: chrono::DateTime<Utc>,
        problems: Vec<Problem>,
        body: &[u8],
    ) -> IngestError {
        let keep = body.len().min(self.config.keep_rejected_bytes.as_usize());
        let rejection = Rejection {
            client_id: client.clone(),
            received_at,
            problems: problems.clone(),
            payload: String::from_utf8_lossy(&body[..keep]).into_owned(),
        };
        // The sender gets its 400 whether or not the copy could be kept.
        if let Err(e) = self.log.append(&client, LogRecord::Rejected(rejection).encode()).await {
            tracing::warn!(error = %e, "could not keep a refused request for the quarantine table");
        }
        IngestError::Invalid(problems)
    }
}

async fn post_events(
    State(collector): State<Arc<Collector>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let response = match collector.ingest(peer, &headers, body).await {
        Ok(accepted) => (StatusCode::OK, Json(accepted)).into_response(),
        Err(e) => e.into_response(),
    };
    collector.metrics.requests.get_or_create(&StatusLabel { status: response.status().as_u16() }).inc();
    response
}

async fn readyz(State(collector): State<Arc<Collector>>) -> Response {
    if !collector.ready.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    if !collector.log.is_available() {
        let why = format!("the {} event log is unavailable\n", collector.log.backend());
        return (StatusCode::SERVICE_UNAVAILABLE, why).into_response();
    }
    match collector.clients.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("client registry: {e}\n")).into_response(),
    }
}

async fn metrics(State(collector): State<Arc<Collector>>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], collector.metrics.encode())
        .into_response()
}

fn check_content_type(headers: &HeaderMap) -> Result<()> {
    let value = headers.get(header::CONTENT_TYPE).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let Some(value) = value else {
        return Err(IngestError::UnsupportedMediaType("(none)".into()));
    };
    let mime = value.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/json") { Ok(()) } else { Err(IngestError::UnsupportedMediaType(value)) }
}

async fn read_body(body: Body, limit: livora_common::ByteSize) -> Result<bytes::Bytes> {
    axum::body::to_bytes(body, limit.as_usize()).await.map_err(|e| {
        let too_large = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
            .any(|e| e.is::<http_body_util::LengthLimitError>());
        if too_large {
            IngestError::TooLarge(limit)
        } else {
            IngestError::Invalid(vec![Problem::request("body", format!("could not be read: {e}"))])
        }
    })
}

fn client_ip(peer: SocketAddr, headers: &HeaderMap, trust_forwarded_for: bool) -> Option<IpAddr> {
    if trust_forwarded_for {
        let forwarded = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|ip| ip.trim().parse().ok());
        if forwarded.is_some() {
            return forwarded;
        }
    }
    Some(peer.ip())
}
