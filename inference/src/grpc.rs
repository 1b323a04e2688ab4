//! `livora.v1.InferenceService` over the [`Predictor`], authenticated per client like feature
//! serving (`authorization: Bearer <key>`, `x-client-id`).

use std::sync::Arc;

use livora_common::ClientId;
use livora_feature_store::serving::FeatureStatus;
use livora_feature_store::serving::auth::authenticate;
use livora_ingest::ClientStore;
use livora_proto::livora::v1 as pb;
use pb::inference_service_server::{InferenceService, InferenceServiceServer};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::predictor::{MissingPolicy, Predictor, RowStatus};

/// The gRPC service.
#[derive(Clone)]
pub struct GrpcInferenceService {
    predictor: Arc<Predictor>,
    clients: Arc<ClientStore>,
    default_policy: MissingPolicy,
}

impl GrpcInferenceService {
    /// The service over `predictor`, authenticating with `clients`; `default_policy` applies
    /// when a request leaves the missing policy unspecified.
    pub fn new(predictor: Arc<Predictor>, clients: Arc<ClientStore>, default_policy: MissingPolicy) -> Self {
        Self { predictor, clients, default_policy }
    }

    /// The tonic server of this service, to add to a router.
    pub fn into_server(self) -> InferenceServiceServer<Self> {
        InferenceServiceServer::new(self)
    }
}

/// The `tonic::Status` answering `error`; failures on our side are logged here, once.
pub fn status(error: &Error) -> Status {
    let code = error.code();
    if matches!(code, livora_common::ErrorCode::Unavailable | livora_common::ErrorCode::Internal) {
        tracing::error!(error = %error, "prediction request failed");
    }
    livora_proto::status(code, error.to_string())
}

/// The client a call is from, by its `authorization: Bearer <key>` and `x-client-id` metadata,
/// as feature serving authenticates; every model call of either inference API goes through it.
pub(crate) async fn client_of(clients: &ClientStore, metadata: &MetadataMap) -> Result<ClientId, Status> {
    authenticate(
        clients,
        metadata.get("authorization").map(|v| v.as_bytes()),
        metadata.get("x-client-id").map(|v| v.as_bytes()),
    )
    .await
    .map_err(|e| status(&e.into()))
}

fn proto_status(status: FeatureStatus) -> i32 {
    (match status {
        FeatureStatus::Present => pb::FeatureStatus::Present,
        FeatureStatus::Missing => pb::FeatureStatus::Missing,
        FeatureStatus::OutsideMaxAge => pb::FeatureStatus::OutsideMaxAge,
    }) as i32
}

#[tonic::async_trait]
impl InferenceService for GrpcInferenceService {
    async fn predict(&self, request: Request<pb::PredictRequest>) -> Result<Response<pb::PredictResponse>, Status> {
        let client = client_of(&self.clients, request.metadata()).await?;
        let request = request.into_inner();
        let policy = match pb::MissingPolicy::try_from(request.missing_policy) {
            Ok(pb::MissingPolicy::Unspecified) => self.default_policy,
            Ok(pb::MissingPolicy::Impute) => MissingPolicy::Impute,
            Ok(pb::MissingPolicy::Refuse) => MissingPolicy::Refuse,
            Err(_) => {
                return Err(status(&Error::InvalidInput(format!(
                    "missing_policy: {} is not a MissingPolicy",
                    request.missing_policy
                ))));
            }
        };
        let top = usize::try_from(request.top_contributions).unwrap_or(usize::MAX).min(64);
        let predictions = self
            .predictor
            .predict(&client, &request.model, &request.entity_keys, top, policy)
            .await
            .map_err(|e| status(&e))?;
        let rows = predictions
            .rows
            .into_iter()
            .map(|r| pb::Prediction {
                entity_key: r.entity_key,
                version: r.version,
                status: (match r.status {
                    RowStatus::Scored => pb::PredictionStatus::Scored,
                    RowStatus::ScoredWithImputation => pb::PredictionStatus::ScoredWithImputation,
                    RowStatus::Refused => pb::PredictionStatus::Refused,
                }) as i32,
                score: r.score,
                statuses: r.statuses.into_iter().map(proto_status).collect(),
                event_timestamps: r
                    .event_times
                    .into_iter()
                    .map(|t| t.map(livora_proto::timestamp_from_micros).unwrap_or_default())
                    .collect(),
                contributions: r
                    .contributions
                    .into_iter()
                    .map(|(feature, value)| pb::Contribution { feature, value })
                    .collect(),
                offers: r
                    .offers
                    .into_iter()
                    .map(|(offer, probability)| pb::RankedOffer { offer, probability })
                    .collect(),
            })
            .collect();
        Ok(Response::new(pb::PredictResponse {
            model: predictions.model,
            version: predictions.version,
            algorithm: predictions.algorithm.name().to_owned(),
            feature_names: predictions.feature_names,
            predictions: rows,
            features_at: Some(livora_proto::timestamp_from_micros(predictions.features_at)),
        }))
    }
}
