//! Delta Lake tables, local or in any store of [`crate::stores`], read and written with
//! delta-rs (the `deltalake` crate).
//!
//! - Read: `--table NAME=delta:LOCATION[@vN|@TIMESTAMP]`, `CREATE EXTERNAL TABLE ...
//!   STORED AS DELTATABLE LOCATION '...' [OPTIONS ('version' 'N' | 'timestamp' '...')]`,
//!   and any location holding a `_delta_log/` (`--table`, `FROM 'path'`). Deletion
//!   vectors and column mapping are read by delta-rs; a table needing a reader feature it
//!   lacks is refused, naming it.
//! - Write: `--output delta:LOCATION` (`--output-mode`) and `COPY (...) TO 'LOCATION'
//!   STORED AS DELTATABLE [PARTITIONED BY (...)] [OPTIONS ('mode' ..., 'schema_mode' ...)]`:
//!   one commit at the end; a write that fails or is cancelled leaves no version and
//!   removes the data files it wrote ([`Uncommitted`]).

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};

use arrow::array::{RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::{DateTime, Utc};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::config::ConfigOptions;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::{SessionState, TaskContext};
use datafusion::logical_expr::{
    CreateExternalTable, DdlStatement, LogicalPlan, LogicalPlanBuilder,
};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::physical_plan::{ExecutionPlan, Partitioning};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{CopyToSource, CopyToStatement};
use datafusion::sql::sqlparser::ast::Value;
use deltalake::logstore::{
    LogStore, LogStoreFactory, LogStoreRef, ObjectStoreRef, StorageConfig, default_logstore,
    logstore_factories,
};
use deltalake::operations::write::{SchemaMode, WriteBuilder};
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use tokio::runtime::RuntimeFlavor;
use url::Url;

use crate::error::{Error, Result};
use crate::stores::{self, store_url};

/// The prefix naming a location as a Delta table: `delta:s3://lake/customers`.
pub const PREFIX: &str = "delta:";

/// `STORED AS DELTATABLE`, as datafusion-cli with delta-rs names it.
pub const FORMAT: &str = "DELTATABLE";

/// A Delta table to read: where, and which version.
#[derive(Debug, Clone, PartialEq)]
pub struct DeltaSource {
    pub location: String,
    pub version: Version,
}

/// Which version of a table is read.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Version {
    #[default]
    Latest,
    Number(u64),
    /// The version current at this time.
    AsOf(DateTime<Utc>),
}

impl DeltaSource {
    /// The latest version of the table at `location`.
    pub fn latest(location: &str) -> Self {
        Self {
            location: location.to_owned(),
            version: Version::Latest,
        }
    }

    /// `delta:LOCATION[@vN|@TIMESTAMP]` (RFC 3339, as Databricks' `table@v12` names a
    /// version); `None` without the prefix.
    pub fn parse(arg: &str) -> Option<Result<Self>> {
        let rest = arg.strip_prefix(PREFIX)?;
        let bad = |message: String| Error::BadArgument {
            flag: "--table",
            value: arg.to_owned(),
            message,
        };
        let parsed = match rest.rsplit_once('@') {
            Some((location, at)) if !at.contains('/') => match parse_version(at) {
                Ok(version) => Ok(Self {
                    location: location.to_owned(),
                    version,
                }),
                Err(message) => Err(bad(message)),
            },
            _ => Ok(Self {
                location: rest.to_owned(),
                version: Version::Latest,
            }),
        };
        Some(parsed.and_then(|s| {
            if s.location.is_empty() {
                Err(bad("no location after 'delta:'".into()))
            } else {
                Ok(s)
            }
        }))
    }
}

/// `v12` or an RFC 3339 time.
fn parse_version(text: &str) -> std::result::Result<Version, String> {
    if let Some(number) = text.strip_prefix('v') {
        return number.parse().map(Version::Number).map_err(|_| {
            format!("'@{text}' is not a version (hint: '@v12' reads version 12, '@2026-01-31T00:00:00Z' the version of that time)")
        });
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| Version::AsOf(t.with_timezone(&Utc)))
        .map_err(|e| format!("'@{text}' is neither a version ('@v12') nor an RFC 3339 time: {e}"))
}

