//! `auditlake detect replay`: the configured rules over rows read back from the lake.
//!
//! Rows are read table by table in event-time order (ties by source position) and fed to a fresh
//! engine, so a replay over the lake that a live run wrote raises the same alerts, with the same
//! ids, as the live run did.

use futures::StreamExt;

use auditlake_detect::{Alert, Engine};
use auditlake_query::{QueryEngine, QueryError};
use auditlake_schema as schema;

/// Replay failures.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("reading {table} from the lake: {source}")]
    Read {
        table: &'static str,
        #[source]
        source: QueryError,
    },
}

/// Runs a fresh clone of `rules` over the lake rows with event time in `[since, until)`
/// (microseconds; either bound optional); returns the alerts in the order raised.
pub async fn replay(
    engine: &QueryEngine,
    rules: &Engine,
    since: Option<i64>,
    until: Option<i64>,
) -> Result<Vec<Alert>, ReplayError> {
    let mut rules = rules.clone();
    let now = chrono::Utc::now().timestamp_micros();
    let mut alerts = Vec::new();
    for table in [schema::CLOUDTRAIL, schema::MONGODB_AUDIT] {
        let time = schema::time_column(table).unwrap_or("ingested_at");
        let mut filters = vec!["TRUE".to_owned()];
        if let Some(s) = since {
            filters.push(format!("{time} >= to_timestamp_micros({s})"));
        }
        if let Some(u) = until {
            filters.push(format!("{time} < to_timestamp_micros({u})"));
        }
        let sql = format!(
            "SELECT * FROM {table} WHERE {} ORDER BY {time} NULLS FIRST, source_uri, source_index",
            filters.join(" AND ")
        );
        let read = |source| ReplayError::Read { table, source };
        let mut stream = engine.stream(&sql).await.map_err(read)?;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| read(QueryError::Execution(e.to_string())))?;
            alerts.extend(rules.observe(table, &batch, now));
        }
    }
    Ok(alerts)
}
