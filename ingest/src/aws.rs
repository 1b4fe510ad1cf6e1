//! AWS client settings shared by the S3, SQS and CloudWatch Logs sources and the S3 lake.
//!
//! Credentials come from the AWS default chain (environment, profiles, SSO, web identity,
//! container and instance roles); `role_arn` then assumes a reader role, e.g. in the account
//! that owns the bucket. Throttling (`SlowDown`, 503, `ThrottlingException`) and transient
//! errors are retried by the SDK's standard retry strategy, with exponential backoff and jitter;
//! every attempt has a time limit, so a stalled endpoint costs a retry, not a hung worker.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

/// Where and as whom to reach AWS, as configured for one source or lake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsSettings {
    /// Region; default from the environment or profile.
    pub region: Option<String>,
    /// Endpoint of an S3-compatible (or local) service; default AWS.
    pub endpoint_url: Option<String>,
    /// Role to assume with the default credentials.
    pub role_arn: Option<String>,
    /// External id the role's trust policy requires.
    pub external_id: Option<String>,
    /// Time limit of one request attempt.
    pub attempt_timeout: Duration,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
}

impl AwsSettings {
    /// Default attempt limit and timeout.
    pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;

    /// Settings with the defaults and no overrides.
    pub fn new() -> Self {
        AwsSettings {
            attempt_timeout: Self::DEFAULT_ATTEMPT_TIMEOUT,
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            ..AwsSettings::default()
        }
    }

    /// Loads the SDK configuration: default chain, then the overrides of these settings.
    pub async fn load(&self) -> SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(self.max_attempts.max(1))
                    .with_initial_backoff(Duration::from_millis(200))
                    .with_max_backoff(Duration::from_secs(20)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(self.attempt_timeout)
                    .build(),
            );
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &self.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        let base = loader.load().await;
        let Some(role_arn) = &self.role_arn else {
            return base;
        };
        let mut role = aws_config::sts::AssumeRoleProvider::builder(role_arn)
            .session_name("auditlake")
            .configure(&base);
        if let Some(external_id) = &self.external_id {
            role = role.external_id(external_id);
        }
        let provider = role.build().await;
        base.into_builder()
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(provider),
            )
            .build()
    }
}

/// An S3 client for `config`; path-style addressing whenever a custom endpoint is set (in the
/// settings or `AWS_ENDPOINT_URL`), since local and S3-compatible servers rarely serve bucket
/// subdomains.
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    let s3 = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(config.endpoint_url().is_some())
        .retry_partition(without_retry_quota("auditlake-s3"))
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}

/// A retry partition of its own without the SDK's retry quota. The standard strategy takes a
/// few tokens from a shared bucket for every retry and stops retrying once the bucket is empty,
/// so under a brownout (30% of requests answered 503) requests failed after one to three
/// attempts. A long-running ingester wants `max_attempts` to mean what it says, with the
/// backoff and jitter between attempts; object-level retries still follow.
pub fn without_retry_quota(name: &'static str) -> aws_sdk_s3::config::retry::RetryPartition {
    use aws_sdk_s3::config::retry::{RetryPartition, TokenBucket};
    RetryPartition::custom(name)
        .token_bucket(TokenBucket::unlimited())
        .build()
}

/// The message of an SDK error with its code, e.g. `SlowDown: Please reduce your request rate`.
pub fn describe<E, R>(error: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_s3::error::SdkError;
    match error {
        SdkError::ServiceError(e) => {
            let err = e.err();
            match (err.code(), err.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_owned(),
                _ => err.to_string(),
            }
        }
        SdkError::TimeoutError(_) => "request timed out".to_owned(),
        SdkError::DispatchFailure(e) => format!("could not send the request: {e:?}"),
        other => aws_smithy_types::error::display::DisplayErrorContext(other).to_string(),
    }
}

/// Credentials of the SDK's provider chain for `object_store`, cached until shortly before they
/// expire (assumed-role sessions would otherwise call STS for every request).
#[derive(Debug)]
struct SdkCredentials {
    provider: aws_credential_types::provider::SharedCredentialsProvider,
    cached: tokio::sync::Mutex<Option<(Arc<object_store::aws::AwsCredential>, Option<SystemTime>)>>,
}

#[async_trait::async_trait]
impl object_store::CredentialProvider for SdkCredentials {
    type Credential = object_store::aws::AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<Self::Credential>> {
        use aws_credential_types::provider::ProvideCredentials;
        let mut cached = self.cached.lock().await;
        if let Some((credential, expiry)) = cached.as_ref() {
            let fresh = expiry.is_none_or(|t| t > SystemTime::now() + Duration::from_secs(300));
            if fresh {
                return Ok(credential.clone());
            }
        }
        let c = self.provider.provide_credentials().await.map_err(|e| {
            object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            }
        })?;
        let credential = Arc::new(object_store::aws::AwsCredential {
            key_id: c.access_key_id().to_owned(),
            secret_key: c.secret_access_key().to_owned(),
            token: c.session_token().map(str::to_owned),
        });
        *cached = Some((credential.clone(), c.expiry()));
        Ok(credential)
    }
}

/// An `object_store` client for `bucket`, with these settings' region, endpoint and
/// credentials (the same chain, role and retries as the SDK clients).
pub async fn object_store(
    bucket: &str,
    settings: &AwsSettings,
) -> Result<Arc<dyn object_store::ObjectStore>, String> {
    let config = settings.load().await;
    let provider = config
        .credentials_provider()
        .ok_or_else(|| "no AWS credentials provider is configured".to_owned())?;
    let region = config
        .region()
        .map_or_else(|| "us-east-1".to_owned(), |r| r.to_string());
    let mut builder = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(region)
        .with_credentials(Arc::new(SdkCredentials {
            provider,
            cached: tokio::sync::Mutex::new(None),
        }))
        .with_retry(object_store::RetryConfig {
            max_retries: settings.max_attempts.saturating_sub(1) as usize,
            retry_timeout: settings.attempt_timeout * settings.max_attempts,
            ..object_store::RetryConfig::default()
        })
        .with_client_options(
            object_store::ClientOptions::new().with_timeout(settings.attempt_timeout),
        );
    if let Some(endpoint) = config.endpoint_url() {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"))
            .with_virtual_hosted_style_request(false);
    }
    builder
        .build()
        .map(|s| Arc::new(s) as Arc<dyn object_store::ObjectStore>)
        .map_err(|e| e.to_string())
}