/// The options of a Delta table: `version` or `timestamp` (time travel); none else.
fn version_option(location: &str, options: &HashMap<String, String>) -> Result<Version> {
    let mut version = Version::Latest;
    for (key, value) in options {
        // DataFusion names the options of a format `format.KEY`.
        let parsed = match key.strip_prefix("format.").unwrap_or(key) {
            "version" => value
                .parse()
                .map(Version::Number)
                .map_err(|e| e.to_string()),
            "timestamp" => DateTime::parse_from_rfc3339(value)
                .map(|t| Version::AsOf(t.with_timezone(&Utc)))
                .map_err(|e| e.to_string()),
            other => Err(format!(
                "unknown option '{other}' (hint: a Delta table takes 'version' or 'timestamp', and the store's 'aws.*', 'gcp.*', 'azure.*' options)"
            )),
        };
        version = parsed
            .map_err(|message| DeltaError::new("read", location, format!("'{key}': {message}")))?;
    }
    Ok(version)
}

/// Why a Delta table could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} the Delta table at {location}: {message}")]
pub struct DeltaError {
    action: &'static str,
    location: String,
    message: String,
}

impl DeltaError {
    fn new(action: &'static str, location: &str, message: impl Into<String>) -> Self {
        Self {
            action,
            location: location.to_owned(),
            message: message.into(),
        }
    }

    /// `error` of delta-rs, with a hint for the usual causes.
    fn from_delta(action: &'static str, location: &str, error: &DeltaTableError) -> Self {
        let message = error.to_string();
        let found = |text: &str| message.contains(text);
        let message = if matches!(error, DeltaTableError::NotATable(_))
            || found("No files in log segment")
        {
            format!(
                "there is no Delta table here (no _delta_log/): {message}\n  hint: check the location; a directory of Parquet files is read with --table NAME=PATH"
            )
        } else if found("already exists") {
            format!(
                "{message}\n  hint: --output-mode append or overwrite (in COPY: OPTIONS ('mode' 'append'))"
            )
        } else if found("nsupported") {
            format!(
                "{message}\n  hint: the table needs a feature delta-rs does not have; it is refused rather than read wrong"
            )
        } else if found("NoSuchBucket") {
            format!("{message}\n  hint: the bucket does not exist; check the URL's bucket name")
        } else if found("403 Forbidden") {
            format!(
                "{message}\n  hint: the store refused the credentials or they lack access; check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or the 'aws.*' options)"
            )
        } else {
            message
        };
        Self::new(action, location, message)
    }
}

impl From<DeltaError> for DataFusionError {
    fn from(e: DeltaError) -> Self {
        DataFusionError::External(Box::new(e))
    }
}

impl From<DeltaError> for Error {
    fn from(e: DeltaError) -> Self {
        Error::DataFusion(e.into())
    }
}

/// The URL of a table at `location`: a store URL, or a local directory made absolute.
fn table_url(location: &str) -> Result<Url, DeltaError> {
    let url = match store_url(location) {
        Some(url) => url,
        None => {
            let path = location.strip_prefix("file://").unwrap_or(location);
            let absolute = std::path::absolute(path)
                .map_err(|e| DeltaError::new("use", location, e.to_string()))?;
            Url::from_directory_path(&absolute)
                .map_err(|()| DeltaError::new("use", location, "not an absolute path"))?
        }
    };
    Ok(url)
}

