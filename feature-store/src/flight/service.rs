//! `arrow.flight.protocol.FlightService` over the [`Datasets`].

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_descriptor::DescriptorType;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest,
    HandshakeResponse, PollInfo, PutResult, SchemaAsIpc, SchemaResult,
};
use arrow_ipc::writer::IpcWriteOptions;
use arrow_schema::{Schema, SchemaRef};
use futures::{Stream, StreamExt, TryStreamExt};
use livora_common::ClientId;
use livora_ingest::ClientStore;
use tonic::codegen::{Body, BoxFuture, Service, StdError, http};
use tonic::server::{NamedService, ServerStreamingService};
use tonic::{Request, Response, Status, Streaming};

use super::budget::{Held, StreamBudget};
use super::command::{Command, FlightSqlCommand, SqlCommand, Ticket};
use super::config::FlightConfig;
use super::datasets::Datasets;
use super::frames::{Frame, FrameCodec, frames};
use super::sql::{self, FlightSql};
use super::{BatchStream, auth};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::serving::grpc::status;

/// The largest message a client may send (a `DoPut` batch): pyarrow sends each record batch of
/// a table as one message, so uploads should be written in chunks (`max_chunksize`).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The most batches a parameter binding may stream (a query takes one row).
const MAX_PARAMETER_BATCHES: usize = 16;

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The Arrow Flight service: the client's datasets, authenticated by api key.
#[derive(Clone)]
pub struct FlightDatasetService {
    clients: Arc<ClientStore>,
    datasets: Arc<Datasets>,
    config: FlightConfig,
    metrics: Metrics,
}

impl FlightDatasetService {
    /// The service over `datasets`, authenticating with `clients`.
    pub fn new(clients: Arc<ClientStore>, datasets: Datasets, config: FlightConfig, metrics: Metrics) -> Self {
        Self { clients, datasets: Arc::new(datasets), config, metrics }
    }

    /// The tonic server of this service, to add to the gRPC server's routes: arrow-flight's,
    /// but for `DoGet`, which writes its batches with [`FrameCodec`].
    pub fn into_server(self) -> FlightServer {
        let service = Arc::new(self);
        let inner = FlightServiceServer::from_arc(service.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES);
        FlightServer { inner, service }
    }

    /// The dataset a `DoGet` asks for: its schema and its batches, within the stream's budget.
    async fn open_get(
        &self,
        request: Request<arrow_flight::Ticket>,
    ) -> Result<(SchemaRef, impl Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static), Status> {
        let client = self.client(&request).await?;
        let ticket = Ticket::decode(&request.get_ref().ticket).map_err(|e| status(&e))?;
        if ticket.client != client.as_str() {
            return Err(status(&Error::PermissionDenied(format!(
                "ticket: issued to another client than `{client}`; ask GetFlightInfo for a ticket of your own"
            ))));
        }
        let command = Command::from_value(ticket.command).map_err(|e| status(&e))?;
        let dataset = self.datasets.open(&client, &command).await.map_err(|e| status(&e))?;
        let schema = dataset.schema.clone();
        let limit = u32::try_from(self.config.memory_budget.0).unwrap_or(u32::MAX);
        let budget = StreamBudget::new(limit, self.metrics.clone());
        let batches = self.datasets.stream(&client, dataset, self.config.batch_rows, budget);
        Ok((schema, budgeted(batches, self.metrics.clone())))
    }

    async fn client<T>(&self, request: &Request<T>) -> Result<ClientId, Status> {
        auth::authenticate(&self.clients, request.metadata()).await.map_err(|e| status(&e))
    }

    /// DoPut on a prepared statement: binds the one row of values the stream carries to its
    /// placeholders and answers the new handle ([`sql::bind`]).
    async fn bind(
        &self,
        first: FlightData,
        rest: Streaming<FlightData>,
        handle: &[u8],
    ) -> Result<Response<<Self as FlightService>::DoPutStream>, Status> {
        let data = futures::stream::once(async move { Ok(first) }).chain(rest).map_err(FlightError::from);
        let batches: Vec<_> = FlightRecordBatchStream::new_from_flight_data(data)
            .take(MAX_PARAMETER_BATCHES + 1)
            .try_collect()
            .await
            .map_err(|e| status(&Error::InvalidArgument(format!("parameters: cannot be decoded: {e}"))))?;
        if batches.len() > MAX_PARAMETER_BATCHES {
            return Err(status(&Error::InvalidArgument(format!(
                "parameters: more than {MAX_PARAMETER_BATCHES} batches; a query takes one row of values"
            ))));
        }
        let answer = sql::bind(handle, &batches).map_err(|e| status(&e))?;
        let result = PutResult { app_metadata: answer.into() };
        Ok(Response::new(futures::stream::once(async move { Ok(result) }).boxed()))
    }

