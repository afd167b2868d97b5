//! The AWS SDK settings and the one HTTPS client every AWS client uses.

/// The AWS SDK settings every client starts from: the region and endpoint when configured,
/// otherwise the default chain (environment, profile, ECS task role), which also honours
/// `AWS_ENDPOINT_URL_<SERVICE>`.
pub(crate) async fn aws_sdk_config(
    region: Option<&str>,
    endpoint_url: Option<&str>,
) -> aws_config::SdkConfig {
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(https_client());
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// The one HTTPS client every AWS client (and the credential providers) uses: hyper 1 with
/// rustls on ring, the crypto provider the MySQL driver uses too.
pub fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}
