//! The alert model, and alerts as rows of the `alerts` table.

use std::sync::Arc;

use arrow::array::{ArrayRef, ListBuilder, StringBuilder, TimestampMicrosecondBuilder};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use auditlake_schema as schema;

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// Where a piece of evidence is in the lake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// CloudTrail `eventID`, when the row has one.
    pub event_id: Option<String>,
    /// The source object of the row.
    pub source_uri: String,
    /// Line number or record index in that object.
    pub source_index: i64,
    /// Event time, microseconds since the epoch.
    pub event_time_micros: i64,
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// `sha256(rule_id, dedup_key)`: the same finding always has the same id, live or replayed.
    pub alert_id: String,
    /// Stable rule id, as used in the config.
    pub rule_id: String,
    pub severity: Severity,
    /// Event time of the evidence that raised it (the latest one), microseconds.
    pub event_time_micros: i64,
    /// When this process raised it, microseconds.
    pub alert_time_micros: i64,
    /// Who: the principal ARN or database user.
    pub entity: String,
    /// One line a human can act on.
    pub summary: String,
    /// Findings with the same key within the rule's window are one alert.
    pub dedup_key: String,
    pub evidence: Vec<Evidence>,
}

/// An alert id from its rule and de-duplication key.
pub fn alert_id(rule_id: &str, dedup_key: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(rule_id.as_bytes());
    hash.update([0]);
    hash.update(dedup_key.as_bytes());
    hash.finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a rule found, before the engine de-duplicates it and stamps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub entity: String,
    pub summary: String,
    pub dedup_key: String,
    pub evidence: Vec<Evidence>,
}

/// Alerts as a batch of the `alerts` table.
pub fn to_batch(alerts: &[Alert]) -> Result<RecordBatch, ArrowError> {
    let schema = schema::file_schema(schema::ALERTS)
        .ok_or_else(|| ArrowError::SchemaError("no alerts schema".into()))?;
    let text = |value: &dyn Fn(&Alert) -> String| -> ArrayRef {
        let mut b = StringBuilder::new();
        for a in alerts {
            b.append_value(value(a));
        }
        Arc::new(b.finish())
    };
    let time = |value: &dyn Fn(&Alert) -> i64| -> ArrayRef {
        let mut b = TimestampMicrosecondBuilder::new().with_timezone("UTC");
        for a in alerts {
            b.append_value(value(a));
        }
        Arc::new(b.finish())
    };
    let item = match schema.field_with_name("evidence_event_ids")?.data_type() {
        arrow::datatypes::DataType::List(item) => item.clone(),
        other => {
            return Err(ArrowError::SchemaError(format!(
                "evidence_event_ids is {other}"
            )));
        }
    };
    let mut ids = ListBuilder::new(StringBuilder::new()).with_field(item);
    for a in alerts {
        for id in a.evidence.iter().filter_map(|e| e.event_id.as_deref()) {
            ids.values().append_value(id);
        }
        ids.append(true);
    }
    let columns = vec![
        text(&|a| a.alert_id.clone()),
        text(&|a| a.rule_id.clone()),
        text(&|a| a.severity.as_str().to_owned()),
        time(&|a| a.alert_time_micros),
        time(&|a| a.event_time_micros),
        text(&|a| a.summary.clone()),
        text(&|a| a.entity.clone()),
        text(&|a| a.dedup_key.clone()),
        Arc::new(ids.finish()) as ArrayRef,
        text(&|a| serde_json::to_string(&a.evidence).unwrap_or_default()),
    ];
    RecordBatch::try_new(schema, columns)
}