    async fn info(&self, client: &ClientId, descriptor: FlightDescriptor) -> Result<FlightInfo, Error> {
        let command = command_of(&descriptor)?;
        let dataset = self.datasets.open(client, &command).await?;
        flight_info(client, &command, descriptor, &dataset.schema)
    }
}

/// The command a descriptor carries: a Flight SQL command, or one of ours.
fn command_of(descriptor: &FlightDescriptor) -> Result<Command, Error> {
    match DescriptorType::try_from(descriptor.r#type) {
        Ok(DescriptorType::Cmd) => match FlightSql::decode(&descriptor.cmd)? {
            Some(FlightSql::Query(query)) => Ok(Command::Sql(SqlCommand { query })),
            Some(metadata) => Ok(Command::FlightSql(FlightSqlCommand::from_bytes(&metadata.encode()))),
            None => Command::from_json(&descriptor.cmd),
        },
        Ok(DescriptorType::Path) => Command::from_path(&descriptor.path),
        _ => Err(Error::InvalidArgument("descriptor: the type must be CMD (a JSON command) or PATH".into())),
    }
}

fn flight_info(
    client: &ClientId,
    command: &Command,
    descriptor: FlightDescriptor,
    schema: &Schema,
) -> Result<FlightInfo, Error> {
    let ticket = Ticket::encode(client.as_str(), command)?;
    FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Error::InvalidArgument(format!("schema: cannot be encoded: {e}")))
        .map(|info| {
            info.with_descriptor(descriptor)
                .with_endpoint(FlightEndpoint::new().with_ticket(arrow_flight::Ticket::new(ticket)))
                .with_ordered(true)
        })
}

/// `arrow.flight.protocol.FlightService` as served: arrow-flight's generated server, except
/// `DoGet`, whose answer is written by [`FrameCodec`] (see [`frames`](super::frames)).
#[derive(Clone)]
pub struct FlightServer {
    inner: FlightServiceServer<FlightDatasetService>,
    service: Arc<FlightDatasetService>,
}

impl NamedService for FlightServer {
    const NAME: &'static str = <FlightServiceServer<FlightDatasetService> as NamedService>::NAME;
}

const DO_GET: &str = "/arrow.flight.protocol.FlightService/DoGet";

impl<B> Service<http::Request<B>> for FlightServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        Service::<http::Request<B>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != DO_GET {
            return self.inner.call(request);
        }
        let method = DoGetFrames(self.service.clone());
        Box::pin(async move {
            let mut grpc =
                tonic::server::Grpc::new(FrameCodec).apply_max_message_size_config(Some(MAX_MESSAGE_BYTES), None);
            Ok(grpc.server_streaming(method, request).await)
        })
    }
}

/// `DoGet` answering [`Frame`]s.
struct DoGetFrames(Arc<FlightDatasetService>);

impl ServerStreamingService<arrow_flight::Ticket> for DoGetFrames {
    type Response = Frame;
    type ResponseStream = Boxed<Frame>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<arrow_flight::Ticket>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move {
            let (schema, batches) = service.open_get(request).await?;
            Ok(Response::new(frames(schema, batches)))
        })
    }
}

/// Hands each batch on, keeping it counted in the budget until the encoder asks for the next.
fn budgeted(
    batches: BatchStream,
    metrics: Metrics,
) -> impl Stream<Item = Result<arrow_array::RecordBatch, FlightError>> {
    let mut held: Option<Held> = None;
    batches.map(move |item| {
        // The encoder asks for the next batch once the previous one is on its way.
        drop(held.take());
        match item {
            Ok((batch, counted)) => {
                held = Some(counted);
                metrics.flight_batches_sent.inc();
                metrics.flight_rows_sent.inc_by(batch.num_rows() as u64);
                Ok(batch)
            }
            Err(e) => Err(FlightError::Tonic(Box::new(status(&e)))),
        }
    })
}

