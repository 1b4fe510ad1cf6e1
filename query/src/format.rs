//! Query results as bytes: JSON, NDJSON, CSV or Arrow IPC stream.

use arrow::record_batch::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use serde_json::{Map, Value};

use crate::engine::QueryOutput;

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

/// Rows as JSON objects, with Arrow's JSON encoding (timestamps as RFC 3339 text, lists as arrays).
pub fn rows_as_json(
    batches: &[RecordBatch],
) -> Result<Vec<Map<String, Value>>, arrow::error::ArrowError> {
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    writer.write_batches(&refs)?;
    writer.finish()?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&bytes).map_err(|e| arrow::error::ArrowError::JsonError(e.to_string()))
}

/// Encodes a query's rows in `format`.
pub fn encode(output: &QueryOutput, format: Format) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let batches = &output.batches;
    match format {
        Format::Json => {
            let rows = rows_as_json(batches)?;
            let columns: Vec<Value> = output
                .schema
                .fields()
                .iter()
                .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()}))
                .collect();
            let body =
                serde_json::json!({"columns": columns, "row_count": rows.len(), "rows": rows});
            serde_json::to_vec(&body)
                .map_err(|e| arrow::error::ArrowError::JsonError(e.to_string()))
        }
        Format::Ndjson => {
            let mut writer = arrow::json::LineDelimitedWriter::new(Vec::new());
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            writer.write_batches(&refs)?;
            writer.finish()?;
            Ok(writer.into_inner())
        }
        Format::Csv => {
            let mut out = Vec::new();
            {
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                if batches.is_empty() {
                    writer.write(&RecordBatch::new_empty(output.schema.clone()))?;
                }
                for batch in batches {
                    writer.write(batch)?;
                }
            }
            Ok(out)
        }
        Format::Arrow => {
            let mut out = Vec::new();
            {
                let mut writer =
                    arrow::ipc::writer::StreamWriter::try_new(&mut out, &output.schema)?;
                for batch in batches {
                    writer.write(batch)?;
                }
                writer.finish()?;
            }
            Ok(out)
        }
        Format::Table => {
            let mut text = pretty_format_batches(batches)?.to_string();
            text.push('\n');
            Ok(text.into_bytes())
        }
    }
}
