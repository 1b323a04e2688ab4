//! The NATS JetStream backend of the event log: one stream, one subject per client.
//!
//! Records of client `c` are published to `<subject_prefix>.<c>` and captured by a single
//! file-backed stream whose subjects are `<subject_prefix>.>`; a [`Position`] is the JetStream
//! stream sequence. [`EventLog::append`] returns once JetStream acknowledged the record (so it
//! is stored, and replicated when `replicas > 1`). A publish whose ack is lost (timeout,
//! reconnect) is reported as an error although the record may be stored: the caller retries
//! and downstream dedupes on `event_id`.
//!
//! Consumers are durable pull consumers with `AckPolicy::All`: committing position `N` acks the
//! message at `N` and, with it, everything before. Messages delivered but not committed when a
//! consumer goes away are delivered again once `ack_wait` expired.
//!
//! The client reconnects by itself; while the server is unreachable appends and commits fail
//! after the JetStream timeout and polls come back empty, and both recover with the connection.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, stream};
use async_nats::{Client, Event, ServerAddr, Subject};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use livora_common::{ClientId, ConfigError};
use serde::{Deserialize, Serialize};

use super::{Delivery, EventLog, LogConsumer, LogError, Position, check_consumer_name};

/// Upper bound of records delivered to one consumer and not yet committed.
const MAX_ACK_PENDING: i64 = 100_000;

/// Below this, a poll does not wait on the server at all (a pull request with a zero expiry
/// would never expire).
const MIN_POLL_WAIT: Duration = Duration::from_millis(1);

/// The payload of a JetStream acknowledgement.
const ACK: &[u8] = b"+ACK";

/// Configuration of the NATS JetStream event log (`[event_log.nats]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NatsLogConfig {
    /// The NATS server to connect to (`nats://host:4222`, `tls://host:4222`); several servers of
    /// one cluster may be given separated by commas. Credentials may be embedded in the URL
    /// (`nats://user:password@host:4222`); they are never logged.
    pub url: String,
    /// The name of the JetStream stream holding the records. It is created when missing, and
    /// its subjects, retention and replicas are updated to this configuration when it exists.
    pub stream: String,
    /// The subject prefix: the records of client `c` are published to `<subject_prefix>.<c>`
    /// and the stream captures `<subject_prefix>.>`. Dot-separated tokens without spaces, `*`
    /// or `>`.
    pub subject_prefix: String,
    /// How many servers of the cluster hold a copy of the stream (1 to 5).
    pub replicas: usize,
    /// How long records are retained in the stream (`7d`, `36h`). Consumers must read records
    /// before they expire.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// How long a consumer may hold a record without committing it before JetStream delivers it
    /// again (`10m`). Must exceed the time the lake writer buffers records before committing.
    #[serde(with = "humantime_serde")]
    pub ack_wait: Duration,
    /// The largest record accepted, in bytes; larger records are refused without being
    /// published. The server's `max_payload` (1 MiB by default) caps it as well.
    pub max_record_bytes: usize,
}

impl Default for NatsLogConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".to_owned(),
            stream: "LIVORA_EVENTS".to_owned(),
            subject_prefix: "livora.events".to_owned(),
            replicas: 1,
            max_age: Duration::from_secs(7 * 24 * 3600),
            ack_wait: Duration::from_secs(10 * 60),
            max_record_bytes: 1024 * 1024,
        }
    }
}

impl NatsLogConfig {
    /// Checks the values beyond their types, naming the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let key = |name: &str| format!("event_log.nats.{name}");
        let bad_char = |c: char| c.is_whitespace() || c.is_control() || c == '*' || c == '>';
        if self.url.trim().is_empty() {
            return Err(ConfigError::invalid(key("url"), "must not be empty"));
        }
        for server in self.url.split(',').map(str::trim) {
            server
                .parse::<ServerAddr>()
                .map_err(|e| ConfigError::invalid(key("url"), format!("`{}`: {e}", redact(server))))?;
        }
        if self.stream.is_empty()
            || self.stream.len() > 255
            || self.stream.chars().any(|c| bad_char(c) || matches!(c, '.' | '/' | '\\'))
        {
            return Err(ConfigError::invalid(
                key("stream"),
                "must be 1 to 255 characters without spaces, '.', '*', '>', '/' or '\\'",
            ));
        }
        if self.subject_prefix.split('.').any(|t| t.is_empty() || t.chars().any(bad_char)) {
            return Err(ConfigError::invalid(
                key("subject_prefix"),
                "must be non-empty dot-separated tokens without spaces, '*' or '>'",
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(ConfigError::invalid(key("replicas"), "must be between 1 and 5"));
        }
        if self.max_age.is_zero() {
            return Err(ConfigError::invalid(key("max_age"), "must not be zero"));
        }
        if self.ack_wait.is_zero() {
            return Err(ConfigError::invalid(key("ack_wait"), "must not be zero"));
        }
        if self.max_record_bytes == 0 {
            return Err(ConfigError::invalid(key("max_record_bytes"), "must not be zero"));
        }
        Ok(())
    }

    /// The stream configuration this log needs.
    fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream.clone(),
            description: Some("livora event log".to_owned()),
            subjects: vec![format!("{}.>", self.subject_prefix)],
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            storage: stream::StorageType::File,
            num_replicas: self.replicas,
            max_age: self.max_age,
            ..Default::default()
        }
    }
}

