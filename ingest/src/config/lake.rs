//! `lake`: where the lake is (a folder or `s3://bucket/prefix`) and how it is reached.

use std::path::PathBuf;

use super::{ConfigError, defaults, invalid};
use crate::aws::AwsSettings;

/// Where the lake is, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LakeSpec {
    Local(PathBuf),
    S3 {
        location: S3Location,
        aws: AwsSettings,
    },
}

impl LakeSpec {
    /// A folder, or `s3://bucket/prefix` reached with `aws`.
    pub fn parse(text: &str, aws: AwsSettings) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Err("must not be empty".into());
        }
        if text.starts_with("s3://") {
            return Ok(LakeSpec::S3 {
                location: S3Location::parse(text)?,
                aws,
            });
        }
        if text.contains("://") {
            return Err(format!("{text:?}: use a folder or s3://bucket/prefix"));
        }
        Ok(LakeSpec::Local(PathBuf::from(text)))
    }

    /// Where state lives when the configuration does not say.
    pub fn default_state_dir(&self) -> PathBuf {
        match self {
            LakeSpec::Local(path) => path.join(defaults::LOCAL_STATE_SUBDIR),
            LakeSpec::S3 { .. } => PathBuf::from(defaults::S3_LAKE_STATE_DIR),
        }
    }

    /// A folder path or `s3://` URL, for messages.
    pub fn display(&self) -> String {
        match self {
            LakeSpec::Local(path) => path.display().to_string(),
            LakeSpec::S3 { location, .. } => {
                format!("s3://{}/{}", location.bucket, location.prefix)
            }
        }
    }

    /// Opens the root: a folder as is, or an S3 client for the bucket.
    pub async fn open(&self) -> Result<auditlake_schema::LakeRoot, ConfigError> {
        match self {
            LakeSpec::Local(path) => Ok(auditlake_schema::LakeRoot::Local(path.clone())),
            LakeSpec::S3 { location, aws } => {
                let store = crate::aws::object_store(&location.bucket, aws)
                    .await
                    .map_err(|m| invalid("lake", m))?;
                let url = url::Url::parse(&format!("s3://{}/{}", location.bucket, location.prefix))
                    .map_err(|e| invalid("lake", e.to_string()))?;
                Ok(auditlake_schema::LakeRoot::Store { url, store })
            }
        }
    }
}

/// A bucket and a normalised prefix (no leading `/`, a trailing `/` unless empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub prefix: String,
}

impl S3Location {
    /// Checks a bucket name and prefix; errors name `bucket` or `prefix`.
    pub fn new(bucket: &str, prefix: &str) -> Result<Self, (&'static str, String)> {
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !valid_bucket {
            return Err((
                "bucket",
                format!(
                    "{bucket:?} is not an S3 bucket name (3-63 lowercase letters, digits, '-' or '.')"
                ),
            ));
        }
        let trimmed = prefix.trim_start_matches('/');
        let prefix = if trimmed.is_empty() || trimmed.ends_with('/') {
            trimmed.to_owned()
        } else {
            format!("{trimmed}/")
        };
        Ok(S3Location {
            bucket: bucket.to_owned(),
            prefix,
        })
    }

    /// Parses `s3://bucket[/prefix]`.
    pub fn parse(uri: &str) -> Result<Self, String> {
        let rest = uri
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{uri:?} does not start with s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        Self::new(bucket, prefix).map_err(|(_, m)| m)
    }
}
