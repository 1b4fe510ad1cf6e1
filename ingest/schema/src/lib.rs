//! The public shape of the auditlake lake: table names, Arrow schemas and lake paths.
//!
//! Every crate reads and writes the lake through these definitions, so a column added here is
//! written by the ingest side and registered by the query side without either guessing. The
//! query side never infers schemas from files: it registers exactly these, plus the Hive
//! partition columns `date` and `hour` that [`Partition::path`] encodes in the directory names.

pub mod credentials;
mod paths;
pub mod trust;

pub use paths::{LakeFile, LakeRoot};

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Name of the CloudTrail table.
pub const CLOUDTRAIL: &str = "cloudtrail";
/// Name of the MongoDB audit table (both the `mongo` and the OCSF audit schemas land here).
pub const MONGODB_AUDIT: &str = "mongodb_audit";
/// Name of the table of inputs that could not be decoded.
pub const REJECTED: &str = "rejected";
/// Name of the table of alerts raised by the detector.
pub const ALERTS: &str = "alerts";

/// Every table of the lake, in the order they are listed to users.
pub const TABLES: [&str; 4] = [CLOUDTRAIL, MONGODB_AUDIT, REJECTED, ALERTS];

/// Hive partition columns, encoded as `date=YYYY-MM-DD/hour=HH` under each table folder.
pub const PARTITION_COLUMNS: [&str; 2] = ["date", "hour"];

/// Largest number of raw bytes kept for one rejected input; longer inputs are cut and marked.
pub const REJECTED_RAW_LIMIT: usize = 64 * 1024;

/// The timestamp type of every time column: microseconds, UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

fn ts(name: &str, nullable: bool) -> Field {
    Field::new(name, timestamp_type(), nullable)
}

fn utf8_list(name: &str) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        true,
    )
}

fn provenance() -> [Field; 4] {
    [
        Field::new("source_uri", DataType::Utf8, false),
        Field::new("source_index", DataType::Int64, false),
        ts("ingested_at", false),
        utf8("decode_note"),
    ]
}

static CLOUDTRAIL_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        ts("event_time", true),
        utf8("event_id"),
        utf8("event_version"),
        utf8("event_source"),
        utf8("event_name"),
        utf8("aws_region"),
        utf8("source_ip"),
        utf8("user_agent"),
        utf8("error_code"),
        utf8("error_message"),
        Field::new("read_only", DataType::Boolean, true),
        Field::new("management_event", DataType::Boolean, true),
        utf8("event_type"),
        utf8("event_category"),
        utf8("request_id"),
        utf8("recipient_account_id"),
        utf8("shared_event_id"),
        utf8("user_type"),
        utf8("user_arn"),
        utf8("user_principal_id"),
        utf8("user_account_id"),
        utf8("user_access_key_id"),
        utf8("user_name"),
        utf8("session_issuer_arn"),
        utf8("session_issuer_type"),
        utf8("session_issuer_account_id"),
        utf8("invoked_by"),
        Field::new("mfa_authenticated", DataType::Boolean, true),
        ts("session_created_at", true),
        utf8("source_identity"),
        utf8("role_arn"),
        utf8("role_session_name"),
        utf8("assumed_role_arn"),
        utf8("assumed_access_key_id"),
        utf8("external_id"),
        utf8("user_identity"),
        utf8("request_parameters"),
        utf8("response_elements"),
        utf8("additional_event_data"),
        utf8("resources"),
        utf8("tls_details"),
        utf8("unmapped"),
    ];
    fields.extend(provenance());
    Arc::new(Schema::new(fields))
});