/// The event log on a NATS JetStream stream.
#[derive(Debug, Clone)]
pub struct NatsLog {
    client: Client,
    js: jetstream::Context,
    stream: String,
    subject_prefix: String,
    ack_wait: Duration,
    /// The effective record limit: the configured one, capped by the server's `max_payload`.
    max_record_bytes: usize,
}

impl NatsLog {
    /// Connects to NATS and creates the stream, or updates its subjects, retention and replicas
    /// to `config`.
    pub async fn connect(config: &NatsLogConfig) -> Result<Self, LogError> {
        config.validate().map_err(|e| LogError::Nats(format!("invalid configuration: {e}")))?;
        let url = redact(&config.url);
        let servers: Vec<&str> = config.url.split(',').map(str::trim).collect();
        let client = async_nats::ConnectOptions::new()
            .name("livora-event-log")
            .event_callback(|event| async move { log_event(event) })
            .connect(servers)
            .await
            .map_err(|e| LogError::Nats(format!("cannot connect to {url}: {e}")))?;
        let js = jetstream::new(client.clone());

        let wanted = config.stream_config();
        let stream = js
            .get_or_create_stream(wanted.clone())
            .await
            .map_err(|e| LogError::Nats(format!("cannot create or open stream {}: {e}", config.stream)))?;
        let current = &stream.cached_info().config;
        if current.subjects != wanted.subjects
            || current.max_age != wanted.max_age
            || current.num_replicas != wanted.num_replicas
        {
            let updated = stream::Config {
                subjects: wanted.subjects.clone(),
                max_age: wanted.max_age,
                num_replicas: wanted.num_replicas,
                ..current.clone()
            };
            js.update_stream(&updated)
                .await
                .map_err(|e| LogError::Nats(format!("cannot update stream {}: {e}", config.stream)))?;
            tracing::info!(stream = %config.stream, "updated the event log stream configuration");
        }
        if current.storage != stream::StorageType::File {
            tracing::warn!(
                stream = %config.stream,
                "the event log stream is not file-backed: records do not survive a server restart"
            );
        }

        let max_payload = client.server_info().max_payload;
        let mut max_record_bytes = config.max_record_bytes;
        if max_payload > 0 && max_payload < max_record_bytes {
            tracing::warn!(
                max_payload,
                max_record_bytes,
                "the nats server's max_payload is below event_log.nats.max_record_bytes; using it"
            );
            max_record_bytes = max_payload;
        }
        tracing::info!(%url, stream = %config.stream, "nats event log ready");
        Ok(Self {
            client,
            js,
            stream: config.stream.clone(),
            subject_prefix: config.subject_prefix.clone(),
            ack_wait: config.ack_wait,
            max_record_bytes,
        })
    }
}

#[async_trait]
impl EventLog for NatsLog {
    async fn append(&self, client: &ClientId, record: Bytes) -> Result<Position, LogError> {
        if record.len() > self.max_record_bytes {
            return Err(LogError::TooLarge { size: record.len(), limit: self.max_record_bytes });
        }
        let subject = format!("{}.{}", self.subject_prefix, client.as_str());
        let ack = self
            .js
            .publish(subject.clone(), record)
            .await
            .map_err(|e| LogError::Nats(format!("cannot publish to {subject}: {e}")))?
            .await
            .map_err(|e| LogError::Nats(format!("no publish ack for {subject}: {e}")))?;
        Ok(ack.sequence)
    }

    async fn consumer(&self, name: &str) -> Result<Box<dyn LogConsumer>, LogError> {
        check_consumer_name(name)?;
        let deliver_policy = self.resume_policy(name).await?;
        let config = pull::Config {
            durable_name: Some(name.to_owned()),
            description: Some("livora event log consumer".to_owned()),
            deliver_policy,
            ack_policy: AckPolicy::All,
            ack_wait: self.ack_wait,
            max_ack_pending: MAX_ACK_PENDING,
            ..Default::default()
        };
        // Creates the durable consumer, or updates it (e.g. a new ack_wait) when it exists.
        let consumer: PullConsumer = self
            .js
            .create_consumer_on_stream(config, &self.stream)
            .await
            .map_err(|e| LogError::Nats(format!("cannot create consumer {name} on stream {}: {e}", self.stream)))?;
        let committed = consumer.cached_info().ack_floor.stream_sequence;
        Ok(Box::new(NatsConsumer {
            name: name.to_owned(),
            client: self.client.clone(),
            consumer,
            committed,
            pending: BTreeMap::new(),
        }))
    }

    fn backend(&self) -> &'static str {
        "nats"
    }

    fn is_available(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}

