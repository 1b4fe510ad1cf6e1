//! `[[source]]` tables: one struct and one validation per source kind, each turning what was
//! written into the spec its source runs from. The command line builds the same structs for the
//! sources it names, so both paths share the checks and the defaults of [`super::defaults`].

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::lake::S3Location;
use super::{ConfigError, defaults, invalid};
use crate::aws::AwsSettings;
use crate::source::cloudwatch::CloudWatchSpec;
use crate::source::layout::ExpectedKind;
use crate::source::s3::S3Spec;

/// Names a key of one source table in errors (`source[2].bucket`).
pub type FieldName<'a> = &'a dyn Fn(&str) -> String;

/// `[[source]]`, by its `type`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceConfig {
    /// A local folder tree holding CloudTrail and/or Atlas push-export objects.
    Folder(FolderSourceConfig),
    /// An S3 bucket, listed and optionally notified through SQS.
    S3(S3SourceConfig),
    /// CloudWatch Logs groups receiving CloudTrail events.
    Cloudwatch(CloudwatchSourceConfig),
}

/// `type = "folder"`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderSourceConfig {
    /// The folder.
    pub path: PathBuf,
    /// Atlas project name stamped on audit rows from this source.
    pub atlas_project: Option<String>,
}

/// `type = "s3"`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3SourceConfig {
    pub bucket: String,
    /// Key prefix (a folder). Default: the whole bucket.
    pub prefix: Option<String>,
    /// `auto` (default: by key layout), `cloudtrail` or `atlas_audit`.
    pub kind: Option<String>,
    #[serde(flatten)]
    pub aws: AwsConfig,
    /// SQS queue receiving the bucket's `ObjectCreated` notifications.
    pub queue_url: Option<String>,
    /// Long-poll wait of one receive. Default `20s`.
    #[serde(default, with = "humantime_serde")]
    pub queue_wait: Option<Duration>,
    /// Time between listings when a queue is set. Default `15m`.
    #[serde(default, with = "humantime_serde")]
    pub reconcile_interval: Option<Duration>,
    /// How far before the newest listed key each listing starts again. Default `1h`.
    #[serde(default, with = "humantime_serde")]
    pub look_back: Option<Duration>,
    /// Atlas project name stamped on audit rows from this source.
    pub atlas_project: Option<String>,
}

/// `type = "cloudwatch"`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudwatchSourceConfig {
    pub log_groups: Vec<String>,
    #[serde(flatten)]
    pub aws: AwsConfig,
    /// How far before the cursor each read starts again. Default `5m`.
    #[serde(default, with = "humantime_serde")]
    pub overlap: Option<Duration>,
    /// Where a group read for the first time starts, before now. Default `1d`.
    #[serde(default, with = "humantime_serde")]
    pub start: Option<Duration>,
    /// Most events per read. Default 10000.
    pub max_events: Option<usize>,
    /// Events per `FilterLogEvents` page (1 to 10000). Default: the service's.
    pub page_size: Option<i32>,
}

/// AWS settings of an S3 or CloudWatch source (flattened into its table) or of the lake.
#[derive(Debug, Default, Deserialize)]
pub struct AwsConfig {
    /// Region. Default: from the environment or profile.
    pub region: Option<String>,
    /// Endpoint of an S3-compatible or local service.
    pub endpoint_url: Option<String>,
    /// Role to assume for reading (cross-account).
    pub role_arn: Option<String>,
    /// External id required by the role's trust policy.
    pub external_id: Option<String>,
    /// Time limit of one request attempt. Default `30s`.
    #[serde(default, with = "humantime_serde")]
    pub request_timeout: Option<Duration>,
    /// Attempts per request, with backoff and jitter. Default 8.
    pub max_attempts: Option<u32>,
}

/// A validated source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    Folder {
        path: PathBuf,
        atlas_project: Option<String>,
    },
    S3 {
        spec: S3Spec,
        /// Long-poll wait of one SQS receive.
        queue_wait: Duration,
    },
    Cloudwatch(CloudWatchSpec),
}

impl SourceConfig {
    /// Checks the `n`th `[[source]]` table; errors name `source[n].<key>`.
    pub fn validate(self, n: usize) -> Result<SourceSpec, ConfigError> {
        let field = |name: &str| format!("source[{n}].{name}");
        Ok(match self {
            SourceConfig::Folder(folder) => folder.validate(&field)?,
            SourceConfig::S3(s3) => {
                let (spec, queue_wait) = s3.validate(&field)?;
                SourceSpec::S3 { spec, queue_wait }
            }
            SourceConfig::Cloudwatch(cloudwatch) => {
                SourceSpec::Cloudwatch(cloudwatch.validate(&field)?)
            }
        })
    }
}

impl FolderSourceConfig {
    pub fn validate(self, field: FieldName) -> Result<SourceSpec, ConfigError> {
        if self.path.as_os_str().is_empty() {
            return Err(invalid(field("path"), "must not be empty"));
        }
        Ok(SourceSpec::Folder {
            path: self.path,
            atlas_project: self.atlas_project,
        })
    }
}

