//! Where query results go: a file (Parquet, CSV, JSON lines; streamed batch by batch)
//! or a table on stdout.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;
use parquet::arrow::ArrowWriter;

use crate::error::{Error, Result};

/// Output file formats, chosen by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Parquet,
    Csv,
    JsonLines,
}

impl Format {
    /// The format for a file name (`.parquet`, `.csv`, `.json`/`.jsonl`/`.ndjson`).
    pub fn from_path(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match ext.as_str() {
            "parquet" => Ok(Self::Parquet),
            "csv" => Ok(Self::Csv),
            "json" | "jsonl" | "ndjson" => Ok(Self::JsonLines),
            _ => Err(Error::BadArgument {
                flag: "--output",
                value: path.display().to_string(),
                message: "the extension must be .parquet, .csv, .json, .jsonl or .ndjson".into(),
            }),
        }
    }
}

/// Summary of a written result.
#[derive(Debug, Clone, Copy, Default)]
pub struct Written {
    pub rows: usize,
    pub batches: usize,
}

enum Sink {
    Parquet(ArrowWriter<File>),
    Csv(arrow::csv::Writer<BufWriter<File>>),
    Json(arrow::json::LineDelimitedWriter<BufWriter<File>>),
}

/// Streams `stream` into `path` batch by batch (memory stays bounded by one batch).
pub async fn write_stream(mut stream: SendableRecordBatchStream, path: &Path) -> Result<Written> {
    let format = Format::from_path(path)?;
    let schema: SchemaRef = stream.schema();
    // Written to a temporary file beside the target and renamed on success: a failed
    // query leaves no partial output behind.
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let write_err = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let staged = tempfile::Builder::new()
        .prefix(".mlfusion-")
        .tempfile_in(dir)
        .map_err(write_err)?;
    let file = staged.reopen().map_err(write_err)?;
    let encode = |e: &dyn std::fmt::Display| Error::Encode {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut sink = match format {
        Format::Parquet => {
            Sink::Parquet(ArrowWriter::try_new(file, schema, None).map_err(|e| encode(&e))?)
        }
        Format::Csv => Sink::Csv(arrow::csv::Writer::new(BufWriter::new(file))),
        Format::JsonLines => {
            Sink::Json(arrow::json::LineDelimitedWriter::new(BufWriter::new(file)))
        }
    };
    let mut written = Written::default();
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        written.rows += batch.num_rows();
        written.batches += 1;
        match &mut sink {
            Sink::Parquet(w) => w.write(&batch).map_err(|e| encode(&e))?,
            Sink::Csv(w) => w.write(&batch).map_err(|e| encode(&e))?,
            Sink::Json(w) => w.write(&batch).map_err(|e| encode(&e))?,
        }
    }
    match sink {
        Sink::Parquet(w) => {
            w.close().map_err(|e| encode(&e))?;
        }
        Sink::Csv(w) => {
            w.into_inner().flush().map_err(write_err)?;
        }
        Sink::Json(mut w) => {
            w.finish().map_err(|e| encode(&e))?;
            w.into_inner().flush().map_err(write_err)?;
        }
    }
    staged.persist(path).map_err(|e| write_err(e.error))?;
    Ok(written)
}

/// Collects the stream and renders it as a text table.
pub async fn render_table(mut stream: SendableRecordBatchStream) -> Result<String> {
    let mut batches: Vec<RecordBatch> = Vec::new();
    while let Some(batch) = stream.next().await {
        batches.push(batch?);
    }
    let options = arrow::util::display::FormatOptions::default().with_null("NULL");
    let table = arrow::util::pretty::pretty_format_batches_with_options(&batches, &options)
        .map_err(datafusion::error::DataFusionError::from)?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    Ok(format!("{table}\n{rows} row(s)"))
}

/// A path for messages: as given, or absolute when it resolves.
pub fn display_path(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}
