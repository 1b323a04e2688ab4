//! `inference.GRPCInferenceService`: KServe's Open Inference Protocol V2 over the [`Predictor`],
//! for callers that bring their own features, so that standard clients (tritonclient, KServe's
//! SDK) score with Livora's models.
//!
//! - **Naming.** `model_name` is a Livora model (`churn`); `model_version` is empty (the
//!   `production` alias), a version number (`3`) or an alias (`staging`). An alias's canary
//!   does not apply here: the caller names the version or alias and brings the features, and
//!   every row is scored by the version the alias points at ([`Predictor::resolve`]). Canaries
//!   split the entity-keyed `livora.v1.InferenceService/Predict` only.
//! - **Credentials** as for `livora.v1.InferenceService` (`authorization: Bearer <key>`,
//!   `x-client-id`): every model call is scoped to that client, so another client's model is
//!   NOT_FOUND. ServerLive, ServerReady and ServerMetadata answer without credentials (probes).
//! - **Inputs and output**: [`tensors`] — one tensor per feature, named as the feature, encoded
//!   with the artifact's encoder and scored with the version's runtime ([`crate::predictor::Loaded::score_table`]);
//!   the output is `probability` (FP64, `[N]`; a ranker's `[N, offers]`, one probability per
//!   offer in the manifest's order), raw when the inputs were raw.
//! - **Entity keys and the prediction log**: an optional BYTES input named as the model's join
//!   key (`user_id`) says which entity each row is. Every ModelInfer row is logged like a
//!   Predict score (model, version, the features given, score, time); rows with a key also
//!   update the prediction view online, rows without one are logged with an empty key only.
//! - ModelReady is true when the reference resolves and the version loads; false for an unknown
//!   model or version, or one that does not load (logged). ModelMetadata lists the registered
//!   versions, the platform `livora-<algorithm>`, every input with its datatype and shape `[-1]`,
//!   and the output.
//!
//! RPCs of Triton's superset of the protocol (ModelConfig, ModelStatistics, repository and shared
//! memory calls) are not served: tonic answers UNIMPLEMENTED.

mod tensors;

use std::sync::Arc;

use livora_common::{ClientId, ErrorCode};
use livora_ingest::ClientStore;
use livora_proto::inference as pb;
use pb::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use pb::model_metadata_response::TensorMetadata;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::grpc::{client_of, status};
use crate::predictor::{Loaded, Predictor};

/// The server name ServerMetadata answers.
pub const SERVER_NAME: &str = "livora";

/// The KServe V2 gRPC service.
#[derive(Clone)]
pub struct GrpcKserveService {
    predictor: Arc<Predictor>,
    clients: Arc<ClientStore>,
}

impl GrpcKserveService {
    /// The service over `predictor`, authenticating with `clients`.
    pub fn new(predictor: Arc<Predictor>, clients: Arc<ClientStore>) -> Self {
        Self { predictor, clients }
    }

    /// The tonic server of this service, to add to a router.
    pub fn into_server(self) -> GrpcInferenceServiceServer<Self> {
        GrpcInferenceServiceServer::new(self)
    }

    /// The client of a model call, and the Livora reference its model and version name.
    async fn target(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        model: &str,
        version: &str,
    ) -> Result<(ClientId, String), Status> {
        let client = client_of(&self.clients, metadata).await?;
        let reference = reference(model, version).map_err(|e| status(&e))?;
        Ok((client, reference))
    }

    /// The client of a model call and the loaded version its model and version name.
    async fn loaded(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        model: &str,
        version: &str,
    ) -> Result<(ClientId, Arc<Loaded>), Status> {
        let (client, reference) = self.target(metadata, model, version).await?;
        let loaded = self.predictor.resolve(&client, &reference).await.map_err(|e| status(&e))?;
        Ok((client, loaded))
    }
}

/// The Livora reference (`churn`, `churn@3`, `churn@staging`) of a KServe model and version.
fn reference(model: &str, version: &str) -> Result<String, Error> {
    let (model, version) = (model.trim(), version.trim());
    if model.is_empty() {
        return Err(Error::InvalidInput("model_name: name a model (`churn`)".into()));
    }
    if model.contains('@') {
        return Err(Error::InvalidInput(format!(
            "model_name: `{model}` names a version; give the model alone and the version or alias in model_version"
        )));
    }
    Ok(if version.is_empty() { model.to_owned() } else { format!("{model}@{version}") })
}