/// Whether a `DoPut` descriptor names the entity upload (`["entities"]` or
/// `{"dataset": "entities"}`).
fn is_entities(descriptor: Option<&FlightDescriptor>) -> bool {
    let Some(d) = descriptor else { return false };
    match DescriptorType::try_from(d.r#type) {
        Ok(DescriptorType::Path) => d.path == ["entities"],
        Ok(DescriptorType::Cmd) => serde_json::from_slice::<serde_json::Value>(&d.cmd)
            .is_ok_and(|v| v.get("dataset").and_then(|d| d.as_str()) == Some("entities")),
        _ => false,
    }
}

#[tonic::async_trait]
impl FlightService for FlightDatasetService {
    type HandshakeStream = Boxed<HandshakeResponse>;
    type ListFlightsStream = Boxed<FlightInfo>;
    type DoGetStream = Boxed<FlightData>;
    type DoPutStream = Boxed<PutResult>;
    type DoExchangeStream = Boxed<FlightData>;
    type DoActionStream = Boxed<arrow_flight::Result>;
    type ListActionsStream = Boxed<ActionType>;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        let (_, key) = auth::handshake(&self.clients, request.metadata()).await.map_err(|e| status(&e))?;
        let token = format!("Bearer {key}")
            .parse()
            .map_err(|_| status(&Error::Unauthenticated("the api key is not a valid header value".into())))?;
        let answer = HandshakeResponse { protocol_version: 0, payload: key.into_bytes().into() };
        let mut response: Response<Self::HandshakeStream> =
            Response::new(futures::stream::once(async move { Ok(answer) }).boxed());
        response.metadata_mut().insert("authorization", token);
        Ok(response)
    }

    async fn list_flights(&self, request: Request<Criteria>) -> Result<Response<Self::ListFlightsStream>, Status> {
        let client = self.client(&request).await?;
        let listed = self.datasets.list(&client).await.map_err(|e| status(&e))?;
        let mut infos = Vec::with_capacity(listed.len());
        for (command, schema) in listed {
            let descriptor = match command.path() {
                Some(path) => FlightDescriptor::new_path(path),
                None => FlightDescriptor::new_cmd(command.to_json().map_err(|e| status(&e))?.to_string()),
            };
            infos.push(flight_info(&client, &command, descriptor, &schema).map_err(|e| status(&e)));
        }
        Ok(Response::new(futures::stream::iter(infos).boxed()))
    }

    async fn get_flight_info(&self, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        let client = self.client(&request).await?;
        let info = self.info(&client, request.into_inner()).await.map_err(|e| status(&e))?;
        Ok(Response::new(info))
    }

    async fn poll_flight_info(&self, request: Request<FlightDescriptor>) -> Result<Response<PollInfo>, Status> {
        let client = self.client(&request).await?;
        let info = self.info(&client, request.into_inner()).await.map_err(|e| status(&e))?;
        // Datasets are planned at once: the poll is complete on the first answer.
        Ok(Response::new(PollInfo::new().with_info(info)))
    }

    async fn get_schema(&self, request: Request<FlightDescriptor>) -> Result<Response<SchemaResult>, Status> {
        let client = self.client(&request).await?;
        let command = command_of(request.get_ref()).map_err(|e| status(&e))?;
        let dataset = self.datasets.open(&client, &command).await.map_err(|e| status(&e))?;
        let options = IpcWriteOptions::default();
        let schema = SchemaResult::try_from(SchemaAsIpc::new(&dataset.schema, &options))
            .map_err(|e| status(&Error::InvalidArgument(format!("schema: cannot be encoded: {e}"))))?;
        Ok(Response::new(schema))
    }

    /// arrow-flight's encoding of the batches, for a caller of the generated server itself;
    /// [`FlightServer`], what `livora serve` runs, answers `DoGet` with [`frames`] instead.
    async fn do_get(&self, request: Request<arrow_flight::Ticket>) -> Result<Response<Self::DoGetStream>, Status> {
        let (schema, batches) = self.open_get(request).await?;
        let flight = FlightDataEncoderBuilder::new().with_schema(schema).build(batches);
        Ok(Response::new(flight.map_err(Status::from).boxed()))
    }

    async fn do_put(&self, request: Request<Streaming<FlightData>>) -> Result<Response<Self::DoPutStream>, Status> {
        let client = self.client(&request).await?;
        let mut messages = request.into_inner();
        let first = messages
            .message()
            .await?
            .ok_or_else(|| status(&Error::InvalidArgument("entities: the DoPut stream is empty".into())))?;
        if let Some(d) = &first.flight_descriptor
            && DescriptorType::try_from(d.r#type) == Ok(DescriptorType::Cmd)
        {
            if let Some(handle) = sql::prepared_statement_handle(&d.cmd) {
                return self.bind(first, messages, &handle).await;
            }
            if FlightSql::decode(&d.cmd).map_err(|e| status(&e))?.is_some() {
                return Err(status(&Error::Unimplemented(
                    "Flight SQL updates and ingestion are not offered: the service is read-only".into(),
                )));
            }
        }
        if !is_entities(first.flight_descriptor.as_ref()) {
            return Err(status(&Error::InvalidArgument(
                "descriptor: DoPut takes entity rows for a point-in-time query; use the path [\"entities\"]".into(),
            )));
        }
        let data = futures::stream::once(async move { Ok(first) }).chain(messages).map_err(FlightError::from);
        let mut batches = FlightRecordBatchStream::new_from_flight_data(data)
            .map_err(|e| Error::InvalidArgument(format!("entities: the uploaded data cannot be decoded: {e}")));
        let head = batches
            .next()
            .await
            .ok_or_else(|| status(&Error::InvalidArgument("entities: the upload has no rows".into())))?
            .map_err(|e| status(&e))?;
        let schema = head.schema();
        let batches = futures::stream::once(async move { Ok(head) }).chain(batches);
        let upload = self.datasets.uploads.receive(&client, schema, Box::pin(batches)).await.map_err(|e| status(&e))?;
        let answer = serde_json::json!({ "entities": upload.id, "rows": upload.rows }).to_string();
        let result = PutResult { app_metadata: answer.into_bytes().into() };
        Ok(Response::new(futures::stream::once(async move { Ok(result) }).boxed()))
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented(
            "DoExchange is not offered: upload entity rows with DoPut ([\"entities\"]), then GetFlightInfo/DoGet a \
             `training` command naming the id it returned",
        ))
    }

    async fn do_action(&self, request: Request<Action>) -> Result<Response<Self::DoActionStream>, Status> {
        let client = self.client(&request).await?;
        let action = request.into_inner();
        match action.r#type.as_str() {
            sql::CREATE_PREPARED_STATEMENT => {
                let query = sql::prepare_request(&action.body).map_err(|e| status(&e))?;
                // Planned with NULL for each placeholder: the values come later (DoPut).
                let command = Command::Sql(SqlCommand { query: sql::unbound(&query).map_err(|e| status(&e))? });
                let dataset = self.datasets.open(&client, &command).await.map_err(|e| status(&e))?;
                let answer = sql::prepared(query, &dataset.schema).map_err(|e| status(&e))?;
                let result = arrow_flight::Result::new(answer);
                Ok(Response::new(futures::stream::once(async move { Ok(result) }).boxed()))
            }
            // Prepared statements hold nothing on the server.
            sql::CLOSE_PREPARED_STATEMENT => Ok(Response::new(futures::stream::empty().boxed())),
            other => Err(status(&Error::Unimplemented(format!(
                "action `{other}` is not offered; the actions are {} and {}",
                sql::CREATE_PREPARED_STATEMENT,
                sql::CLOSE_PREPARED_STATEMENT
            )))),
        }
    }

    async fn list_actions(&self, _request: Request<Empty>) -> Result<Response<Self::ListActionsStream>, Status> {
        let actions = [
            (
                sql::CREATE_PREPARED_STATEMENT,
                "Flight SQL: prepares a query (placeholders `?` or `$n`, bound with DoPut); the handle is the query",
            ),
            (sql::CLOSE_PREPARED_STATEMENT, "Flight SQL: closes a prepared statement (nothing is held)"),
        ]
        .map(|(name, description)| Ok(ActionType { r#type: name.into(), description: description.into() }));
        Ok(Response::new(futures::stream::iter(actions).boxed()))
    }
}
