//! The AWS SDK client set-up shared by Livora's AWS backends (the DynamoDB online store here,
//! the SageMaker runtime in `livora-inference`): the SDK's HTTP client on rustls + ring (its
//! default would build aws-lc as well), then the standard chain for region and credentials,
//! with Livora's config keys taking precedence.

use aws_config::{BehaviorVersion, ConfigLoader};
use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

/// What Livora's config may set for an AWS client; `None` leaves it to the standard chain.
#[derive(Debug, Clone, Copy, Default)]
pub struct AwsSettings<'a> {
    /// The region.
    pub region: Option<&'a str>,
    /// Another endpoint URL (a local stand-in such as moto).
    pub endpoint_url: Option<&'a str>,
    /// Static credentials: access key id and secret.
    pub credentials: Option<(&'a str, &'a str)>,
}

/// A config loader with Livora's HTTP client and `settings` applied; the caller adds its
/// timeouts and retries, then loads.
pub fn config_loader(settings: AwsSettings<'_>) -> ConfigLoader {
    let http =
        aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::Ring)).build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
    if let Some(region) = settings.region {
        loader = loader.region(Region::new(region.to_owned()));
    }
    if let Some(url) = settings.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some((id, secret)) = settings.credentials {
        loader = loader.credentials_provider(Credentials::new(id, secret, None, None, "livora-config"));
    }
    loader
}
