//! The durable outbox: one row per (sink, alert), in the service's redb database.
//!
//! [`enqueue`] runs inside the ledger transaction that commits the alert's source object, so an
//! alert is queued exactly when its evidence is committed. Enqueueing an alert that is already
//! queued changes nothing (a redo does not re-deliver what was delivered). The deliverer moves
//! each row from `pending` to `delivered` (or `failed` after the give-up age).

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::alert::Alert;
use crate::engine::EngineState;

const OUTBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("alert_outbox");
const DETECT_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("detect_state");
const ENGINE_KEY: &str = "engine";

/// Where one alert stands with one sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }
}

/// One outbox row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub sink: String,
    pub alert: Alert,
    pub state: DeliveryState,
    pub attempts: u32,
    pub enqueued_at_micros: i64,
    pub next_attempt_micros: i64,
    pub delivered_at_micros: Option<i64>,
    pub last_error: Option<String>,
}

impl Delivery {
    fn key(&self) -> String {
        key(&self.sink, &self.alert.alert_id)
    }
}

fn key(sink: &str, alert_id: &str) -> String {
    format!("{sink}\u{1f}{alert_id}")
}

fn corrupt(e: serde_json::Error) -> redb::Error {
    redb::Error::Corrupted(format!("outbox row: {e}"))
}

/// Creates the tables, so readers never meet a missing one.
pub fn create_tables(tx: &WriteTransaction) -> Result<(), redb::Error> {
    tx.open_table(OUTBOX)?;
    tx.open_table(DETECT_STATE)?;
    Ok(())
}

/// Queues `alerts` for each sink whose filter takes them; already queued pairs are left alone.
pub fn enqueue(
    tx: &WriteTransaction,
    alerts: &[Alert],
    sinks_for: &dyn Fn(&Alert) -> Vec<String>,
    now_micros: i64,
) -> Result<usize, redb::Error> {
    let mut table = tx.open_table(OUTBOX)?;
    let mut queued = 0;
    for alert in alerts {
        for sink in sinks_for(alert) {
            let k = key(&sink, &alert.alert_id);
            if table.get(k.as_str())?.is_some() {
                continue;
            }
            let row = Delivery {
                sink,
                alert: alert.clone(),
                state: DeliveryState::Pending,
                attempts: 0,
                enqueued_at_micros: now_micros,
                next_attempt_micros: now_micros,
                delivered_at_micros: None,
                last_error: None,
            };
            let bytes = serde_json::to_vec(&row).map_err(corrupt)?;
            table.insert(k.as_str(), bytes.as_slice())?;
            queued += 1;
        }
    }
    Ok(queued)
}

/// Saves the engine state (inside the ledger transaction).
pub fn save_state(tx: &WriteTransaction, state: &EngineState) -> Result<(), redb::Error> {
    let bytes = serde_json::to_vec(state).map_err(corrupt)?;
    tx.open_table(DETECT_STATE)?
        .insert(ENGINE_KEY, bytes.as_slice())?;
    Ok(())
}

/// The saved engine state, if any.
pub fn load_state(db: &Database) -> Result<Option<EngineState>, redb::Error> {
    let tx = db.begin_read()?;
    let table = match tx.open_table(DETECT_STATE) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    match table.get(ENGINE_KEY)? {
        Some(bytes) => Ok(Some(
            serde_json::from_slice(bytes.value()).map_err(corrupt)?,
        )),
        None => Ok(None),
    }
}

/// Every outbox row (for the `alert_deliveries` table and status).
pub fn all(db: &Database) -> Result<Vec<Delivery>, redb::Error> {
    let tx = db.begin_read()?;
    let table = match tx.open_table(OUTBOX) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for item in table.iter()? {
        let (_, value) = item?;
        out.push(serde_json::from_slice(value.value()).map_err(corrupt)?);
    }
    Ok(out)
}

/// Pending rows due at `now_micros`, and the earliest future attempt among the others.
pub fn due(db: &Database, now_micros: i64) -> Result<(Vec<Delivery>, Option<i64>), redb::Error> {
    let mut ready = Vec::new();
    let mut next = None;
    for row in all(db)? {
        if row.state != DeliveryState::Pending {
            continue;
        }
        if row.next_attempt_micros <= now_micros {
            ready.push(row);
        } else {
            next = Some(next.map_or(row.next_attempt_micros, |n: i64| {
                n.min(row.next_attempt_micros)
            }));
        }
    }
    ready.sort_by_key(|r| (r.alert.event_time_micros, r.alert.alert_id.clone()));
    Ok((ready, next))
}

/// Stores the new state of a row.
pub fn update(db: &Database, row: &Delivery) -> Result<(), redb::Error> {
    let tx = db.begin_write()?;
    {
        let bytes = serde_json::to_vec(row).map_err(corrupt)?;
        tx.open_table(OUTBOX)?
            .insert(row.key().as_str(), bytes.as_slice())?;
    }
    tx.commit()?;
    Ok(())
}