/// The table's log store, on the session's store for its URL (credentials as for any
/// table, see [`crate::stores`]), wrapped by `wrap`.
fn log_store(
    runtime: &RuntimeEnv,
    location: &str,
    wrap: impl FnOnce(ObjectStoreRef) -> ObjectStoreRef,
) -> Result<(Url, LogStoreRef), DeltaError> {
    register_log_stores();
    let url = table_url(location)?;
    let store = runtime
        .object_store_registry
        .get_store(&url)
        .map_err(|e| DeltaError::new("use", location, e.find_root().to_string()))?;
    let log_store = DeltaTableBuilder::from_url(url.clone())
        .and_then(|b| {
            b.with_storage_backend(wrap(store), url.clone())
                .build_storage()
        })
        .map_err(|e| DeltaError::from_delta("use", location, &e))?;
    Ok((url, log_store))
}

/// delta-rs keeps its log stores by URL scheme and knows only local files without its
/// cloud crates: the stores of [`crate::stores`] commit with conditional puts (S3's
/// `If-None-Match`, GCS's and Azure's preconditions), which is its default log store.
fn register_log_stores() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let factories = logstore_factories();
        for scheme in ["s3", "s3a", "gs", "az", "adl", "azure", "abfs", "abfss"] {
            if let Ok(url) = Url::parse(&format!("{scheme}://")) {
                factories.insert(url, Arc::new(ConditionalPut));
            }
        }
    });
}

struct ConditionalPut;