static MONGODB_AUDIT_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        ts("ts", true),
        utf8("atype"),
        Field::new("result", DataType::Int32, true),
        utf8("user"),
        utf8("user_db"),
        utf8_list("users"),
        utf8_list("roles"),
        utf8("mechanism"),
        utf8("remote_ip"),
        utf8("remote_ip_text"),
        Field::new("remote_port", DataType::Int32, true),
        utf8("local_ip"),
        utf8("local_ip_text"),
        Field::new("local_port", DataType::Int32, true),
        Field::new("is_system_user", DataType::Boolean, true),
        utf8("conn_uuid"),
        utf8("ns"),
        utf8("command"),
        utf8("param"),
        utf8("app_name"),
        utf8("driver"),
        utf8("audit_schema"),
        utf8("project"),
        utf8("cluster"),
        utf8("hostname"),
        utf8("log_type"),
        utf8("unmapped"),
    ];
    fields.extend(provenance());
    Arc::new(Schema::new(fields))
});

static REJECTED_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("source_uri", DataType::Utf8, false),
        Field::new("source_index", DataType::Int64, true),
        utf8("target_table"),
        Field::new("reason", DataType::Utf8, false),
        Field::new("raw", DataType::Binary, true),
        Field::new("raw_size", DataType::Int64, false),
        Field::new("raw_truncated", DataType::Boolean, false),
        ts("ingested_at", false),
    ]))
});

static ALERTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("alert_id", DataType::Utf8, false),
        Field::new("rule_id", DataType::Utf8, false),
        Field::new("severity", DataType::Utf8, false),
        ts("alert_time", false),
        ts("event_time", false),
        Field::new("summary", DataType::Utf8, false),
        utf8("entity"),
        utf8("dedup_key"),
        utf8_list("evidence_event_ids"),
        utf8("evidence"),
    ]))
});

/// The Arrow schema of a table's files, without the partition columns; `None` for an unknown name.
pub fn file_schema(table: &str) -> Option<SchemaRef> {
    match table {
        CLOUDTRAIL => Some(CLOUDTRAIL_SCHEMA.clone()),
        MONGODB_AUDIT => Some(MONGODB_AUDIT_SCHEMA.clone()),
        REJECTED => Some(REJECTED_SCHEMA.clone()),
        ALERTS => Some(ALERTS_SCHEMA.clone()),
        _ => None,
    }
}

/// The column a table is partitioned and sorted by: event time where the table has one.
pub fn time_column(table: &str) -> Option<&'static str> {
    match table {
        CLOUDTRAIL => Some("event_time"),
        MONGODB_AUDIT => Some("ts"),
        REJECTED => Some("ingested_at"),
        ALERTS => Some("event_time"),
        _ => None,
    }
}

/// A Hive partition of a table: one UTC hour, as hours since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Partition {
    hours_since_epoch: i64,
}

impl Partition {
    /// The partition that holds the instant `micros` (microseconds since the Unix epoch, UTC).
    pub fn of_micros(micros: i64) -> Self {
        Partition {
            hours_since_epoch: micros.div_euclid(3_600_000_000),
        }
    }

    /// The first instant of the partition, in microseconds since the Unix epoch.
    pub fn start_micros(&self) -> i64 {
        self.hours_since_epoch * 3_600_000_000
    }

    /// `date=YYYY-MM-DD/hour=HH`, the folder path below the table folder.
    pub fn path(&self) -> String {
        match chrono::DateTime::from_timestamp_micros(self.start_micros()) {
            Some(start) => start.format("date=%Y-%m-%d/hour=%H").to_string(),
            // Out of chrono's range (±262,000 years): decoders never produce such times, but a
            // path must still be well-formed.
            None => "date=unknown/hour=unknown".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_path_of_known_instants() {
        // 2024-02-29T23:59:59Z leap day, and the epoch itself, and a pre-epoch instant.
        assert_eq!(
            Partition::of_micros(1_709_251_199_000_000).path(),
            "date=2024-02-29/hour=23"
        );
        assert_eq!(Partition::of_micros(0).path(), "date=1970-01-01/hour=00");
        assert_eq!(Partition::of_micros(-1).path(), "date=1969-12-31/hour=23");
    }

    #[test]
    fn every_table_has_a_schema_and_time_column() {
        for table in TABLES {
            let schema = file_schema(table).expect("schema");
            let time = time_column(table).expect("time column");
            assert!(schema.field_with_name(time).is_ok(), "{table}.{time}");
        }
        assert!(file_schema("nope").is_none());
    }
}
