//! Tables and outputs in object stores: `s3://`, `gs://`, `az://` (and `abfss://`, ...)
//! and `http(s)://` URLs, as datafusion-cli takes them.
//!
//! A store is made on first use of its bucket ([`Stores`], the session's object store
//! registry), configured the way the store's own tools are: for S3, the standard `AWS_*`
//! environment variables (`AWS_ENDPOINT_URL` for S3-compatible stores), then the profile
//! (`AWS_PROFILE`, else `default`) of `~/.aws/credentials` and `~/.aws/config`; for GCS
//! and Azure, the `GOOGLE_*` and `AZURE_*` variables. `OPTIONS ('aws.region' '...')` of
//! `CREATE EXTERNAL TABLE` and `COPY` configure the store of their location over all of
//! those ([`with_store_options`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use datafusion::logical_expr::dml::CopyTo;
use datafusion::logical_expr::{CreateExternalTable, DdlStatement, LogicalPlan};
use datafusion::prelude::SessionContext;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::http::HttpBuilder;
use object_store::path::Path as ObjectPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreScheme, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};
use url::Url;

use crate::error::{Error, Result};

/// Option prefixes that configure a store rather than a table.
const PREFIXES: [&str; 4] = ["aws.", "gcp.", "azure.", "http."];

/// The longest object key sent to a store: S3's, GCS's and Azure's own maximum. Longer
/// keys cannot exist there, and object_store's request signing panics on URIs over
/// 64 KiB, so they fail before any request.
const MAX_KEY: usize = 1024;

/// The longest bucket (or host) name: DNS's maximum.
const MAX_BUCKET: usize = 253;

/// The largest AWS profile file read (they are a few lines).
const MAX_PROFILE_FILE: u64 = 1 << 20;

/// The session's object store registry: the local file system and registered stores, and
/// a store made from the environment for the bucket of any other URL.
#[derive(Debug, Default)]
pub struct Stores {
    registered: DefaultObjectStoreRegistry,
}

impl ObjectStoreRegistry for Stores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.registered.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> DfResult<Arc<dyn ObjectStore>> {
        self.registered.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> DfResult<Arc<dyn ObjectStore>> {
        if let Ok(store) = self.registered.get_store(url) {
            return Ok(store);
        }
        let store = build(url, &[])?;
        self.registered.register_store(url, Arc::clone(&store));
        Ok(store)
    }
}

/// The URL of `location` when it names an object store rather than a local path.
pub fn store_url(location: &str) -> Option<Url> {
    Url::parse(location)
        .ok()
        .filter(|u| u.scheme().len() > 1 && u.scheme() != "file")
}

/// For `CREATE EXTERNAL TABLE` and `COPY` with store options (`aws.*`, `gcp.*`, `azure.*`,
/// `http.*`): registers their location's store made with them, and returns the plan
/// without them (the rest configure the format). Any other plan is returned unchanged.
pub fn with_store_options(ctx: &SessionContext, plan: LogicalPlan) -> Result<LogicalPlan> {
    match plan {
        LogicalPlan::Ddl(DdlStatement::CreateExternalTable(table)) => {
            let options = take_store_options(ctx, &table.locations, table.options.clone())?;
            Ok(LogicalPlan::Ddl(DdlStatement::CreateExternalTable(
                Box::new(CreateExternalTable { options, ..*table }),
            )))
        }
        LogicalPlan::Copy(copy) => {
            let locations = std::slice::from_ref(&copy.output_url);
            let options = take_store_options(ctx, locations, copy.options.clone())?;
            Ok(LogicalPlan::Copy(CopyTo { options, ..copy }))
        }
        other => Ok(other),
    }
}

/// Registers the stores of `locations` made with the store options among `options`;
/// returns the others.
pub(crate) fn take_store_options(
    ctx: &SessionContext,
    locations: &[String],
    options: HashMap<String, String>,
) -> Result<HashMap<String, String>> {
    let (store, rest): (HashMap<_, _>, HashMap<_, _>) = options
        .into_iter()
        .partition(|(k, _)| PREFIXES.iter().any(|p| k.starts_with(p)));
    let store: Vec<_> = store.into_iter().collect();
    if store.is_empty() {
        return Ok(rest);
    }
    for location in locations {
        let url = Url::parse(location).map_err(|e| StoreError::new(location, e.to_string()))?;
        ctx.runtime_env()
            .register_object_store(&url, build(&url, &store)?);
    }
    Ok(rest)
}