impl LogStoreFactory for ConditionalPut {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> deltalake::DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

/// Whether `location` holds a Delta table (a `_delta_log/` with something in it).
pub async fn is_delta(runtime: &RuntimeEnv, location: &str) -> bool {
    if location.contains(['*', '?', '[']) {
        return false;
    }
    let Some(url) = store_url(location) else {
        return Path::new(location).join("_delta_log").is_dir();
    };
    let Ok(store) = runtime.object_store_registry.get_store(&url) else {
        return false;
    };
    let Ok(root) = ObjectPath::from_url_path(url.path()) else {
        return false;
    };
    let log = root.clone().join("_delta_log");
    matches!(store.list(Some(&log)).next().await, Some(Ok(_)))
}

/// `CREATE EXTERNAL TABLE ... STORED AS PARQUET` (or CSV, ...) over a Delta table would
/// read every file ever written to it, removed ones included: refused, with a hint.
pub async fn refuse_parquet_over_delta(ctx: &SessionContext, plan: &LogicalPlan) -> Result<()> {
    let LogicalPlan::Ddl(DdlStatement::CreateExternalTable(table)) = plan else {
        return Ok(());
    };
    if table.file_type.eq_ignore_ascii_case(FORMAT) {
        return Ok(());
    }
    for location in &table.locations {
        if is_delta(ctx.runtime_env().as_ref(), location).await {
            return Err(DeltaError::new(
                "read",
                location,
                format!(
                    "it is a Delta table, not files STORED AS {}: its directory also holds files of removed versions\n  hint: STORED AS DELTATABLE",
                    table.file_type
                ),
            )
            .into());
        }
    }
    Ok(())
}

/// The table at `source` as a DataFusion table.
pub async fn open(state: &SessionState, source: &DeltaSource) -> Result<Arc<dyn TableProvider>> {
    let location = source.location.as_str();
    let (_, log_store) = log_store(state.runtime_env(), location, |s| s)?;
    let mut table = DeltaTable::new(Arc::clone(&log_store));
    let loaded = match source.version {
        Version::Latest => table.load().await,
        Version::Number(v) => table.load_version(v).await,
        Version::AsOf(t) => table.load_with_datetime(t).await,
    };
    if let Err(e) = loaded {
        return Err(version_error(log_store, source, &e).await.into());
    }
    // delta-rs reads the first version for a time before it: refused, as Delta does.
    if let (Version::AsOf(t), Ok(snapshot)) = (source.version, table.snapshot())
        && let Some(first) = snapshot.version_timestamp(snapshot.version())
        && first > t.timestamp_millis()
    {
        let first = DateTime::<Utc>::from_timestamp_millis(first).unwrap_or_default();
        return Err(DeltaError::new(
            "read",
            location,
            format!(
                "no version is as old as {t}: the first, version {}, was written at {first}",
                snapshot.version()
            ),
        )
        .into());
    }
    let provider = table
        .table_provider()
        .with_session(Arc::new(state.clone()))
        .await
        .map_err(|e| DeltaError::new("read", location, e.find_root().to_string()))?;
    Ok(provider)
}

/// Why `source` could not be loaded: for a version past the latest, which is the latest.
async fn version_error(
    log_store: LogStoreRef,
    source: &DeltaSource,
    error: &DeltaTableError,
) -> DeltaError {
    if let Version::Number(v) = source.version {
        let mut latest = DeltaTable::new(log_store);
        if latest.load().await.is_ok()
            && let Some(last) = latest.version()
            && last < v
        {
            return DeltaError::new(
                "read",
                &source.location,
                format!("there is no version {v}: the latest is {last}"),
            );
        }
    }
    DeltaError::from_delta("read", &source.location, error)
}

/// Spreads the files of a scan that come in one group (a Delta table's do) over the
/// session's partitions, whole files each, as a listing table's are: the files are read
/// in parallel, and the rows of each keep their order (what the session keeps by not
/// splitting files). Before DataFusion's rules, which plan for the partitions it makes.
#[derive(Debug, Default)]
pub struct SpreadFiles;

impl PhysicalOptimizerRule for SpreadFiles {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let partitions = config.execution.target_partitions;
        if partitions < 2 {
            return Ok(plan);
        }
        plan.transform_up(|node| {
            let Some(exec) = node.downcast_ref::<DataSourceExec>() else {
                return Ok(Transformed::no(node));
            };
            let Some(scan) = exec.data_source().downcast_ref::<FileScanConfig>() else {
                return Ok(Transformed::no(node));
            };
            let declared = match &scan.output_partitioning {
                None => true,
                Some(Partitioning::UnknownPartitioning(_)) => false,
                Some(_) => return Ok(Transformed::no(node)),
            };
            let [group] = scan.file_groups.as_slice() else {
                return Ok(Transformed::no(node));
            };
            if group.len() < 2 || !scan.output_ordering.is_empty() {
                return Ok(Transformed::no(node));
            }
            let mut spread = scan.clone();
            spread.file_groups = group.clone().split_files(partitions);
            if !declared {
                let count = spread.file_groups.len();
                spread.output_partitioning = Some(Partitioning::UnknownPartitioning(count));
            }
            let exec = exec.clone().with_data_source(Arc::new(spread));
            Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>))
        })
        .data()
    }

    fn name(&self) -> &str {
        "spread_files"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `CREATE EXTERNAL TABLE t STORED AS DELTATABLE LOCATION '...'` (with `OPTIONS
/// ('version' 'N')` or `('timestamp' 'RFC 3339')` to read an older version).
#[derive(Debug, Default)]
pub struct DeltaTables;

#[async_trait::async_trait]
impl TableProviderFactory for DeltaTables {
    async fn create(
        &self,
        session: &dyn Session,
        cmd: &CreateExternalTable,
    ) -> DfResult<Arc<dyn TableProvider>> {
        let [location] = cmd.locations.as_slice() else {
            return Err(DataFusionError::Plan(format!(
                "a Delta table has one location, not {}",
                cmd.locations.len()
            )));
        };
        let state = session
            .as_any()
            .downcast_ref::<SessionState>()
            .ok_or_else(|| DataFusionError::Internal("not a SessionState".into()))?;
        let source = DeltaSource {
            location: location.clone(),
            version: version_option(location, &cmd.options).map_err(into_df)?,
        };
        open(state, &source).await.map_err(into_df)
    }
}

/// `e` as the DataFusion error it wraps, if it wraps one.
pub(crate) fn into_df(e: Error) -> DataFusionError {
    match e {
        Error::DataFusion(e) => e,
        other => DataFusionError::External(Box::new(other)),
    }
}

/// A write of query results into a Delta table.
pub struct DeltaWrite {
    pub location: String,
    pub mode: SaveMode,
    pub schema_mode: Option<SchemaMode>,
    pub partition_by: Vec<String>,
    /// The size of the data files written (delta-rs' default: 100 MiB).
    pub target_file_size: Option<NonZeroU64>,
}

/// What a write did.
#[derive(Debug, Clone, Copy)]
pub struct DeltaWritten {
    pub rows: u64,
    pub version: u64,
}

/// `--output-mode` and `COPY`'s `'mode'`: what happens when the table exists.
pub fn save_mode(value: &str) -> std::result::Result<SaveMode, String> {
    match value.to_ascii_lowercase().as_str() {
        "error" => Ok(SaveMode::ErrorIfExists),
        "append" => Ok(SaveMode::Append),
        "overwrite" => Ok(SaveMode::Overwrite),
        _ => Err(format!(
            "'{value}' is not a mode (hint: error, append or overwrite)"
        )),
    }
}

impl DeltaWrite {
    /// `COPY (query) TO 'location' STORED AS DELTATABLE ...`: the write, and the plan of
    /// its input; `None` for any other statement. Store options (`aws.*`, ...) among
    /// `OPTIONS` configure the location's store as for any `COPY`.
    pub async fn from_copy(
        ctx: &SessionContext,
        copy: &CopyToStatement,
    ) -> Result<Option<(Self, LogicalPlan)>> {
        if !copy
            .stored_as
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case(FORMAT))
        {
            return Ok(None);
        }
        let location = copy.target.as_str();
        let bad = |message: String| DeltaError::new("write", location, message);
        let mut write = Self {
            location: location.to_owned(),
            mode: SaveMode::ErrorIfExists,
            schema_mode: None,
            partition_by: copy.partitioned_by.clone(),
            target_file_size: None,
        };
        let options = copy
            .options
            .iter()
            .map(|(key, value)| {
                let value = match value {
                    Value::SingleQuotedString(s) => s.clone(),
                    other => other.to_string(),
                };
                (key.to_ascii_lowercase(), value)
            })
            .collect();
        let targets = [location.to_owned()];
        for (key, value) in stores::take_store_options(ctx, &targets, options)? {
            match key.as_str() {
                "mode" => write.mode = save_mode(&value).map_err(bad)?,
                "target_file_size" => {
                    let size = crate::units::parse_size(&value).ok().and_then(NonZeroU64::new);
                    write.target_file_size = Some(size.ok_or_else(|| {
                        bad(format!("target_file_size '{value}' (hint: a size such as '128MiB')"))
                    })?);
                }
                "schema_mode" => {
                    write.schema_mode = Some(match value.to_ascii_lowercase().as_str() {
                        "merge" => SchemaMode::Merge,
                        "overwrite" => SchemaMode::Overwrite,
                        _ => return Err(bad(format!(
                            "schema_mode '{value}' (hint: 'merge' adds new columns, 'overwrite' replaces the schema with mode 'overwrite')"
                        ))
                        .into()),
                    })
                }
                other => {
                    return Err(bad(format!(
                        "unknown option '{other}' (hint: 'mode', 'schema_mode', 'target_file_size', and the store's 'aws.*', 'gcp.*', 'azure.*' options)"
                    ))
                    .into());
                }
            }
        }
        let query = match &copy.source {
            CopyToSource::Relation(name) => format!("SELECT * FROM {name}"),
            CopyToSource::Query(query) => query.to_string(),
        };
        let plan = ctx.state().create_logical_plan(&query).await?;
        Ok(Some((write, plan)))
    }

    /// Writes `stream` as one new version of the table (created if it does not exist),
    /// committed once the stream has ended. If the stream fails, or the write is
    /// cancelled, the table keeps its versions and the data files written are removed.
    pub async fn write(
        &self,
        ctx: &SessionContext,
        stream: SendableRecordBatchStream,
    ) -> Result<DeltaWritten> {
        let location = self.location.as_str();
        let fail = |e: DeltaTableError| DeltaError::from_delta("write", location, &e);
        let written = Arc::new(Uncommitted::default());
        let mut inner = None;
        let (url, log_store) = log_store(ctx.runtime_env().as_ref(), location, |store| {
            inner = Some(Arc::clone(&store));
            let written = Arc::clone(&written);
            stores::on_put(store, move |path| written.record(path))
        })?;
        let guard = Cleanup {
            written,
            store: inner.expect("log_store calls wrap"),
            created_dir: url.to_file_path().ok().filter(|dir| !dir.exists()),
        };
        let snapshot = if is_delta(ctx.runtime_env().as_ref(), location).await {
            let mut table = DeltaTable::new(Arc::clone(&log_store));
            table.load().await.map_err(fail)?;
            Some(table.snapshot().map_err(fail)?.snapshot().clone())
        } else {
            None
        };
        let fed = Arc::new(Fed::default());
        let mut builder = WriteBuilder::new(log_store, snapshot)
            // Its own session: the input is already a stream (the query runs in ours),
            // and delta-rs plans its write with its own planner.
            .with_input_plan(once_scan(stream, Arc::clone(&fed))?)
            .with_save_mode(self.mode)
            .with_target_file_size(self.target_file_size);
        if let Some(mode) = self.schema_mode {
            builder = builder.with_schema_mode(mode);
        }
        if !self.partition_by.is_empty() {
            builder = builder.with_partition_columns(self.partition_by.clone());
        }
        let table = match builder.await {
            Ok(table) => table,
            // The query's own error (a model that raised) is reported as it is.
            Err(e) => return Err(fed.take_error().map_or_else(|| fail(e).into(), Error::from)),
        };
        guard.keep();
        Ok(DeltaWritten {
            rows: fed.rows.load(Ordering::Relaxed),
            version: table.version().unwrap_or_default(),
        })
    }
}