impl NatsLog {
    /// Where a (re)opened durable consumer starts.
    ///
    /// JetStream redelivers records that a consumer received but never acknowledged only once
    /// `ack_wait` has passed — minutes, by design, since the lake writer holds records that long.
    /// After a crash that would stall the consumer for up to `ack_wait`. A livora consumer has one
    /// reader, so on open it resets such a consumer to start right after its acknowledged floor:
    /// the unacknowledged records come again at once, and consumers dedupe them.
    async fn resume_policy(&self, name: &str) -> Result<DeliverPolicy, LogError> {
        let nats = |what: &str, e: &dyn std::fmt::Display| {
            LogError::Nats(format!("{what} consumer {name} on stream {}: {e}", self.stream))
        };
        let stream = self.js.get_stream(&self.stream).await.map_err(|e| nats("cannot look up", &e))?;
        let Ok(info) = stream.consumer_info(name).await else {
            return Ok(DeliverPolicy::All); // a new consumer
        };
        if info.num_ack_pending == 0 {
            return Ok(DeliverPolicy::All); // nothing in flight: the consumer resumes by itself
        }
        let start_sequence = info.ack_floor.stream_sequence + 1;
        tracing::info!(
            consumer = name,
            start_sequence,
            in_flight = info.num_ack_pending,
            "resetting a consumer left with unacknowledged records so they are delivered again now"
        );
        stream.delete_consumer(name).await.map_err(|e| nats("cannot reset", &e))?;
        Ok(DeliverPolicy::ByStartSequence { start_sequence })
    }
}

/// A durable pull consumer of the stream.
struct NatsConsumer {
    name: String,
    client: Client,
    consumer: PullConsumer,
    /// The highest position known to be acknowledged.
    committed: Position,
    /// The ack subject of every delivered, uncommitted record (the latest delivery of each).
    /// Only the reply subject is kept, not the payload.
    pending: BTreeMap<Position, Subject>,
}

#[async_trait]
impl LogConsumer for NatsConsumer {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, LogError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let batch = if wait < MIN_POLL_WAIT {
            self.consumer.fetch().max_messages(max).messages().await
        } else {
            self.consumer.batch().max_messages(max).expires(wait).messages().await
        };
        let mut batch =
            batch.map_err(|e| LogError::Nats(format!("cannot request records for consumer {}: {e}", self.name)))?;
        let mut out = Vec::new();
        // The batch ends when `max` records arrived or the server expired the request (or, if
        // the server's expiry got lost in a reconnect, a few seconds later on the client).
        while let Some(item) = batch.next().await {
            let message = match item {
                Ok(message) => message,
                // Records already received are handed out; the error will recur on the next poll.
                Err(e) if !out.is_empty() => {
                    tracing::warn!(consumer = %self.name, error = %e, "fetching records stopped");
                    break;
                }
                Err(e) => {
                    return Err(LogError::Nats(format!("cannot fetch records for consumer {}: {e}", self.name)));
                }
            };
            let position = match message.info() {
                Ok(info) => info.stream_sequence,
                Err(e) => {
                    tracing::warn!(consumer = %self.name, error = %e, "skipping a non-jetstream message");
                    continue;
                }
            };
            let Some(reply) = message.message.reply.clone() else { continue };
            if position <= self.committed {
                continue;
            }
            // A redelivery replaces the earlier ack subject: the server expects the latest.
            self.pending.insert(position, reply);
            out.push(Delivery { position, payload: message.message.payload.clone() });
        }
        // Redeliveries (after ack_wait) come ahead of new records; keep log order in a batch.
        out.sort_by_key(|d| d.position);
        out.dedup_by_key(|d| d.position);
        Ok(out)
    }

    async fn commit(&mut self, position: Position) -> Result<(), LogError> {
        // Acking the highest delivered record at or below `position` acks everything before it.
        let Some((&acked, reply)) = self.pending.range(..=position).next_back() else {
            return Ok(());
        };
        // A request, not a plain publish: the server answers once it processed the ack.
        self.client
            .request(reply.clone(), Bytes::from_static(ACK))
            .await
            .map_err(|e| LogError::Nats(format!("cannot commit position {acked} of consumer {}: {e}", self.name)))?;
        self.pending = self.pending.split_off(&acked);
        self.pending.remove(&acked);
        self.committed = self.committed.max(acked);
        Ok(())
    }
}

/// Logs connection events of the client (it reconnects by itself).
fn log_event(event: Event) {
    match event {
        Event::Connected => tracing::info!("nats event log connected"),
        Event::Disconnected => tracing::warn!("nats event log disconnected, reconnecting"),
        other => tracing::warn!(event = %other, "nats event log connection event"),
    }
}

/// The URL(s) without credentials, for messages and logs.
fn redact(url: &str) -> String {
    url.split(',')
        .map(|server| {
            let server = server.trim();
            let (scheme, rest) = server.split_once("://").unwrap_or(("", server));
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let rest = match rest[..authority_end].rfind('@') {
                Some(at) => format!("***@{}", &rest[at + 1..]),
                None => rest.to_owned(),
            };
            if scheme.is_empty() { rest } else { format!("{scheme}://{rest}") }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_hides_credentials_only() {
        assert_eq!(redact("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(redact("nats://user:secret@host:4222"), "nats://***@host:4222");
        assert_eq!(redact("tok@host, tls://a:b@h2/x@y"), "***@host,tls://***@h2/x@y");
    }
}
