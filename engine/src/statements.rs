//! One SQL statement run as `mlfusion query` runs it (and the Python API's `sql`):
//! `COPY` (to files, object stores and Delta tables: whole or not at all) and DDL run at
//! once; a query is planned, and runs when its rows are read.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement;

use crate::delta::{self, DeltaWrite};
use crate::error::Result;
use crate::session::execute;
use crate::staging::stage_copy;
use crate::stores::with_store_options;

/// A statement made ready to run.
pub enum Prepared {
    /// A query, planned: [`execute`] runs it (drawing a progress bar if asked).
    Query(LogicalPlan),
    /// A statement that has run, and what it answers: the rows a `COPY` wrote, or no
    /// columns at all (DDL).
    Done(SchemaRef, Vec<RecordBatch>),
}

/// Plans `statement`; runs it now unless it is a query. `progress` draws a bar for a
/// `COPY` that scores models.
pub async fn prepare(
    ctx: &SessionContext,
    statement: Statement,
    progress: bool,
) -> Result<Prepared> {
    if let Statement::CopyTo(copy) = &statement
        && let Some((write, input)) = DeltaWrite::from_copy(ctx, copy).await?
    {
        let stream = execute(ctx, input, progress).await?;
        let written = write.write(ctx, stream).await?;
        let counts = delta::count_batch(written.rows)?;
        return Ok(Prepared::Done(counts.schema(), vec![counts]));
    }
    let plan = ctx.state().statement_to_plan(statement).await?;
    let plan = with_store_options(ctx, plan)?;
    delta::refuse_parquet_over_delta(ctx, &plan).await?;
    let is_copy = matches!(plan, LogicalPlan::Copy(_));
    if !is_copy && !plan.schema().fields().is_empty() {
        return Ok(Prepared::Query(plan));
    }
    let (plan, staged) = stage_copy(ctx, plan)?;
    let stream = execute(ctx, plan, progress).await?;
    let schema = stream.schema();
    // DDL and COPY: run to completion; a COPY's files appear whole once it has
    // succeeded, else not at all.
    let answered = datafusion::physical_plan::common::collect(stream).await?;
    if let Some(staged) = staged {
        staged.commit().await?;
    }
    Ok(Prepared::Done(schema, answered))
}
