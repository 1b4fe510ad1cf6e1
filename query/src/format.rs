//! Query results as bytes: JSON, NDJSON, CSV or Arrow IPC stream, encoded batch by batch.
//!
//! An [`Encoder`] turns a result into bytes as its batches arrive, a slice of rows at a time, and
//! counts every byte it has produced, so a caller can hold the result cap against what it really
//! sends (a short column of long names is a small Arrow batch and a large JSON body) without
//! ever holding the whole body.

use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use arrow::util::pretty::pretty_format_batches;

use crate::engine::QueryOutput;

/// Rows encoded at once: the unit the byte count is checked after.
pub(crate) const SLICE_ROWS: usize = 1024;

/// An output format of `POST /v1/sql` and `auditlake sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `{"columns":[...],"rows":[{...}],"row_count":N}`.
    Json,
    /// One JSON object per row, one per line.
    Ndjson,
    /// RFC 4180 CSV with a header line.
    Csv,
    /// Arrow IPC stream.
    Arrow,
    /// A text table for terminals.
    Table,
}

impl Format {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "json" => Format::Json,
            "ndjson" => Format::Ndjson,
            "csv" => Format::Csv,
            "arrow" => Format::Arrow,
            "table" => Format::Table,
            _ => return None,
        })
    }

    /// The HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Arrow => "application/vnd.apache.arrow.stream",
            Format::Table => "text/plain; charset=utf-8",
        }
    }
}

/// Encodes one result batch by batch; see the module documentation. [`Format::Table`] needs
/// every row to size its columns: it is encoded whole by [`encode`] only.
pub struct Encoder {
    format: Format,
    schema: SchemaRef,
    rows: usize,
    bytes: usize,
    arrow: Option<arrow::ipc::writer::StreamWriter<Vec<u8>>>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("format", &self.format)
            .field("rows", &self.rows)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl Encoder {
    pub fn new(format: Format, schema: SchemaRef) -> Self {
        Encoder {
            format,
            schema,
            rows: 0,
            bytes: 0,
            arrow: None,
        }
    }

    /// Bytes produced so far.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn counted(&mut self, out: Vec<u8>) -> Vec<u8> {
        self.bytes += out.len();
        out
    }

    /// What comes before the first row.
    pub fn begin(&mut self) -> Result<Vec<u8>, ArrowError> {
        let out = match self.format {
            Format::Json => {
                let columns: Vec<serde_json::Value> = self
                    .schema
                    .fields()
                    .iter()
                    .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()}))
                    .collect();
                let columns = serde_json::to_string(&columns)
                    .map_err(|e| ArrowError::JsonError(e.to_string()))?;
                format!("{{\"columns\":{columns},\"rows\":[").into_bytes()
            }
            Format::Csv => {
                let mut out = Vec::new();
                arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out)
                    .write(&RecordBatch::new_empty(self.schema.clone()))?;
                out
            }
            Format::Arrow => {
                let mut writer =
                    arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &self.schema)?;
                let out = std::mem::take(writer.get_mut());
                self.arrow = Some(writer);
                out
            }
            Format::Ndjson | Format::Table => Vec::new(),
        };
        Ok(self.counted(out))
    }

    /// The rows of `batch`: best a slice of at most [`SLICE_ROWS`] (see [`slices`]), so that
    /// the count is checked often.
    pub fn rows(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let out = match self.format {
            Format::Json => {
                let mut writer = arrow::json::WriterBuilder::new()
                    .build::<_, arrow::json::writer::JsonArray>(Vec::new());
                writer.write(batch)?;
                writer.finish()?;
                let array = writer.into_inner();
                // `[{…},{…}]`: the objects, after a comma when rows came before.
                let inner = array
                    .get(1..array.len().saturating_sub(1))
                    .unwrap_or_default();
                let mut out = Vec::with_capacity(inner.len() + 1);
                if self.rows > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(inner);
                out
            }
            Format::Ndjson => {
                let mut writer = arrow::json::LineDelimitedWriter::new(Vec::new());
                writer.write(batch)?;
                writer.finish()?;
                writer.into_inner()
            }
            Format::Csv => {
                let mut out = Vec::new();
                arrow::csv::WriterBuilder::new()
                    .with_header(false)
                    .build(&mut out)
                    .write(batch)?;
                out
            }
            Format::Arrow => match self.arrow.as_mut() {
                Some(writer) => {
                    writer.write(batch)?;
                    std::mem::take(writer.get_mut())
                }
                None => {
                    return Err(ArrowError::InvalidArgumentError(
                        "rows before the stream began".into(),
                    ));
                }
            },
            Format::Table => {
                return Err(ArrowError::InvalidArgumentError(
                    "a table is encoded whole".into(),
                ));
            }
        };
        self.rows += batch.num_rows();
        Ok(self.counted(out))
    }

    /// What comes after the last row.
    pub fn finish(&mut self) -> Result<Vec<u8>, ArrowError> {
        let out = match self.format {
            Format::Json => format!("],\"row_count\":{}}}", self.rows).into_bytes(),
            Format::Arrow => match self.arrow.as_mut() {
                Some(writer) => {
                    writer.finish()?;
                    std::mem::take(writer.get_mut())
                }
                None => Vec::new(),
            },
            Format::Ndjson | Format::Csv | Format::Table => Vec::new(),
        };
        Ok(self.counted(out))
    }
}