/// What the query fed a write: its rows, and its error.
#[derive(Debug, Default)]
struct Fed {
    rows: AtomicU64,
    error: Mutex<Option<DataFusionError>>,
}

impl Fed {
    fn take_error(&self) -> Option<DataFusionError> {
        self.error.lock().ok()?.take()
    }
}

/// `stream` as the one partition of a table scan, its rows and error kept in `fed`.
fn once_scan(stream: SendableRecordBatchStream, fed: Arc<Fed>) -> Result<LogicalPlan> {
    let schema = stream.schema();
    let watched = stream.map(move |batch| match batch {
        Ok(batch) => {
            fed.rows
                .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
            Ok(batch)
        }
        Err(e) => {
            if let Ok(mut error) = fed.error.lock() {
                error.get_or_insert(e);
            }
            Err(DataFusionError::Execution("the query failed".into()))
        }
    });
    let stream = RecordBatchStreamAdapter::new(Arc::clone(&schema), watched);
    let partition = Arc::new(Once1 {
        schema: Arc::clone(&schema),
        stream: Mutex::new(Some(Box::pin(stream))),
    });
    let table = StreamingTable::try_new(schema, vec![partition])?;
    let source = datafusion::datasource::provider_as_source(Arc::new(table));
    Ok(LogicalPlanBuilder::scan("scored", source, None)?.build()?)
}

