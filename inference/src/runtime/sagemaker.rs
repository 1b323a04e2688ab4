//! The SageMaker runtime: a model registered with a SageMaker endpoint (`livora models import
//! --sagemaker-endpoint`) is scored by calling the endpoint (`InvokeEndpoint`), one call per
//! batch of rows. Livora still fetches the features and encodes them (raw numbers, in the
//! manifest's order); the endpoint answers one probability per row.
//!
//! Requests: `text/csv` (a row a line, a missing value as an empty field, as SageMaker's
//! built-in XGBoost and scikit-learn containers read) or `application/json`
//! (`{"instances": [[…], …]}`, missing as null). Answers, whatever their content type says:
//! JSON — an array of numbers, an array of `[P(negative), P(positive)]` pairs, or an object with
//! `predictions` (or `probabilities`) holding either, or objects with a `score` (XGBoost's JSON
//! output) — or text: numbers separated by newlines or commas, a line of two numbers read as a
//! pair. Anything else, or a count that is not the number of rows, is an error naming the
//! endpoint.
//!
//! The client is the AWS SDK's on rustls + ring, with the standard credential chain; the config
//! keys `inference.sagemaker.region` and `endpoint_url` (a local stand-in such as moto) override
//! the environment.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_sdk_sagemakerruntime::Client;
use aws_sdk_sagemakerruntime::primitives::Blob;
use livora_feature_store::aws::{AwsSettings, config_loader};
use livora_models::Endpoint;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::error::{Error, Result};

/// `text/csv`.
pub const CSV: &str = "text/csv";
/// `application/json`.
pub const JSON: &str = "application/json";

/// `[inference.sagemaker]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SageMakerConfig {
    /// The AWS region of the endpoints; default: the standard chain (`AWS_REGION`, profile).
    pub region: Option<String>,
    /// Another endpoint URL for the SageMaker runtime API (a local stand-in such as moto);
    /// default: AWS's.
    pub endpoint_url: Option<String>,
    /// How long one call may take, retries included. Default 2s.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Static credentials, for a local stand-in; default: the standard chain (environment,
    /// profile, instance role), which is what production should use.
    pub access_key_id: Option<String>,
    /// The secret of `access_key_id`.
    pub secret_access_key: Option<String>,
}

impl Default for SageMakerConfig {
    fn default() -> Self {
        Self {
            region: None,
            endpoint_url: None,
            timeout: Duration::from_secs(2),
            access_key_id: None,
            secret_access_key: None,
        }
    }
}

/// Calls SageMaker endpoints. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SageMakerRuntime {
    client: Client,
}

impl SageMakerRuntime {
    /// A client from `config` and the standard AWS chain.
    pub async fn connect(config: &SageMakerConfig) -> Result<Self> {
        let sdk = config_loader(AwsSettings {
            region: config.region.as_deref(),
            endpoint_url: config.endpoint_url.as_deref(),
            credentials: config.access_key_id.as_deref().zip(config.secret_access_key.as_deref()),
        })
        .timeout_config(TimeoutConfig::builder().operation_timeout(config.timeout).build())
        .load()
        .await;
        if sdk.region().is_none() {
            return Err(Error::Inference(
                "a model is served by a SageMaker endpoint but no AWS region is configured: set \
                 inference.sagemaker.region or AWS_REGION"
                    .into(),
            ));
        }
        Ok(Self { client: Client::new(&sdk) })
    }

    /// The probability of each of `rows` encoded rows (`x`, row-major), from `endpoint`.
    pub async fn predict(&self, endpoint: &Endpoint, x: &[f64], rows: usize) -> Result<Vec<f64>> {
        let failed = |reason: String| Error::Endpoint { endpoint: endpoint.name.clone(), reason };
        let width = x.len().checked_div(rows).unwrap_or(0);
        let body = request_body(&endpoint.content_type, x, width).map_err(failed)?;
        let mut call = self
            .client
            .invoke_endpoint()
            .endpoint_name(&endpoint.name)
            .content_type(&endpoint.content_type)
            .accept(format!("{JSON}, {CSV}"))
            .body(Blob::new(body));
        if let Some(variant) = &endpoint.target_variant {
            call = call.target_variant(variant);
        }
        let answer = call.send().await.map_err(|e| {
            let e = aws_sdk_sagemakerruntime::error::DisplayErrorContext(e);
            failed(format!("the call failed: {e}"))
        })?;
        let body = answer.body.map(|b| b.into_inner()).unwrap_or_default();
        parse_scores(&body, rows).map_err(failed)
    }
}

/// The request body of `x` (`width` columns) in `content_type`.
pub fn request_body(content_type: &str, x: &[f64], width: usize) -> std::result::Result<Vec<u8>, String> {
    if width == 0 {
        return Err("the model reads no feature".into());
    }
    match content_type {
        CSV => {
            let mut out = String::with_capacity(x.len() * 8);
            for row in x.chunks(width) {
                for (i, v) in row.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    if v.is_finite() {
                        out.push_str(&v.to_string());
                    }
                }
                out.push('\n');
            }
            Ok(out.into_bytes())
        }
        JSON => {
            let instances: Vec<Vec<Json>> = x
                .chunks(width)
                .map(|row| {
                    row.iter().map(|&v| serde_json::Number::from_f64(v).map_or(Json::Null, Json::Number)).collect()
                })
                .collect();
            serde_json::to_vec(&serde_json::json!({ "instances": instances })).map_err(|e| e.to_string())
        }
        other => Err(format!("content type `{other}` is not supported; use `{CSV}` or `{JSON}`")),
    }
}

