//! Every default of the configuration, stated once: the file's validation and the command line
//! (`auditlake ingest s3://...`) both read them from here. Defaults that belong to another
//! module's type (decode limits, query and connection limits, AWS retries) stay with that type
//! and are read through its `Default`.

use std::time::Duration;

/// Lake root when `lake` is not set.
pub const LAKE: &str = "lake";
/// State folder of a lake on S3 when `state_dir` is not set (a local lake keeps it inside).
pub const S3_LAKE_STATE_DIR: &str = "auditlake-state";
/// Folder inside a local lake that holds its state when `state_dir` is not set.
pub const LOCAL_STATE_SUBDIR: &str = "_state";

/// `http.listen`: loopback only.
pub const HTTP_LISTEN: &str = "127.0.0.1:7080";
/// `http.token_env`: the environment variable holding the bearer token.
pub const TOKEN_ENV: &str = "AUDITLAKE_HTTP_TOKEN";

/// `ingest.poll_interval`.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// `ingest.settle`.
pub const SETTLE: Duration = Duration::from_secs(1);
/// `ingest.commit_rows`.
pub const COMMIT_ROWS: usize = crate::pipeline::GROUP_MAX_ROWS;
/// `ingest.event_id_retention`.
pub const EVENT_ID_RETENTION: Duration = crate::pipeline::EVENT_ID_RETENTION;
/// Shortest `ingest.event_id_retention`: CloudTrail's repeats come within the hour.
pub const MIN_EVENT_ID_RETENTION: Duration = Duration::from_secs(3600);
/// Smallest `ingest.max_record_bytes`.
pub const MIN_RECORD_BYTES: usize = 1024;

/// `kind` of an S3 source: by key layout.
pub const S3_KIND: &str = "auto";
/// `queue_wait` of an S3 source: SQS's longest long poll.
pub const QUEUE_WAIT: Duration = Duration::from_secs(20);
/// `reconcile_interval` of an S3 source with a queue.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// `look_back` of an S3 source.
pub const LOOK_BACK: Duration = Duration::from_secs(3600);

/// `overlap` of a CloudWatch Logs source.
pub const OVERLAP: Duration = Duration::from_secs(300);
/// `start` of a CloudWatch Logs source: how far back a group read for the first time begins.
pub const START: Duration = Duration::from_secs(86_400);
/// `max_events` of a CloudWatch Logs source.
pub const MAX_EVENTS: usize = 10_000;
/// Largest `page_size` of a CloudWatch Logs source (the service's own limit).
pub const MAX_PAGE_SIZE: i32 = 10_000;

/// `alerts.give_up_after`.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(86_400);
/// `sql.max_heap_bytes` is `sql.memory_limit` plus this.
pub const HEAP_ABOVE_QUERY_MEMORY: usize = 1 << 30;

/// `ingest.concurrency`: the number of cores.
pub fn concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}