/// A partition whose stream can be taken once.
struct Once1 {
    schema: SchemaRef,
    stream: Mutex<Option<SendableRecordBatchStream>>,
}

impl std::fmt::Debug for Once1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("query results")
    }
}

impl PartitionStream for Once1 {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let taken = self.stream.lock().ok().and_then(|mut s| s.take());
        taken.unwrap_or_else(|| {
            let error = DataFusionError::Internal("query results read twice".into());
            Box::pin(RecordBatchStreamAdapter::new(
                Arc::clone(&self.schema),
                futures::stream::once(async { Err(error) }),
            ))
        })
    }
}

/// The batch `COPY` answers with: one row, the rows written.
pub fn count_batch(rows: u64) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(UInt64Array::from(vec![rows]))]);
    Ok(batch.map_err(DataFusionError::from)?)
}

/// The data files a write has put, whether a commit made them part of a version (after
/// which nothing is removed), and whether the write was abandoned (after which nothing
/// more is written).
#[derive(Debug, Default)]
struct Uncommitted {
    files: Mutex<Vec<ObjectPath>>,
    committed: AtomicBool,
    abandoned: AtomicBool,
}

impl Uncommitted {
    fn record(&self, location: &ObjectPath) -> object_store::Result<()> {
        if self.abandoned.load(Ordering::SeqCst) {
            return Err(object_store::Error::Generic {
                store: "delta",
                source: "the write was cancelled".into(),
            });
        }
        if location.parts().any(|p| p.as_ref() == "_delta_log") {
            if location.as_ref().ends_with(".json") {
                self.committed.store(true, Ordering::SeqCst);
            }
        } else if let Ok(mut files) = self.files.lock() {
            files.push(location.clone());
        }
        Ok(())
    }
}