/// A probability from one answer element: a number, a `[P(negative), P(positive)]` pair, or an
/// object with a `score`.
fn score_of(v: &Json) -> Option<f64> {
    match v {
        Json::Number(n) => n.as_f64(),
        Json::Array(pair) if pair.len() == 2 => pair[1].as_f64(),
        Json::Object(o) => o.get("score").and_then(score_of),
        _ => None,
    }
}

/// One probability per row from an endpoint's answer (see the module's documentation).
pub fn parse_scores(body: &[u8], rows: usize) -> std::result::Result<Vec<f64>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the answer is not UTF-8 text".to_owned())?.trim();
    let scores: Vec<f64> = if text.starts_with('[') || text.starts_with('{') {
        let json: Json = serde_json::from_str(text).map_err(|e| format!("the answer is not valid JSON: {e}"))?;
        let list = match &json {
            Json::Array(items) => items,
            Json::Object(o) => match o.get("predictions").or_else(|| o.get("probabilities")) {
                Some(Json::Array(items)) => items,
                _ => return Err("a JSON answer must be an array or hold `predictions` or `probabilities`".into()),
            },
            _ => return Err("a JSON answer must be an array or an object".into()),
        };
        list.iter()
            .enumerate()
            .map(|(i, v)| score_of(v).ok_or_else(|| format!("answer element {i} is not a probability: {v}")))
            .collect::<std::result::Result<_, _>>()?
    } else {
        let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let number =
            |s: &str| s.trim().parse::<f64>().map_err(|_| format!("`{}` in the answer is not a number", s.trim()));
        if lines.len() == 1 {
            let values: Vec<f64> = lines[0].split(',').map(number).collect::<std::result::Result<_, _>>()?;
            // One line: one value per row, or a single row's pair.
            if rows == 1 && values.len() == 2 { vec![values[1]] } else { values }
        } else {
            lines
                .iter()
                .map(|line| {
                    let values: Vec<f64> = line.split(',').map(number).collect::<std::result::Result<_, _>>()?;
                    match values[..] {
                        [p] | [_, p] => Ok(p),
                        _ => Err(format!("the line `{line}` holds {} values; expected 1 or 2", values.len())),
                    }
                })
                .collect::<std::result::Result<_, _>>()?
        }
    };
    if scores.len() != rows {
        return Err(format!("answered {} probabilities for {rows} rows", scores.len()));
    }
    if let Some(p) = scores.iter().find(|p| !(0.0..=1.0).contains(*p)) {
        return Err(format!("answered {p}, which is not a probability"));
    }
    Ok(scores)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_sent_as_csv_or_json_with_missing_values_empty_or_null() {
        let x = [1.0, f64::NAN, 0.5, 2.0];
        assert_eq!(String::from_utf8(request_body(CSV, &x, 2).unwrap()).unwrap(), "1,\n0.5,2\n");
        assert_eq!(
            String::from_utf8(request_body(JSON, &x, 2).unwrap()).unwrap(),
            r#"{"instances":[[1.0,null],[0.5,2.0]]}"#
        );
        assert!(request_body("text/plain", &x, 2).unwrap_err().contains("`text/plain` is not supported"));
    }

    #[test]
    fn every_common_answer_shape_reads_as_one_probability_per_row() {
        for (body, rows) in [
            ("0.25\n0.75\n", 2),
            ("0.25,0.75", 2),
            ("0.75,0.25\n0.25,0.75", 2),
            ("[0.25, 0.75]", 2),
            ("[[0.75, 0.25], [0.25, 0.75]]", 2),
            (r#"{"predictions": [{"score": 0.25}, {"score": 0.75}]}"#, 2),
            (r#"{"probabilities": [0.25, 0.75]}"#, 2),
        ] {
            assert_eq!(parse_scores(body.as_bytes(), rows).unwrap(), [0.25, 0.75], "{body}");
        }
        assert_eq!(parse_scores(b"0.8,0.2", 1).unwrap(), [0.2], "one row's pair");
    }

    #[test]
    fn answers_that_do_not_fit_say_why() {
        for (body, rows, says) in [
            ("0.5", 2, "answered 1 probabilities for 2 rows"),
            ("yes", 1, "`yes` in the answer is not a number"),
            ("[0.5, \"x\"]", 2, "answer element 1 is not a probability"),
            ("1.5", 1, "1.5, which is not a probability"),
            ("{\"label\": 1}", 1, "must be an array or hold `predictions`"),
            ("0.1,0.2,0.7\n0.1,0.2,0.7", 2, "holds 3 values"),
        ] {
            let err = parse_scores(body.as_bytes(), rows).unwrap_err();
            assert!(err.contains(says), "{body}: {err}");
        }
    }
}