/// A batch cut into slices of at most [`SLICE_ROWS`] rows (zero-copy), the unit of encoding.
pub fn slices(batch: &RecordBatch) -> impl Iterator<Item = RecordBatch> + '_ {
    (0..batch.num_rows())
        .step_by(SLICE_ROWS)
        .map(move |offset| batch.slice(offset, SLICE_ROWS.min(batch.num_rows() - offset)))
}

/// Encodes a whole result in `format` (the command line's output).
pub fn encode(output: &QueryOutput, format: Format) -> Result<Vec<u8>, ArrowError> {
    if format == Format::Table {
        let mut text = pretty_format_batches(&output.batches)?.to_string();
        text.push('\n');
        return Ok(text.into_bytes());
    }
    let mut encoder = Encoder::new(format, output.schema.clone());
    let mut out = encoder.begin()?;
    for batch in &output.batches {
        for slice in slices(batch) {
            out.extend(encoder.rows(&slice)?);
        }
    }
    out.extend(encoder.finish()?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn output(batches: usize, rows: i64) -> QueryOutput {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batches = (0..batches)
            .map(|b| {
                let n: Vec<i64> = (0..rows).map(|r| b as i64 * rows + r).collect();
                let s: Vec<Option<String>> = n
                    .iter()
                    .map(|v| (v % 2 == 0).then(|| format!("\"v{v}\",\n")))
                    .collect();
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(Int64Array::from(n)),
                        Arc::new(StringArray::from(s)),
                    ],
                )
                .expect("batch")
            })
            .collect();
        QueryOutput { schema, batches }
    }

    #[test]
    fn json_is_one_document_with_every_row_and_its_count() {
        for (batches, rows) in [(0, 0), (1, 0), (1, 1), (3, 2500)] {
            let out = output(batches, rows);
            let bytes = encode(&out, Format::Json).expect("encode");
            let doc: serde_json::Value = serde_json::from_slice(&bytes).expect("valid JSON");
            let expected = batches * rows as usize;
            assert_eq!(doc["row_count"], expected);
            assert_eq!(doc["rows"].as_array().expect("rows").len(), expected);
            assert_eq!(doc["columns"][1]["name"], "s");
            if expected > 0 {
                assert_eq!(doc["rows"][0]["s"], "\"v0\",\n");
                assert!(doc["rows"][1].get("s").is_none(), "nulls are left out");
                assert_eq!(doc["rows"][expected - 1]["n"], expected as i64 - 1);
            }
        }
    }

    #[test]
    fn every_format_counts_the_bytes_it_produced() {
        let out = output(2, 3000);
        for format in [Format::Json, Format::Ndjson, Format::Csv, Format::Arrow] {
            let mut encoder = Encoder::new(format, out.schema.clone());
            let mut total = encoder.begin().expect("begin").len();
            for batch in &out.batches {
                for slice in slices(batch) {
                    assert!(slice.num_rows() <= SLICE_ROWS);
                    total += encoder.rows(&slice).expect("rows").len();
                }
            }
            total += encoder.finish().expect("finish").len();
            assert_eq!(encoder.bytes(), total, "{format:?}");
            assert_eq!(
                encode(&out, format).expect("whole").len(),
                total,
                "{format:?}"
            );
        }
        let csv = String::from_utf8(encode(&out, Format::Csv).expect("csv")).expect("text");
        assert!(csv.starts_with("n,s\n"));
        let arrow = encode(&out, Format::Arrow).expect("arrow");
        let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(arrow), None)
            .expect("ipc");
        let rows: usize = reader.map(|b| b.expect("batch").num_rows()).sum();
        assert_eq!(rows, 6000);
    }
}