/// Removes the data files of a write that did not commit when dropped (an error or a
/// cancellation), and the directory of a new local table.
struct Cleanup {
    written: Arc<Uncommitted>,
    store: ObjectStoreRef,
    created_dir: Option<PathBuf>,
}

impl Cleanup {
    fn keep(&self) {
        self.written.committed.store(true, Ordering::SeqCst);
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.written.abandoned.store(true, Ordering::SeqCst);
        if self.written.committed.load(Ordering::SeqCst) {
            return;
        }
        if let Some(dir) = &self.created_dir {
            let _ = std::fs::remove_dir_all(dir);
            return;
        }
        let files = self
            .written
            .files
            .lock()
            .map(|mut f| std::mem::take(&mut *f))
            .unwrap_or_default();
        // Deleting needs the store's client, on the runtime this runs on.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if files.is_empty() || runtime.runtime_flavor() != RuntimeFlavor::MultiThread {
            return;
        }
        tokio::task::block_in_place(|| {
            runtime.block_on(async {
                for file in files {
                    let _ = self.store.delete(&file).await;
                }
            });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(arg: &str) -> Option<DeltaSource> {
        DeltaSource::parse(arg).map(|r| r.expect("valid"))
    }

    #[test]
    fn table_arguments_name_a_location_and_a_version() {
        assert_eq!(
            parsed("s3://lake/t"),
            None,
            "no prefix: not a Delta argument"
        );
        assert_eq!(
            parsed("delta:s3://lake/t"),
            Some(DeltaSource::latest("s3://lake/t"))
        );
        let v3 = parsed("delta:data/t@v3").expect("some");
        assert_eq!(
            (v3.location.as_str(), v3.version),
            ("data/t", Version::Number(3))
        );
        let at = parsed("delta:t@2026-01-31T10:00:00+01:00").expect("some");
        let want = DateTime::parse_from_rfc3339("2026-01-31T09:00:00Z").expect("time");
        assert_eq!(at.version, Version::AsOf(want.with_timezone(&Utc)));
        // An '@' in a directory name is part of the location.
        let dir = parsed("delta:s3://b/x@y/t").expect("some");
        assert_eq!(dir.location, "s3://b/x@y/t");
        for bad in ["delta:", "delta:t@v", "delta:t@yesterday", "delta:t@v-1"] {
            let err = DeltaSource::parse(bad)
                .expect("some")
                .expect_err(bad)
                .to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn write_modes_and_table_options() {
        assert_eq!(save_mode("APPEND"), Ok(SaveMode::Append));
        assert!(save_mode("ignore").is_err_and(|e| e.contains("error, append or overwrite")));
        let options = HashMap::from([("format.version".to_owned(), "4".to_owned())]);
        assert_eq!(
            version_option("t", &options).expect("valid"),
            Version::Number(4)
        );
        let bad = HashMap::from([("format.verison".to_owned(), "4".to_owned())]);
        let err = version_option("t", &bad).expect_err("unknown").to_string();
        assert!(
            err.contains("'format.verison'") && err.contains("hint"),
            "{err}"
        );
    }
}
