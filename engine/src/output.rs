//! Where query results go: a file or an object in an object store (Parquet, CSV, JSON,
//! JSON lines; streamed batch by batch), or stdout (a table, CSV, JSON or JSON lines).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::prelude::SessionContext;
use deltalake::protocol::SaveMode;
use futures::StreamExt;
use object_store::ObjectStore;
use parquet::arrow::ArrowWriter;
use tokio::io::AsyncWriteExt;
use url::Url;

use crate::delta::{self, DeltaWrite};
use crate::error::{Error, Result};
use crate::stores::store_url;

/// Result formats: printed, or written to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
    Ndjson,
    Parquet,
}

impl Format {
    /// The file format for `path`: its extension, else `explicit`.
    pub fn for_file(path: &Path, explicit: Option<Format>) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match (ext.as_str(), explicit) {
            ("parquet", _) => Ok(Self::Parquet),
            ("csv", _) => Ok(Self::Csv),
            ("jsonl" | "ndjson", _) => Ok(Self::Ndjson),
            ("json", None) => Ok(Self::Ndjson),
            (_, Some(f)) if f != Self::Table => Ok(f),
            _ => Err(Error::BadArgument {
                flag: "--output",
                value: path.display().to_string(),
                message: "the extension must be .parquet, .csv, .json, .jsonl or .ndjson (or pass --format)".into(),
            }),
        }
    }
}

/// Where `--output` (or the Python API's `write`) puts a result: a file, an object in a
/// store (`s3://...`), or a Delta table (`delta:LOCATION`).
#[derive(Debug, Clone)]
pub struct Target {
    pub location: String,
    /// The file format when the extension says nothing.
    pub format: Option<Format>,
    /// What a write to a Delta table that exists does.
    pub delta_mode: SaveMode,
}

impl Target {
    /// Writes `stream` whole, or nothing on failure; returns "wrote N row(s) to WHERE".
    pub async fn write(
        &self,
        ctx: &SessionContext,
        stream: SendableRecordBatchStream,
    ) -> Result<String> {
        let target = self.location.as_str();
        if let Some(location) = target.strip_prefix(delta::PREFIX) {
            let write = DeltaWrite {
                location: location.to_owned(),
                mode: self.delta_mode,
                schema_mode: None,
                partition_by: Vec::new(),
                target_file_size: None,
            };
            let written = write.write(ctx, stream).await?;
            return Ok(format!(
                "wrote {} row(s) to {target} (version {})",
                written.rows, written.version
            ));
        }
        let (written, place) = match store_url(target) {
            Some(url) => {
                let store = ctx.runtime_env().object_store_registry.get_store(&url)?;
                let written = write_stream_to_store(stream, store, &url, self.format).await?;
                (written, url.to_string())
            }
            None => {
                let path = Path::new(target);
                let written = write_stream(stream, path, self.format).await?;
                (written, display_path(path).display().to_string())
            }
        };
        Ok(format!("wrote {} row(s) to {place}", written.rows))
    }
}

/// Summary of a written result.
#[derive(Debug, Clone, Copy, Default)]
pub struct Written {
    pub rows: usize,
    pub batches: usize,
}

enum Sink<W: Write + Send> {
    Parquet(ArrowWriter<W>),
    Csv(arrow::csv::Writer<W>),
    Json(arrow::json::ArrayWriter<W>),
    Ndjson(arrow::json::LineDelimitedWriter<W>),
}

