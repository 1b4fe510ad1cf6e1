//! The `alert_deliveries` table: the outbox as rows, read live at query time.

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use auditlake_detect::store::Store;

use auditlake_detect::outbox;
use auditlake_query::QueryEngine;
use auditlake_query::live::LiveTable;
use auditlake_schema::timestamp_type;

/// Name of the table.
pub const TABLE: &str = "alert_deliveries";

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("alert_id", DataType::Utf8, false),
        Field::new("rule_id", DataType::Utf8, false),
        Field::new("sink", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("attempts", DataType::Int64, false),
        Field::new("enqueued_at", timestamp_type(), false),
        Field::new("next_attempt_at", timestamp_type(), true),
        Field::new("delivered_at", timestamp_type(), true),
        Field::new("last_error", DataType::Utf8, true),
    ]))
});

fn snapshot(db: &Store) -> Result<RecordBatch, String> {
    let rows = auditlake_detect::deliver::deliveries(db)
        .map_err(|e| format!("reading the alert outbox: {e}"))?;
    let mut alert_id = StringBuilder::new();
    let mut rule_id = StringBuilder::new();
    let mut sink = StringBuilder::new();
    let mut state = StringBuilder::new();
    let mut attempts = Int64Builder::new();
    let ts = || TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let (mut enqueued, mut next, mut delivered) = (ts(), ts(), ts());
    let mut last_error = StringBuilder::new();
    for row in &rows {
        alert_id.append_value(&row.alert.alert_id);
        rule_id.append_value(&row.alert.rule_id);
        sink.append_value(&row.sink);
        state.append_value(row.state.as_str());
        attempts.append_value(i64::from(row.attempts));
        enqueued.append_value(row.enqueued_at_micros);
        let pending = row.state == outbox::DeliveryState::Pending;
        next.append_option(pending.then_some(row.next_attempt_micros));
        delivered.append_option(row.delivered_at_micros);
        last_error.append_option(row.last_error.as_deref());
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(alert_id.finish()),
        Arc::new(rule_id.finish()),
        Arc::new(sink.finish()),
        Arc::new(state.finish()),
        Arc::new(attempts.finish()),
        Arc::new(enqueued.finish()),
        Arc::new(next.finish()),
        Arc::new(delivered.finish()),
        Arc::new(last_error.finish()),
    ];
    RecordBatch::try_new(SCHEMA.clone(), columns).map_err(|e| e.to_string())
}

/// Registers `alert_deliveries` in `engine`, reading `db` on every query.
pub fn register(engine: &QueryEngine, db: Arc<Store>) -> Result<(), auditlake_query::QueryError> {
    engine.register_live(
        TABLE,
        LiveTable::new(SCHEMA.clone(), Arc::new(move || snapshot(&db))),
    )
}