/// Why a store could not be made for a URL.
#[derive(Debug, thiserror::Error)]
#[error("cannot use the object store of {url}: {message}")]
pub struct StoreError {
    url: String,
    message: String,
}

impl StoreError {
    fn new(url: &str, message: impl Into<String>) -> Self {
        Self {
            url: url.to_owned(),
            message: message.into(),
        }
    }

    /// Reading a table at `url` failed with `error`: its message, with a hint for the
    /// usual causes.
    pub fn reading(url: &str, error: &DataFusionError) -> Self {
        let message = error.find_root().to_string();
        let message = if message.contains("No files for table")
            || message.contains("No files found at")
        {
            "no files at this location (hint: check the path; a directory's URL ends with '/')"
                .to_owned()
        } else if message.contains("NoSuchBucket") {
            format!("{message}\n  hint: the bucket does not exist; check the URL's bucket name")
        } else if message.contains("403 Forbidden") || message.contains("necessary privileges") {
            format!(
                "{message}\n  hint: the store refused the credentials or they lack access; check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or the table's 'aws.*' options)"
            )
        } else {
            message
        };
        Self::new(url, message)
    }
}

impl From<StoreError> for DataFusionError {
    fn from(e: StoreError) -> Self {
        DataFusionError::External(Box::new(e))
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::DataFusion(e.into())
    }
}

/// The store of `url`'s bucket (or host), configured from the environment and then
/// `options` (`aws.region`, `gcp.service_account_path`, ...: the store's own keys).
fn build(url: &Url, options: &[(String, String)]) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let fail = |message: String| StoreError::new(url.as_str(), message);
    let (scheme, _) = ObjectStoreScheme::parse(url).map_err(|e| fail(e.to_string()))?;
    if url.host_str().is_some_and(|h| h.len() > MAX_BUCKET) {
        return Err(fail(format!(
            "the bucket's name is longer than {MAX_BUCKET} bytes"
        )));
    }
    let option = |prefix: &'static str| {
        options
            .iter()
            .filter_map(move |(k, v)| k.strip_prefix(prefix).map(|k| (k.to_owned(), v.clone())))
    };
    let unknown = |key: &str, prefix: &str| {
        let known = match prefix {
            "aws." => {
                "aws.region, aws.endpoint, aws.access_key_id, aws.secret_access_key, aws.session_token, aws.allow_http"
            }
            "gcp." => {
                "gcp.service_account_path, gcp.service_account_key, gcp.application_credentials"
            }
            "azure." => {
                "azure.account_name, azure.access_key, azure.client_id, azure.client_secret, azure.tenant_id"
            }
            _ => "http.allow_http, http.timeout",
        };
        fail(format!(
            "unknown option '{prefix}{key}' (hint: the store's keys, such as {known})"
        ))
    };
    let store: Arc<dyn ObjectStore> = match scheme {
        ObjectStoreScheme::AmazonS3 => {
            let mut builder = with_aws_profile(AmazonS3Builder::from_env().with_url(url.as_str()));
            for (key, value) in option("aws.") {
                let key: AmazonS3ConfigKey = key.parse().map_err(|_| unknown(&key, "aws."))?;
                builder = builder.with_config(key, value);
            }
            // An endpoint given as http:// is meant: loopback MinIO and the like.
            if builder
                .get_config_value(&AmazonS3ConfigKey::Endpoint)
                .is_some_and(|e| e.starts_with("http://"))
            {
                builder = builder.with_allow_http(true);
            }
            Arc::new(builder.build().map_err(|e| fail(e.to_string()))?)
        }
        ObjectStoreScheme::GoogleCloudStorage => {
            let mut builder = GoogleCloudStorageBuilder::from_env().with_url(url.as_str());
            for (key, value) in option("gcp.") {
                let key: GoogleConfigKey = key.parse().map_err(|_| unknown(&key, "gcp."))?;
                builder = builder.with_config(key, value);
            }
            Arc::new(builder.build().map_err(|e| fail(e.to_string()))?)
        }
        ObjectStoreScheme::MicrosoftAzure => {
            let mut builder = MicrosoftAzureBuilder::from_env().with_url(url.as_str());
            for (key, value) in option("azure.") {
                let key: AzureConfigKey = key.parse().map_err(|_| unknown(&key, "azure."))?;
                builder = builder.with_config(key, value);
            }
            Arc::new(builder.build().map_err(|e| fail(e.to_string()))?)
        }
        ObjectStoreScheme::Http => {
            let mut builder = HttpBuilder::new().with_url(url.origin().ascii_serialization());
            for (key, value) in option("http.") {
                let key = key.parse().map_err(|_| unknown(&key, "http."))?;
                builder = builder.with_config(key, value);
            }
            Arc::new(builder.build().map_err(|e| fail(e.to_string()))?)
        }
        other => return Err(fail(format!("{other:?} URLs are not supported"))),
    };
    Ok(Arc::new(KeyLimit {
        inner: store,
        on_put: None,
    }))
}