impl<W: Write + Send> Sink<W> {
    fn new(format: Format, out: W, schema: SchemaRef) -> std::result::Result<Self, String> {
        Ok(match format {
            Format::Parquet => {
                Self::Parquet(ArrowWriter::try_new(out, schema, None).map_err(|e| e.to_string())?)
            }
            Format::Csv => Self::Csv(arrow::csv::Writer::new(out)),
            Format::Json => Self::Json(arrow::json::ArrayWriter::new(out)),
            Format::Ndjson => Self::Ndjson(arrow::json::LineDelimitedWriter::new(out)),
            Format::Table => return Err("a table is printed, not written".into()),
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> std::result::Result<(), String> {
        match self {
            Self::Parquet(w) => w.write(batch).map_err(|e| e.to_string()),
            Self::Csv(w) => w.write(batch).map_err(|e| e.to_string()),
            Self::Json(w) => w.write(batch).map_err(|e| e.to_string()),
            Self::Ndjson(w) => w.write(batch).map_err(|e| e.to_string()),
        }
    }

    /// Finishes the format and returns the writer, flushed.
    fn finish(self) -> std::result::Result<W, String> {
        let mut out = match self {
            Self::Parquet(w) => w.into_inner().map_err(|e| e.to_string())?,
            Self::Csv(w) => w.into_inner(),
            Self::Json(mut w) => {
                w.finish().map_err(|e| e.to_string())?;
                w.into_inner()
            }
            Self::Ndjson(mut w) => {
                w.finish().map_err(|e| e.to_string())?;
                w.into_inner()
            }
        };
        out.flush().map_err(|e| e.to_string())?;
        Ok(out)
    }
}

/// Streams `stream` into `path` batch by batch (memory stays bounded by one batch).
pub async fn write_stream(
    mut stream: SendableRecordBatchStream,
    path: &Path,
    format: Option<Format>,
) -> Result<Written> {
    let format = Format::for_file(path, format)?;
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
    let encode = |message: String| Error::Encode {
        path: path.to_path_buf(),
        message,
    };
    let staged = tempfile::Builder::new()
        .prefix(".mlfusion-")
        // As any new file: 0666 less the umask (a temporary file would be 0600).
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(write_err)?;
    let file = BufWriter::new(staged.reopen().map_err(write_err)?);
    let mut sink = Sink::new(format, file, stream.schema()).map_err(encode)?;
    let mut written = Written::default();
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        written.rows += batch.num_rows();
        written.batches += 1;
        sink.write(&batch).map_err(encode)?;
    }
    sink.finish().map_err(encode)?;
    staged.persist(path).map_err(|e| write_err(e.error))?;
    Ok(written)
}

/// Streams `stream` into the object at `url` (`s3://bucket/scored.parquet`, ...) in
/// `store`, as [`write_stream`] does into a file: a multipart upload, completed only when
/// every batch is written, so a failed or cancelled query leaves no object.
pub async fn write_stream_to_store(
    mut stream: SendableRecordBatchStream,
    store: Arc<dyn ObjectStore>,
    url: &Url,
    format: Option<Format>,
) -> Result<Written> {
    let format = Format::for_file(Path::new(url.path()), format)?;
    let failed = |message: String| Error::Encode {
        path: url.as_str().into(),
        message,
    };
    let location =
        object_store::path::Path::from_url_path(url.path()).map_err(|e| failed(e.to_string()))?;
    let mut upload = object_store::buffered::BufWriter::new(store, location);
    let buffer = SharedBuffer::default();
    let written = async {
        let mut sink = Sink::new(format, buffer.clone(), stream.schema()).map_err(failed)?;
        let mut written = Written::default();
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            written.rows += batch.num_rows();
            written.batches += 1;
            sink.write(&batch).map_err(failed)?;
            upload
                .write_all(&buffer.take())
                .await
                .map_err(|e| failed(e.to_string()))?;
        }
        sink.finish().map_err(failed)?;
        upload
            .write_all(&buffer.take())
            .await
            .map_err(|e| failed(e.to_string()))?;
        Ok::<_, Error>(written)
    }
    .await;
    match written {
        // Completes the upload; a failed completion leaves no object, nothing to abort.
        Ok(written) => {
            upload.shutdown().await.map_err(|e| failed(e.to_string()))?;
            Ok(written)
        }
        Err(e) => {
            let _ = upload.abort().await;
            Err(e)
        }
    }
}

/// Bytes an encoder has written, taken out batch by batch for an upload.
#[derive(Clone, Default)]
struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    fn take(&self) -> Vec<u8> {
        std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Renders the stream in `format` for the terminal: a table collects the result first,
/// the text formats are encoded batch by batch.
pub async fn render(mut stream: SendableRecordBatchStream, format: Format) -> Result<String> {
    match format {
        Format::Parquet => {
            return Err(Error::BadArgument {
                flag: "--format",
                value: "parquet".into(),
                message: "Parquet is not printed; pass --output FILE.parquet".into(),
            });
        }
        Format::Table => {
            let mut batches: Vec<RecordBatch> = Vec::new();
            while let Some(batch) = stream.next().await {
                batches.push(batch?);
            }
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            let options = arrow::util::display::FormatOptions::default().with_null("NULL");
            let table = arrow::util::pretty::pretty_format_batches_with_options(&batches, &options)
                .map_err(datafusion::error::DataFusionError::from)?;
            return Ok(format!("{table}\n{rows} row(s)"));
        }
        Format::Csv | Format::Json | Format::Ndjson => {}
    }
    let encode = |message: String| Error::Encode {
        path: "<stdout>".into(),
        message,
    };
    let mut sink = Sink::new(format, Vec::new(), stream.schema()).map_err(encode)?;
    while let Some(batch) = stream.next().await {
        sink.write(&batch?).map_err(encode)?;
    }
    let bytes = sink.finish().map_err(encode)?;
    Ok(String::from_utf8_lossy(&bytes).trim_end().to_owned())
}

/// The process's standard output, kept for results alone (see [`keep_stdout_for_results`]).
static RESULTS: OnceLock<File> = OnceLock::new();

/// Keeps standard output for results: file descriptor 1 is copied for them, then
/// pointed at stderr, so whatever else writes to it (a model's `print`, a native
/// library's logging, in the engine's own interpreter) goes to stderr. Call once, before
/// Python starts.
#[allow(unsafe_code)]
pub fn keep_stdout_for_results() -> std::io::Result<()> {
    use std::os::fd::AsFd;
    let results = std::io::stdout().as_fd().try_clone_to_owned()?;
    // SAFETY: dup2 on two open descriptors of this process; nothing holds a Rust
    // object that owns descriptor 1, which stays open (now as stderr).
    if unsafe { libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let _ = RESULTS.set(File::from(results));
    Ok(())
}

/// Prints `text` and a newline as a result: on the standard output the process started
/// with.
pub fn print_result(text: &str) {
    let line = format!("{text}\n");
    let written = match RESULTS.get() {
        Some(mut out) => out.write_all(line.as_bytes()).and_then(|()| out.flush()),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(line.as_bytes()).and_then(|()| out.flush())
        }
    };
    // A closed pipe (`mlfusion query ... | head`) is no error of the query.
    let _ = written;
}

/// A path for messages: as given, or absolute when it resolves.
pub fn display_path(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}
