//! How each lake table's Parquet files are encoded: dictionaries, compression, statistics and
//! bloom filters per column, and the row group size. Chosen for the questions audits ask
//! (filters on a few columns, look-ups by id, time ranges); docs/performance.md measures them.

use arrow::datatypes::{DataType, Schema};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

/// Columns whose values are (nearly) unique per row: no dictionary encoding.
const NEARLY_UNIQUE_COLUMNS: [&str; 16] = [
    "event_time",
    "event_id",
    "user_principal_id",
    "user_access_key_id",
    "request_id",
    "shared_event_id",
    "assumed_access_key_id",
    "user_identity",
    "request_parameters",
    "response_elements",
    "additional_event_data",
    "resources",
    "tls_details",
    "source_index",
    "ts",
    "param",
];

/// Free-form JSON text columns: searched with LIKE or JSON functions, never by range, so their
/// min/max statistics would cost a comparison of every value and prune nothing.
const JSON_TEXT_COLUMNS: [&str; 10] = [
    "user_identity",
    "request_parameters",
    "response_elements",
    "additional_event_data",
    "resources",
    "tls_details",
    "unmapped",
    "param",
    "raw",
    "decode_note",
];

/// Columns of random identifiers, free text, and text as written beside a typed column: a
/// page's min and max span nearly every value, so their statistics would cost a comparison of
/// every value and prune nothing (event and connection ids are found through bloom filters,
/// addresses through the typed `*_ip` columns).
const UNORDERED_COLUMNS: [&str; 12] = [
    "event_id",
    "request_id",
    "shared_event_id",
    "user_principal_id",
    "user_access_key_id",
    "assumed_access_key_id",
    "user_agent",
    "conn_uuid",
    "users",
    "roles",
    "remote_ip_text",
    "local_ip_text",
];

/// Event time columns: rows come in (nearly) time order, so the differences between neighbours
/// are small and bit-pack into about as few bytes as zstd makes of them, and a reader unpacks
/// them much faster than it inflates zstd.
const EVENT_TIME_COLUMNS: [&str; 2] = ["event_time", "ts"];

/// Text columns with many values per file (a dictionary that may not fit), kept compressed.
const MANY_VALUED_COLUMNS: [&str; 3] = ["conn_uuid", "user_agent", "source_uri"];

/// Rows per Parquet row group.
pub(super) const ROW_GROUP_ROWS: usize = 128 * 1024;

/// The Parquet path of the values of column `name`: the column itself, or a list's items.
fn leaf_path(schema: &Schema, name: &str) -> Option<ColumnPath> {
    let (_, field) = schema.column_with_name(name)?;
    Some(match field.data_type() {
        DataType::List(item) => ColumnPath::new(vec![
            name.to_owned(),
            "list".to_owned(),
            item.name().clone(),
        ]),
        _ => ColumnPath::from(name),
    })
}

