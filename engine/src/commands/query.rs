//! `mlfusion query`: register models and tables, run SQL statements (`-c`, `-f`, and the
//! positional SQL, in that order), print their results or write the last one to a file.

use datafusion::sql::parser::DFParser;

use crate::args::QueryArgs;
use crate::error::{Error, Result};
use crate::output::{Format, display_path, render, write_stream};
use crate::session::{
    load_models, model_registrations, new_context, register_table, split_assignment,
};

/// Runs the statements; returns the text to print on stdout.
pub async fn run(args: QueryArgs) -> Result<String> {
    let mut scripts = args.commands.clone();
    for file in &args.files {
        let text = std::fs::read_to_string(file).map_err(|source| Error::Read {
            path: file.clone(),
            source,
        })?;
        scripts.push(text);
    }
    scripts.extend(args.sql.clone());
    if scripts.is_empty() {
        return Err(Error::BadArgument {
            flag: "query",
            value: String::new(),
            message: "no SQL given\nhint: mlfusion query \"SELECT ...\", -c SQL or -f FILE.sql"
                .into(),
        });
    }
    let ctx = new_context(&args.session)?;
    let models = model_registrations(&args.models, &args.result_types, &args.params)?;
    for t in &args.tables {
        let (name, path) = split_assignment("--table", t)?;
        register_table(&ctx, name, path).await?;
    }
    load_models(&ctx, models).await?;

    let statements = scripts
        .iter()
        .map(|s| DFParser::parse_sql(s).map_err(Error::from))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
    let last = statements.len().saturating_sub(1);
    let mut printed = Vec::new();
    for (i, statement) in statements.into_iter().enumerate() {
        let plan = ctx.state().statement_to_plan(statement).await?;
        let returns_rows = !plan.schema().fields().is_empty();
        let stream = ctx
            .execute_logical_plan(plan)
            .await?
            .execute_stream()
            .await?;
        match (&args.output, i == last) {
            (Some(path), true) => {
                let written = write_stream(stream, path, args.format).await?;
                printed.push(format!(
                    "wrote {} row(s) to {}",
                    written.rows,
                    display_path(path).display()
                ));
            }
            _ if returns_rows => {
                printed.push(render(stream, args.format.unwrap_or(Format::Table)).await?)
            }
            _ => drain(stream).await?,
        }
    }
    Ok(printed.join("\n"))
}

/// Runs a statement that returns no rows (DDL, COPY) to completion.
async fn drain(stream: datafusion::physical_plan::SendableRecordBatchStream) -> Result<()> {
    datafusion::physical_plan::common::collect(stream).await?;
    Ok(())
}