/// What is told of each object a store starts writing, and may refuse it.
type PutHook = Arc<dyn Fn(&ObjectPath) -> object_store::Result<()> + Send + Sync>;

/// `store`, telling `hook` the location of each object it starts writing (a put or a
/// multipart upload) before it is written; an error of `hook` refuses the write.
pub(crate) fn on_put(
    store: Arc<dyn ObjectStore>,
    hook: impl Fn(&ObjectPath) -> object_store::Result<()> + Send + Sync + 'static,
) -> Arc<dyn ObjectStore> {
    Arc::new(KeyLimit {
        inner: store,
        on_put: Some(Arc::new(hook)),
    })
}

/// A store that refuses keys longer than [`MAX_KEY`] bytes with an error, and tells its
/// hook of what it writes. (`get_ranges` is the trait's own: the cloud stores' too,
/// through `get_opts`.)
struct KeyLimit {
    inner: Arc<dyn ObjectStore>,
    on_put: Option<PutHook>,
}

impl std::fmt::Debug for KeyLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("KeyLimit").field(&self.inner).finish()
    }
}

impl KeyLimit {
    fn check_put(&self, path: &ObjectPath) -> object_store::Result<()> {
        Self::check(path)?;
        self.on_put.as_ref().map_or(Ok(()), |hook| hook(path))
    }

    fn check(path: &ObjectPath) -> object_store::Result<()> {
        let length = path.as_ref().len();
        if length <= MAX_KEY {
            return Ok(());
        }
        Err(object_store::Error::Generic {
            store: "object store",
            source: format!(
                "the key is {length} bytes, longer than the stores' limit of {MAX_KEY}: {}...",
                &path.as_ref()[..path.as_ref().floor_char_boundary(80)]
            )
            .into(),
        })
    }

    fn check_prefix(prefix: Option<&ObjectPath>) -> object_store::Result<()> {
        prefix.map_or(Ok(()), Self::check)
    }
}

impl std::fmt::Display for KeyLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait::async_trait]
impl ObjectStore for KeyLimit {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.check_put(location)?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.check_put(location)?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        Self::check(location)?;
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjectPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
        let checked = locations.and_then(|path| async move { Self::check(&path).map(|()| path) });
        self.inner.delete_stream(checked.boxed())
    }

    fn list(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match Self::check_prefix(prefix) {
            Ok(()) => self.inner.list(prefix),
            Err(e) => futures::stream::once(async { Err(e) }).boxed(),
        }
    }

    fn list_with_offset(
        &self,
        prefix: Option<&ObjectPath>,
        offset: &ObjectPath,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match Self::check_prefix(prefix).and(Self::check(offset)) {
            Ok(()) => self.inner.list_with_offset(prefix, offset),
            Err(e) => futures::stream::once(async { Err(e) }).boxed(),
        }
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> object_store::Result<ListResult> {
        Self::check_prefix(prefix)?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        Self::check(from)?;
        Self::check(to)?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        Self::check(from)?;
        Self::check(to)?;
        self.inner.rename_opts(from, to, options).await
    }
}