/// The writer properties of a file of `schema`.
pub(super) fn properties(schema: &Schema) -> WriterProperties {
    // A file holds several objects' rows, each in its own order: no sorting columns are
    // declared; page statistics still bound each page's times.
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
    // A dictionary pays off for repeated values (sources, names, principals, addresses); for
    // columns nearly unique per row it is built, overflows and is thrown away for every page.
    for column in NEARLY_UNIQUE_COLUMNS {
        if schema.column_with_name(column).is_some() {
            builder = builder.set_column_dictionary_enabled(column.into(), false);
        }
    }
    // A dictionary-encoded text column is small integers already: compressing it again saves
    // little, and every reader of every column chunk would pay for a zstd context.
    for field in schema.fields() {
        let name = field.name().as_str();
        if field.data_type() == &DataType::Utf8
            && !NEARLY_UNIQUE_COLUMNS.contains(&name)
            && !JSON_TEXT_COLUMNS.contains(&name)
            && !MANY_VALUED_COLUMNS.contains(&name)
        {
            builder = builder.set_column_compression(name.into(), Compression::UNCOMPRESSED);
        }
    }
    for column in EVENT_TIME_COLUMNS {
        if schema.column_with_name(column).is_some() {
            builder = builder
                .set_column_encoding(column.into(), Encoding::DELTA_BINARY_PACKED)
                .set_column_compression(column.into(), Compression::UNCOMPRESSED);
        }
    }
    for column in JSON_TEXT_COLUMNS.iter().chain(&UNORDERED_COLUMNS) {
        if let Some(path) = leaf_path(schema, column) {
            builder = builder.set_column_statistics_enabled(path, EnabledStatistics::None);
        }
    }
    // Point look-ups by id otherwise scan every row group.
    for id_column in ["event_id", "conn_uuid"] {
        if schema.column_with_name(id_column).is_some() {
            builder = builder.set_column_bloom_filter_enabled(id_column.into(), true);
        }
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;
    use crate::lake::fixtures::*;
    use auditlake_schema as schema;

    #[test]
    fn unordered_and_json_text_columns_have_no_statistics_and_the_others_page_statistics() {
        for table in [schema::CLOUDTRAIL, schema::MONGODB_AUDIT] {
            let arrow_schema = schema::file_schema(table).expect("schema");
            let props = properties(&arrow_schema);
            let parquet_schema = parquet::arrow::ArrowSchemaConverter::new()
                .convert(&arrow_schema)
                .expect("parquet schema");
            let mut without = Vec::new();
            for leaf in parquet_schema.columns() {
                let root = leaf.path().parts()[0].as_str();
                let expected =
                    if UNORDERED_COLUMNS.contains(&root) || JSON_TEXT_COLUMNS.contains(&root) {
                        without.push(root.to_owned());
                        EnabledStatistics::None
                    } else {
                        EnabledStatistics::Page
                    };
                assert_eq!(
                    props.statistics_enabled(leaf.path()),
                    expected,
                    "{}",
                    leaf.path()
                );
            }
            assert!(without.len() >= 5, "{table}: {without:?}");
        }
        let audit = schema::file_schema(schema::MONGODB_AUDIT).expect("schema");
        let users = leaf_path(&audit, "users").expect("users");
        assert_eq!(users.parts().len(), 3, "a list's items: {users}");
    }

    #[test]
    fn event_times_are_delta_encoded_and_not_compressed() {
        use parquet::schema::types::ColumnPath;
        for (table, time) in [
            (schema::CLOUDTRAIL, "event_time"),
            (schema::MONGODB_AUDIT, "ts"),
        ] {
            let props = properties(&schema::file_schema(table).expect("schema"));
            let time = ColumnPath::from(time);
            assert_eq!(props.encoding(&time), Some(Encoding::DELTA_BINARY_PACKED));
            assert_eq!(props.compression(&time), Compression::UNCOMPRESSED);
            assert!(!props.dictionary_enabled(&time));
            let source_uri = ColumnPath::from("source_uri");
            assert_eq!(props.encoding(&source_uri), None, "{table}");
            assert!(matches!(
                props.compression(&source_uri),
                Compression::ZSTD(_)
            ));
        }
    }

    #[test]
    fn dictionary_text_columns_are_stored_uncompressed_and_the_others_compressed() {
        let (dir, writer) = local_lake();
        let mut group = writer.open_group("g".into());
        group
            .append(schema::REJECTED, &rows("a", &[500_000, 500_000]), 0)
            .expect("append");
        group.finish().expect("finish").publish().expect("publish");
        let files = parquet_files(dir.path());
        let file = File::open(dir.path().join(&files[0])).expect("open");
        let reader = ParquetRecordBatchReaderBuilder::try_new(file).expect("reader");
        let metadata = reader.metadata().row_group(0);
        let table = schema::file_schema(schema::REJECTED).expect("schema");
        let mut uncompressed = 0;
        for (field, column) in table.fields().iter().zip(metadata.columns()) {
            let name = field.name().as_str();
            let dictionary_text = field.data_type() == &DataType::Utf8
                && ![
                    &NEARLY_UNIQUE_COLUMNS[..],
                    &JSON_TEXT_COLUMNS[..],
                    &MANY_VALUED_COLUMNS[..],
                ]
                .concat()
                .contains(&name);
            let expected = if dictionary_text {
                uncompressed += 1;
                Compression::UNCOMPRESSED
            } else {
                Compression::ZSTD(ZstdLevel::try_new(1).expect("level"))
            };
            assert_eq!(column.compression(), expected, "{name}");
        }
        assert!(uncompressed > 0, "the table has dictionary text columns");
    }
}
