//! `mlfusion query`: register models and tables, run SQL statements (`-c`, `-f`, and the
//! positional SQL, in that order), print their results or write the last one to a file.
//! Without SQL it reads statements from stdin: interactively (a REPL) on a terminal.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Read};
use std::time::Instant;

use datafusion::physical_plan::memory::MemoryStream;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParser, Statement};
use mlfusion_udf::{PyModelUdf, process_metrics};
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use crate::args::{QueryArgs, split_assignment};
use crate::error::{Error, Result};
use crate::output::{Format, Target, print_result, render};
use crate::progress;
use crate::registration::{load_models, model_registrations};
use crate::session::{execute, new_context};
use crate::statements::{Prepared, prepare};
use crate::tables::register_table;

/// Runs the statements; returns the text to print on stdout. Ctrl-C or SIGTERM cancels
/// the run (an interactive session: the statement running), leaving no partial output.
pub async fn run(args: QueryArgs) -> Result<String> {
    args.session
        .limits
        .apply(crate::args::worker_count(args.session.workers))?;
    let interactive = args.commands.is_empty()
        && args.files.is_empty()
        && args.sql.is_none()
        && std::io::stdin().is_terminal();
    if interactive {
        return run_statements(args).await;
    }
    tokio::select! {
        result = run_statements(args) => result,
        signal = super::stop_signal() => Err(Error::Interrupted(signal)),
    }
}

async fn run_statements(args: QueryArgs) -> Result<String> {
    let mut scripts = args.commands.clone();
    for file in &args.files {
        let text = std::fs::read_to_string(file).map_err(|source| Error::Read {
            path: file.clone(),
            source,
        })?;
        scripts.push(text);
    }
    scripts.extend(args.sql.clone());
    let interactive = scripts.is_empty() && std::io::stdin().is_terminal();
    if scripts.is_empty() && !interactive {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|source| Error::Read {
                path: "<stdin>".into(),
                source,
            })?;
        scripts.push(text);
    }
    let ctx = new_context(&args.session)?;
    let models = model_registrations(
        &args.models,
        &args.result_types,
        &args.params,
        &args.on_errors,
        &args.load,
    )?;
    for t in &args.tables {
        let (name, path) = split_assignment("--table", t)?;
        register_table(&ctx, name, path).await?;
    }
    let started = Instant::now();
    load_models(&ctx, &args.session.model_loader(), models).await?;
    timing(&args, "models loaded", started);
    let runner = Runner {
        ctx,
        args: &args,
        progress: progress::wanted(args.session.quiet),
    };
    if interactive {
        return runner.repl().await;
    }
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
        let started = Instant::now();
        printed.extend(runner.run(statement, i == last).await?);
        timing(&args, &format!("statement {} ran", i + 1), started);
    }
    if args.timing {
        model_counters(&runner.ctx);
    }
    Ok(printed.join("\n"))
}

/// `--timing`: the counters of every model of the session (those `serve
/// --metrics-addr` exposes), and of environments.
#[allow(clippy::print_stderr)]
fn model_counters(ctx: &SessionContext) {
    let names: BTreeSet<String> = ctx
        .state()
        .scalar_functions()
        .values()
        .filter_map(|udf| PyModelUdf::of(udf))
        .map(|udf| udf.scorer().model().name().to_owned())
        .collect();
    let metrics = process_metrics();
    for name in names {
        eprintln!("mlfusion: {}", metrics.summary(&name));
    }
    let [built, reused, failed] = metrics.env_counts();
    eprintln!("mlfusion: environments built {built}, reused {reused}, failed {failed}");
}

/// `--timing`: "mlfusion: WHAT in 1.234 s" on stderr.
#[allow(clippy::print_stderr)]
fn timing(args: &QueryArgs, what: &str, started: Instant) {
    if args.timing {
        eprintln!(
            "mlfusion: {what} in {:.3} s",
            started.elapsed().as_secs_f64()
        );
    }
}

/// Runs statements in one session.
struct Runner<'a> {
    ctx: SessionContext,
    args: &'a QueryArgs,
    progress: bool,
}

impl Runner<'_> {
    /// Runs one statement; returns its printed result, if it has one. The `last`
    /// statement's result goes to `--output` when one is given.
    async fn run(&self, statement: Statement, last: bool) -> Result<Option<String>> {
        let stream = match prepare(&self.ctx, statement, self.progress).await? {
            Prepared::Query(plan) => execute(&self.ctx, plan, self.progress).await?,
            Prepared::Done(schema, rows) => Box::pin(MemoryStream::try_new(rows, schema, None)?),
        };
        let returns_rows = !stream.schema().fields().is_empty();
        match (&self.args.output, last) {
            (Some(path), true) => {
                let target = Target {
                    location: path.to_string_lossy().into_owned(),
                    format: self.args.format,
                    delta_mode: self.args.output_mode,
                };
                Ok(Some(target.write(&self.ctx, stream).await?))
            }
            _ if returns_rows => Ok(Some(
                render(stream, self.args.format.unwrap_or(Format::Table)).await?,
            )),
            _ => Ok(None),
        }
    }

    /// The interactive loop: statements end with `;` and may span lines; `\q` (or
    /// Ctrl-D) quits, Ctrl-C drops the statement being typed. History persists in
    /// `~/.mlfusion_history`. Errors are printed and the session goes on.
    #[allow(clippy::print_stdout, clippy::print_stderr)]
    async fn repl(&self) -> Result<String> {
        let mut editor = DefaultEditor::new().map_err(repl_error)?;
        let history = dirs::home_dir().map(|h| h.join(".mlfusion_history"));
        if let Some(h) = &history {
            let _ = editor.load_history(h);
        }
        println!(
            "mlfusion {} — SQL ending in ';', \\q to quit",
            env!("CARGO_PKG_VERSION")
        );
        let mut buffer = String::new();
        loop {
            let prompt = if buffer.is_empty() {
                "mlfusion> "
            } else {
                "      ..> "
            };
            let line = tokio::task::block_in_place(|| editor.readline(prompt));
            match line {
                Ok(line) => {
                    if buffer.is_empty() && matches!(line.trim(), "\\q" | "quit" | "exit") {
                        break;
                    }
                    buffer.push_str(&line);
                    buffer.push('\n');
                    if !buffer.trim_end().ends_with(';') {
                        continue;
                    }
                    let _ = editor.add_history_entry(buffer.trim_end());
                    let sql = std::mem::take(&mut buffer);
                    let ran = tokio::select! {
                        ran = self.run_script(&sql) => ran,
                        signal = super::stop_signal() => Err(Error::Interrupted(signal)),
                    };
                    match ran {
                        Ok(out) => out.iter().for_each(|o| print_result(o)),
                        Err(e) => eprintln!("error: {}", e.report()),
                    }
                }
                Err(ReadlineError::Interrupted) => buffer.clear(),
                Err(ReadlineError::Eof) => break,
                Err(e) => return Err(repl_error(e)),
            }
        }
        if let Some(h) = &history {
            let _ = editor.save_history(h);
        }
        Ok(String::new())
    }

    /// Runs every statement of `sql`; results are printed, never written to `--output`.
    async fn run_script(&self, sql: &str) -> Result<Vec<String>> {
        let mut printed = Vec::new();
        for statement in DFParser::parse_sql(sql)? {
            printed.extend(self.run(statement, false).await?);
        }
        Ok(printed)
    }
}

fn repl_error(e: ReadlineError) -> Error {
    Error::Read {
        path: "<terminal>".into(),
        source: std::io::Error::other(e),
    }
}