impl S3SourceConfig {
    /// The listing's spec and the queue's long-poll wait.
    pub fn validate(self, field: FieldName) -> Result<(S3Spec, Duration), ConfigError> {
        let location = S3Location::new(&self.bucket, self.prefix.as_deref().unwrap_or(""))
            .map_err(|(name, message)| invalid(field(name), message))?;
        let expected = match self.kind.as_deref().unwrap_or(defaults::S3_KIND) {
            "auto" => ExpectedKind::Auto,
            "cloudtrail" => ExpectedKind::Cloudtrail,
            "atlas_audit" => ExpectedKind::AtlasAudit,
            other => {
                return Err(invalid(
                    field("kind"),
                    format!("{other:?} is not one of auto, cloudtrail, atlas_audit"),
                ));
            }
        };
        if let Some(url) = &self.queue_url {
            check_url(url).map_err(|m| invalid(field("queue_url"), m))?;
        }
        let queue_wait = self.queue_wait.unwrap_or(defaults::QUEUE_WAIT);
        if queue_wait.is_zero() || queue_wait > defaults::QUEUE_WAIT {
            return Err(invalid(field("queue_wait"), "must be between 1s and 20s"));
        }
        let reconcile_interval = self
            .reconcile_interval
            .unwrap_or(defaults::RECONCILE_INTERVAL);
        if reconcile_interval.is_zero() {
            return Err(invalid(
                field("reconcile_interval"),
                "must be more than zero",
            ));
        }
        let spec = S3Spec {
            bucket: location.bucket,
            prefix: location.prefix,
            expected,
            aws: self.aws.validate(field)?,
            queue_url: self.queue_url,
            reconcile_interval,
            look_back: self.look_back.unwrap_or(defaults::LOOK_BACK),
            atlas_project: self.atlas_project,
            since_micros: None,
            until_micros: None,
        };
        Ok((spec, queue_wait))
    }
}

impl CloudwatchSourceConfig {
    pub fn validate(self, field: FieldName) -> Result<CloudWatchSpec, ConfigError> {
        let groups = &self.log_groups;
        if groups.is_empty() || groups.iter().any(|g| g.trim().is_empty()) {
            return Err(invalid(
                field("log_groups"),
                "name at least one log group, none empty",
            ));
        }
        if groups.iter().any(|g| g.starts_with("arn:")) {
            return Err(invalid(
                field("log_groups"),
                "give log group names, not ARNs",
            ));
        }
        let max_events = self.max_events.unwrap_or(defaults::MAX_EVENTS);
        if max_events == 0 {
            return Err(invalid(field("max_events"), "must be at least 1"));
        }
        if self
            .page_size
            .is_some_and(|p| !(1..=defaults::MAX_PAGE_SIZE).contains(&p))
        {
            return Err(invalid(field("page_size"), "must be between 1 and 10000"));
        }
        Ok(CloudWatchSpec {
            log_groups: self.log_groups,
            aws: self.aws.validate(field)?,
            overlap: self.overlap.unwrap_or(defaults::OVERLAP),
            initial_look_back: self.start.unwrap_or(defaults::START),
            max_events,
            page_size: self.page_size,
            since_micros: None,
            until_micros: None,
        })
    }
}

impl AwsConfig {
    /// Checks the settings; `field` names a key of the table they sit in.
    pub fn validate(self, field: FieldName) -> Result<AwsSettings, ConfigError> {
        if let Some(url) = &self.endpoint_url {
            check_url(url).map_err(|m| invalid(field("endpoint_url"), m))?;
        }
        if let Some(arn) = &self.role_arn
            && !(arn.starts_with("arn:") && arn.contains(":role/"))
        {
            return Err(invalid(
                field("role_arn"),
                format!("{arn:?} is not a role ARN like arn:aws:iam::123456789012:role/reader"),
            ));
        }
        if self.external_id.is_some() && self.role_arn.is_none() {
            return Err(invalid(field("external_id"), "needs role_arn"));
        }
        if self.region.as_deref().is_some_and(str::is_empty) {
            return Err(invalid(field("region"), "must not be empty"));
        }
        let defaults = AwsSettings::new();
        let attempt_timeout = self.request_timeout.unwrap_or(defaults.attempt_timeout);
        if attempt_timeout.is_zero() {
            return Err(invalid(field("request_timeout"), "must be more than zero"));
        }
        let max_attempts = self.max_attempts.unwrap_or(defaults.max_attempts);
        if max_attempts == 0 {
            return Err(invalid(field("max_attempts"), "must be at least 1"));
        }
        Ok(AwsSettings {
            region: self.region,
            endpoint_url: self.endpoint_url,
            role_arn: self.role_arn,
            external_id: self.external_id,
            attempt_timeout,
            max_attempts,
        })
    }
}

fn check_url(url: &str) -> Result<(), String> {
    match url::Url::parse(url) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Ok(()),
        Ok(u) => Err(format!(
            "{url:?}: scheme {} is not http or https",
            u.scheme()
        )),
        Err(e) => Err(format!("{url:?} is not a URL: {e}")),
    }
}
