//! Opening the store a data dir is served from: SQLite inside it (the
//! default), or PostgreSQL named by `--store` / `KEYCARD_STORE`.

use std::sync::Arc;

use anyhow::{Context as _, bail};
use keycard_store::{Durability, PgStore, SqliteStore, Store};

use crate::DataDir;

/// File in the data dir naming the PostgreSQL store it is served from
/// (without the password): a command on that data dir without `--store`
/// then refuses instead of silently reading an empty SQLite database.
const STORE_MARKER: &str = "store";

impl DataDir {
    pub(crate) async fn open_store(&self) -> anyhow::Result<Arc<dyn Store>> {
        self.open_store_with(Durability::default()).await
    }

    pub(crate) async fn open_store_with(
        &self,
        durability: Durability,
    ) -> anyhow::Result<Arc<dyn Store>> {
        let dir = self.path();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let marker = dir.join(STORE_MARKER);
        match self.store.as_deref() {
            None | Some("" | "sqlite") => {
                if let Ok(named) = std::fs::read_to_string(&marker) {
                    bail!(
                        "{} is served from the store {}: pass --store (or KEYCARD_STORE)",
                        dir.display(),
                        named.trim()
                    );
                }
                let store = SqliteStore::open_with(&dir.join("keycard.db"), durability)
                    .await
                    .with_context(|| format!("opening database in {}", dir.display()))?;
                Ok(Arc::new(store))
            }
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                // Errors never repeat the URL: it may hold a password.
                let store = PgStore::open(url)
                    .await
                    .context("opening the PostgreSQL store (--store)")?;
                keycard_services::write_private(&marker, redact(url).as_bytes())?;
                Ok(Arc::new(store))
            }
            Some(_) => bail!("--store takes a postgres:// URL (or `sqlite`, the default)"),
        }
    }
}

/// A store URL without its password and parameters.
fn redact(url: &str) -> String {
    let url = url.split('?').next().unwrap_or_default();
    let Some((scheme, rest)) = url.split_once("://") else {
        return String::new();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}@{host}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://kc:s3cr@t@db:5432/keycard?sslmode=require"),
            "postgres://kc@db:5432/keycard"
        );
        assert_eq!(redact("postgres://db/keycard"), "postgres://db/keycard");
        assert_eq!(redact("garbage"), "");
    }
}
