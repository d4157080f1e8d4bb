//! Tables named by their location: `--table NAME=LOCATION` and URL tables (`FROM
//! 'data/*.parquet'`, `FROM 's3://bucket/events/'`): Parquet or CSV files, local or in an
//! object store ([`crate::stores`]), or Delta tables ([`crate::delta`]).

use std::path::Path;
use std::sync::Arc;

use datafusion::catalog::{DynamicFileCatalog, TableProvider, UrlTableFactory};
use datafusion::common::Result as DfResult;
use datafusion::datasource::dynamic_file::DynamicListTableFactory;
use datafusion::datasource::listing::{ListingTableConfig, ListingTableConfigExt, ListingTableUrl};
use datafusion::execution::SessionState;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions, SessionContext};

use crate::delta::{self, DeltaSource};
use crate::error::Result;
use crate::stores::{StoreError, store_url};

/// Registers a Parquet (default) or CSV file, directory or glob, local or in an object
/// store (`s3://bucket/events/`), as table `name`; a Delta table for `delta:LOCATION`
/// (see [`DeltaSource::parse`]) or a location holding a `_delta_log/`.
pub async fn register_table(ctx: &SessionContext, name: &str, path: &str) -> Result<()> {
    let delta = match DeltaSource::parse(path) {
        Some(source) => Some(source?),
        None if delta::is_delta(ctx.runtime_env().as_ref(), path).await => {
            Some(DeltaSource::latest(path))
        }
        None => None,
    };
    if let Some(source) = delta {
        ctx.register_table(name, delta::open(&ctx.state(), &source).await?)?;
        return Ok(());
    }
    let is_csv = Path::new(path)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let registered = if is_csv {
        ctx.register_csv(name, path, CsvReadOptions::new()).await
    } else {
        ctx.register_parquet(name, path, ParquetReadOptions::default())
            .await
    };
    match registered {
        Err(e) if store_url(path).is_some() => Err(StoreError::reading(path, &e).into()),
        other => Ok(other?),
    }
}

/// `SELECT ... FROM 'data/*.parquet'` and `FROM 's3://bucket/events/'`: DataFusion's URL
/// tables, except that a URL of an object store that cannot be listed (no such bucket,
/// denied, no files) fails with the store's error rather than as an unknown table.
pub fn enable_url_tables(ctx: SessionContext) -> SessionContext {
    let inner = DynamicListTableFactory::default();
    let factory = Arc::new(UrlTables { inner });
    let catalogs = Arc::new(DynamicFileCatalog::new(
        Arc::clone(ctx.state().catalog_list()),
        Arc::clone(&factory) as Arc<dyn UrlTableFactory>,
    ));
    let state = SessionStateBuilder::new_from_existing(ctx.state())
        .with_catalog_list(catalogs)
        .build();
    let ctx = SessionContext::new_with_state(state);
    factory
        .inner
        .session_store()
        .with_state(ctx.state_weak_ref());
    ctx
}

#[derive(Debug)]
struct UrlTables {
    inner: DynamicListTableFactory,
}

#[async_trait::async_trait]
impl UrlTableFactory for UrlTables {
    async fn try_new(&self, url: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let session = self.inner.session_store().get_session().upgrade();
        let state = session.and_then(|s| s.read().as_any().downcast_ref::<SessionState>().cloned());
        if let Some(state) = &state
            && delta::is_delta(state.runtime_env(), url).await
        {
            return delta::open(state, &DeltaSource::latest(url))
                .await
                .map(Some)
                .map_err(delta::into_df);
        }
        let table = self.inner.try_new(url).await?;
        if table.is_some() || store_url(url).is_none() {
            return Ok(table);
        }
        let (Some(state), Ok(table_url)) = (state, ListingTableUrl::parse(url)) else {
            return Ok(None);
        };
        match ListingTableConfig::new(table_url)
            .infer_options(&state)
            .await
        {
            Ok(_) => Ok(None),
            Err(e) => Err(StoreError::reading(url, &e).into()),
        }
    }
}
