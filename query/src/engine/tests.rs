//! Tests of the engine: statistics kept between queries, vanished files, the heap watch.
use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray, new_null_array};
use datafusion::parquet::arrow::ArrowWriter;

use super::execute::vanished_file;
use super::*;

#[test]
fn a_listed_file_not_found_is_told_from_other_failures() {
    use datafusion::parquet::errors::ParquetError;
    let not_found = || object_store::Error::NotFound {
        path: "cloudtrail/date=2026-11-01/hour=00/a.parquet".into(),
        source: "No such file or directory".into(),
    };
    let through_parquet =
        DataFusionError::ParquetError(Box::new(ParquetError::External(Box::new(not_found()))));
    assert!(vanished_file(&through_parquet));
    assert!(vanished_file(&DataFusionError::ObjectStore(Box::new(
        not_found()
    ))));
    assert!(vanished_file(&DataFusionError::Context(
        "scanning".into(),
        Box::new(through_parquet)
    )));

    let unreadable = object_store::Error::Generic {
        store: "LocalReads",
        source: "permission denied".into(),
    };
    assert!(!vanished_file(&DataFusionError::ParquetError(Box::new(
        ParquetError::External(Box::new(unreadable))
    ))));
    assert!(!vanished_file(&DataFusionError::Execution(
        "Object at location x not found".into()
    )));
}

/// Writes a `cloudtrail` file of one row per event name into the lake's first hour.
fn write_cloudtrail_file(lake: &Path, name: &str, event_names: &[&str]) {
    let schema = schema::file_schema(schema::CLOUDTRAIL).expect("schema");
    let rows = event_names.len();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| -> ArrayRef {
            match field.name().as_str() {
                "event_name" => Arc::new(StringArray::from(event_names.to_vec())),
                "event_time" | "ingested_at" => {
                    Arc::new(TimestampMicrosecondArray::from(vec![0; rows]).with_timezone("UTC"))
                }
                "source_uri" => Arc::new(StringArray::from(vec!["test://object"; rows])),
                "source_index" => Arc::new(Int64Array::from_iter_values(0..rows as i64)),
                _ if field.is_nullable() => new_null_array(field.data_type(), rows),
                other => panic!("no test value for non-null column {other}"),
            }
        })
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), columns).expect("batch");
    let dir = lake.join("cloudtrail/date=1970-01-01/hour=00");
    std::fs::create_dir_all(&dir).expect("partition folder");
    let file = std::fs::File::create(dir.join(name)).expect("file");
    let mut writer = ArrowWriter::try_new(file, schema, None).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
}

async fn count(engine: &QueryEngine, sql: &str) -> i64 {
    let output = engine.query(sql).await.expect("query");
    let column = output.batches[0].column(0);
    column
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("a count")
        .value(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_statistics_are_kept_between_queries_and_new_files_still_seen() {
    let lake = tempfile::tempdir().expect("tempdir");
    let engine = QueryEngine::open(lake.path()).await.expect("engine");
    let cache = engine
        .ctx
        .runtime_env()
        .cache_manager
        .get_file_statistic_cache()
        .expect("a file statistics cache");
    let sql = "SELECT count(*) FROM cloudtrail WHERE event_name = 'AssumeRole'";

    write_cloudtrail_file(lake.path(), "a.parquet", &["AssumeRole", "GetObject"]);
    assert_eq!(count(&engine, sql).await, 1);
    assert_eq!(cache.len(), 1, "the first file's statistics are kept");

    write_cloudtrail_file(lake.path(), "b.parquet", &["AssumeRole"]);
    assert_eq!(count(&engine, sql).await, 2, "a file added later is read");
    assert_eq!(cache.len(), 2);
    assert_eq!(count(&engine, sql).await, 2);
    assert_eq!(cache.len(), 2, "statistics are not read again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_queries_are_stopped_when_the_heap_passes_its_bound_and_later_ones_run() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let lake = tempfile::tempdir().expect("tempdir");
    let engine = QueryEngine::open(lake.path()).await.expect("engine");
    let heap = Arc::new(AtomicUsize::new(0));
    let gauge = heap.clone();
    engine
        .watch_memory(Arc::new(move || Some(gauge.load(Ordering::SeqCst))), 1000)
        .expect("watch");
    let endless = engine.clone();
    let running = tokio::spawn(async move {
        endless
            .query("SELECT count(*) FROM range(1000000000000)")
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!running.is_finished(), "the query runs");
    heap.store(1001, Ordering::SeqCst);
    let stopped = tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("stopped at once")
        .expect("task");
    match stopped {
        Err(QueryError::Memory { message, .. }) => {
            assert!(message.contains("heap"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    heap.store(10, Ordering::SeqCst);
    assert_eq!(count(&engine, "SELECT count(*) FROM range(10)").await, 10);
}
