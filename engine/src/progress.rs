//! A progress bar for queries that score models: rows scored of rows expected (from the
//! plan's statistics, i.e. Parquet metadata when known), rows/s and ETA, on stderr.

use std::io::IsTerminal;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::physical_plan::metrics::Count;
use datafusion::physical_plan::{ExecutionPlan, RecordBatchStream, SendableRecordBatchStream};
use futures::Stream;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use mlfusion_udf::ModelCallsExec;
use tokio::task::JoinHandle;

const TICK: Duration = Duration::from_millis(150);

/// Whether to draw progress bars: not with `--quiet`, and only on a terminal.
pub fn wanted(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

/// Counters of the rows the plan's model calls have scored.
pub struct Scored {
    counters: Vec<Count>,
    /// The rows the plan is expected to score, when its statistics know.
    pub expected: Option<u64>,
}

impl Scored {
    /// The plan's model calls, or `None` when it calls no model.
    pub fn of(plan: &Arc<dyn ExecutionPlan>) -> Option<Self> {
        let mut counters = Vec::new();
        let mut expected = None;
        plan.apply(|node| {
            if let Some(calls) = node.downcast_ref::<ModelCallsExec>() {
                counters.extend(calls.models().iter().map(|(_, m)| m.rows.clone()));
                let rows = calls.expected_rows().map(|n| n as u64);
                expected = expected.max(rows);
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .ok()?;
        (!counters.is_empty()).then_some(Self { counters, expected })
    }

    /// Rows scored so far: the busiest call site's count (each site sees the rows once).
    pub fn rows(&self) -> u64 {
        self.counters
            .iter()
            .map(|c| c.value() as u64)
            .max()
            .unwrap_or(0)
    }
}

/// `stream` (the output of `plan`), drawing a progress bar while it runs if `plan`
/// scores models and `enabled`.
pub fn watch(
    plan: &Arc<dyn ExecutionPlan>,
    stream: SendableRecordBatchStream,
    enabled: bool,
) -> SendableRecordBatchStream {
    match Scored::of(plan) {
        Some(scored) if enabled => {
            Box::pin(Watched::new(stream, scored, ProgressDrawTarget::stderr()))
        }
        _ => stream,
    }
}

/// `3.41M rows/s`, `812k rows/s`, `95 rows/s`.
fn rate(per_sec: f64) -> String {
    match per_sec {
        r if r >= 1e6 => format!("{:.2}M rows/s", r / 1e6),
        r if r >= 1e4 => format!("{:.0}k rows/s", r / 1e3),
        r => format!("{r:.0} rows/s"),
    }
}

/// A record batch stream that keeps a progress bar up to date until it ends.
struct Watched {
    inner: SendableRecordBatchStream,
    bar: ProgressBar,
    scored: Arc<Scored>,
    ticker: JoinHandle<()>,
    done: bool,
}

impl Watched {
    fn new(inner: SendableRecordBatchStream, scored: Scored, target: ProgressDrawTarget) -> Self {
        let bar = ProgressBar::with_draw_target(scored.expected, target);
        let template = if scored.expected.is_some() {
            "{spinner} scoring [{elapsed_precise}] [{wide_bar}] {percent:>3}% {human_pos}/{human_len} rows, {rate}, ETA {eta}"
        } else {
            "{spinner} scoring [{elapsed_precise}] {human_pos} rows, {rate}"
        };
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("the templates are valid")
                .with_key(
                    "rate",
                    |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{}", rate(state.per_sec()));
                    },
                )
                .progress_chars("=> "),
        );
        let scored = Arc::new(scored);
        let ticker = {
            let (bar, scored) = (bar.clone(), Arc::clone(&scored));
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(TICK);
                loop {
                    interval.tick().await;
                    bar.set_position(scored.rows());
                }
            })
        };
        Self {
            inner,
            bar,
            scored,
            ticker,
            done: false,
        }
    }

    /// Ends the bar: at the final count (the length becomes it when it was only an
    /// estimate, e.g. after a filter) or, on error, where it stopped.
    fn end(&mut self, ok: bool) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        self.ticker.abort();
        let rows = self.scored.rows();
        self.bar.set_position(rows);
        if ok {
            self.bar.set_length(rows);
            self.bar.finish();
        } else {
            self.bar.abandon();
        }
        if !self.bar.is_hidden() {
            // The bar stays on screen; what is printed next starts on a line of its own.
            #[allow(clippy::print_stderr)]
            {
                eprintln!();
            }
        }
    }
}

impl Stream for Watched {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = self.inner.as_mut().poll_next(cx);
        match &next {
            Poll::Ready(None) => self.end(true),
            Poll::Ready(Some(Err(_))) => self.end(false),
            _ => {}
        }
        next
    }
}

impl RecordBatchStream for Watched {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.end(false);
    }
}