/// Fills what the environment left unset from the AWS profile files, as the AWS CLI
/// reads them: credentials from `AWS_SHARED_CREDENTIALS_FILE` (`~/.aws/credentials`),
/// region and endpoint from `AWS_CONFIG_FILE` (`~/.aws/config`), in the section of
/// `AWS_PROFILE` (else `default`).
fn with_aws_profile(mut builder: AmazonS3Builder) -> AmazonS3Builder {
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    let home = dirs::home_dir().unwrap_or_default();
    let file = |var: &str, name: &str| {
        std::env::var_os(var).map_or_else(|| home.join(".aws").join(name), PathBuf::from)
    };
    let config_section = if profile == "default" {
        profile.clone()
    } else {
        format!("profile {profile}")
    };
    let values = [
        (
            file("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
            profile.as_str(),
        ),
        (file("AWS_CONFIG_FILE", "config"), config_section.as_str()),
    ]
    .into_iter()
    .flat_map(|(path, section)| profile_section(&path, section));
    let has_key = builder
        .get_config_value(&AmazonS3ConfigKey::AccessKeyId)
        .is_some();
    for (key, value) in values {
        let key = match key.as_str() {
            "aws_access_key_id" if !has_key => AmazonS3ConfigKey::AccessKeyId,
            "aws_secret_access_key" if !has_key => AmazonS3ConfigKey::SecretAccessKey,
            "aws_session_token" if !has_key => AmazonS3ConfigKey::Token,
            "region" => AmazonS3ConfigKey::Region,
            "endpoint_url" => AmazonS3ConfigKey::Endpoint,
            _ => continue,
        };
        if builder.get_config_value(&key).is_none() {
            builder = builder.with_config(key, value);
        }
    }
    builder
}

/// The `key = value` lines of `[section]` in an INI file; none if it cannot be read.
fn profile_section(path: &std::path::Path, section: &str) -> Vec<(String, String)> {
    let readable = std::fs::metadata(path).is_ok_and(|m| m.len() <= MAX_PROFILE_FILE);
    let Some(text) = readable
        .then(|| std::fs::read_to_string(path).ok())
        .flatten()
    else {
        return Vec::new();
    };
    let mut inside = false;
    let mut values = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
        } else if let (true, Some((key, value))) = (inside, line.split_once('=')) {
            values.push((key.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_section_of_a_profile_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("credentials");
        std::fs::write(
            &path,
            "# comment\n[default]\naws_access_key_id = A\n\n[profile dev]\nregion=eu-west-1\n; x\nendpoint_url = http://127.0.0.1:9000\n",
        )
        .expect("write");
        assert_eq!(
            profile_section(&path, "default"),
            [("aws_access_key_id".into(), "A".into())]
        );
        assert_eq!(
            profile_section(&path, "profile dev"),
            [
                ("region".into(), "eu-west-1".into()),
                ("endpoint_url".into(), "http://127.0.0.1:9000".into())
            ]
        );
        assert!(profile_section(&path, "other").is_empty());
        assert!(profile_section(&dir.path().join("absent"), "default").is_empty());
    }

    #[test]
    fn store_options_are_the_stores_own_keys() {
        let url = Url::parse("s3://bucket/table/").expect("url");
        let options = [("aws.region".to_owned(), "eu-west-1".to_owned())];
        assert!(build(&url, &options).is_ok());
        let bad = [("aws.regoin".to_owned(), "eu-west-1".to_owned())];
        let message = build(&url, &bad).expect_err("unknown key").to_string();
        assert!(
            message.contains("s3://bucket/table/") && message.contains("aws.regoin"),
            "{message}"
        );
        let ftp = Url::parse("ftp://host/x").expect("url");
        assert!(build(&ftp, &[]).is_err());
    }

    #[tokio::test]
    async fn keys_longer_than_the_stores_limit_fail_before_any_request() {
        use object_store::ObjectStoreExt;
        let store = KeyLimit {
            inner: Arc::new(object_store::memory::InMemory::new()),
            on_put: None,
        };
        let short = ObjectPath::from("a".repeat(MAX_KEY));
        let long = ObjectPath::from("a".repeat(MAX_KEY + 1));
        assert!(store.put(&short, "x".into()).await.is_ok());
        let err = store.put(&long, "x".into()).await.expect_err("too long");
        assert!(
            err.to_string()
                .contains("longer than the stores' limit of 1024"),
            "{err}"
        );
        assert!(store.get(&long).await.is_err());
        let listed: Vec<_> = store.list(Some(&long)).collect().await;
        assert!(matches!(listed.as_slice(), [Err(_)]));
        let url = Url::parse(&format!("s3://{}/x", "b".repeat(MAX_BUCKET + 1))).expect("url");
        assert!(build(&url, &[]).is_err());
    }

    #[test]
    fn urls_and_paths() {
        assert!(store_url("s3://bucket/x.parquet").is_some());
        assert!(store_url("https://host/x.parquet").is_some());
        assert!(store_url("data/x.parquet").is_none());
        assert!(store_url("/abs/x.parquet").is_none());
        assert!(store_url("file:///abs/x.parquet").is_none());
    }
}
