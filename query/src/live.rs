//! Tables whose rows are read from the running service at query time (not from the lake), such
//! as the delivery state of alerts.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::datasource::{MemTable, TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

/// Produces the current rows of a live table.
pub type Snapshot = Arc<dyn Fn() -> Result<RecordBatch, String> + Send + Sync>;

/// A table that takes a fresh snapshot on every scan.
pub struct LiveTable {
    schema: SchemaRef,
    snapshot: Snapshot,
}

impl std::fmt::Debug for LiveTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTable")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl LiveTable {
    /// `snapshot` must return batches of `schema`.
    pub fn new(schema: SchemaRef, snapshot: Snapshot) -> Self {
        LiveTable { schema, snapshot }
    }
}

#[async_trait::async_trait]
impl TableProvider for LiveTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let batch = (self.snapshot)().map_err(DataFusionError::Execution)?;
        let table = MemTable::try_new(self.schema.clone(), vec![vec![batch]])?;
        table.scan(state, projection, filters, limit).await
    }
}