fn tensor(name: impl Into<String>, datatype: &str) -> TensorMetadata {
    TensorMetadata { name: name.into(), datatype: datatype.into(), shape: vec![-1] }
}

#[tonic::async_trait]
impl GrpcInferenceService for GrpcKserveService {
    async fn server_live(
        &self,
        _request: Request<pb::ServerLiveRequest>,
    ) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _request: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        let ready = match self.predictor.ping().await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "KServe V2: the model registry does not answer");
                false
            }
        };
        Ok(Response::new(pb::ServerReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _request: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        Ok(Response::new(pb::ServerMetadataResponse {
            name: SERVER_NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: Vec::new(),
        }))
    }

    async fn model_ready(
        &self,
        request: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        let (client, reference) =
            self.target(request.metadata(), &request.get_ref().name, &request.get_ref().version).await?;
        let ready = match self.predictor.resolve(&client, &reference).await {
            Ok(_) => true,
            Err(e) if e.code() == ErrorCode::NotFound => false,
            Err(e) if e.code() == ErrorCode::Internal => {
                tracing::warn!(error = %e, model = %request.get_ref().name, "KServe V2: the model does not load");
                false
            }
            Err(e) => return Err(status(&e)),
        };
        Ok(Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn model_metadata(
        &self,
        request: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        let (client, loaded) =
            self.loaded(request.metadata(), &request.get_ref().name, &request.get_ref().version).await?;
        let m = &loaded.manifest;
        let versions = self.predictor.versions(&client, &m.model).await.map_err(|e| status(&e))?;
        Ok(Response::new(pb::ModelMetadataResponse {
            name: m.model.clone(),
            versions: versions.into_iter().map(|v| v.to_string()).collect(),
            platform: format!("livora-{}", m.algorithm.name()),
            inputs: m.encoder.features.iter().map(|f| tensor(&f.name, tensors::metadata_datatype(f))).collect(),
            outputs: vec![match loaded.outputs() {
                1 => tensor(tensors::OUTPUT, tensors::FP64),
                n => TensorMetadata { shape: vec![-1, n as i64], ..tensor(tensors::OUTPUT, tensors::FP64) },
            }],
        }))
    }

    async fn model_infer(
        &self,
        request: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        let (client, loaded) =
            self.loaded(request.metadata(), &request.get_ref().model_name, &request.get_ref().model_version).await?;
        let request = request.into_inner();
        tensors::check_outputs(&request).map_err(|e| status(&e))?;
        let m = &loaded.manifest;
        let inputs =
            tensors::decode(&request, &m.encoder, &m.join_key, self.predictor.max_rows()).map_err(|e| status(&e))?;
        let probabilities = loaded.score_table(&inputs.table).await.map_err(|e| status(&e))?;
        self.predictor
            .record_scored(&client, &loaded, &inputs.table, inputs.entity_keys.as_deref(), &probabilities)
            .await
            .map_err(|e| status(&e))?;
        let (output, raw) = tensors::output(probabilities, loaded.outputs(), inputs.raw);
        Ok(Response::new(pb::ModelInferResponse {
            model_name: loaded.manifest.model.clone(),
            model_version: loaded.manifest.version.to_string(),
            id: request.id,
            parameters: Default::default(),
            outputs: vec![output],
            raw_output_contents: raw.into_iter().collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kserve_names_become_livora_references() {
        assert_eq!(reference("churn", "").expect("production"), "churn");
        assert_eq!(reference(" churn ", "3").expect("a version"), "churn@3");
        assert_eq!(reference("churn", "staging").expect("an alias"), "churn@staging");
        for (model, version, says) in [("", "", "model_name: name a model"), ("churn@3", "", "names a version")] {
            let e = reference(model, version).expect_err("refused");
            assert_eq!(e.code(), ErrorCode::InvalidArgument);
            assert!(e.to_string().contains(says), "{e}");
        }
    }
}
