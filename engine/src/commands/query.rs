//! `mlfusion query`: register models and tables, run SQL, write or print the result.

use crate::args::QueryArgs;
use crate::error::Result;
use crate::output::{display_path, render_table, write_stream};
use crate::session::{
    model_registrations, new_context, register_models, register_table, split_assignment,
};

/// Runs the query; returns the text to print on stdout.
pub async fn run(args: QueryArgs) -> Result<String> {
    let ctx = new_context(&args.session)?;
    let models = model_registrations(&args.models, &args.result_types, &args.params)?;
    for t in &args.tables {
        let (name, path) = split_assignment("--table", t)?;
        register_table(&ctx, name, path).await?;
    }
    // Loading runs Python: keep it off the async workers.
    let loader_ctx = ctx.clone();
    tokio::task::spawn_blocking(move || register_models(&loader_ctx, &models))
        .await
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))??;
    let df = ctx.sql(&args.sql).await?;
    let stream = df.execute_stream().await?;
    match &args.output {
        Some(path) => {
            let written = write_stream(stream, path).await?;
            Ok(format!(
                "wrote {} row(s) to {}",
                written.rows,
                display_path(path).display()
            ))
        }
        None => render_table(stream).await,
    }
}
