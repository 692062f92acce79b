//! confd's dynamodb backend: Amazon DynamoDB in the original confd's table layout.
//!
//! The table (setting `table`, `--table`; required) has a string partition key named `key` and
//! a string attribute `value`; an item `{key: "/app/db/host", value: "db.internal"}` is the key
//! `/app/db/host`. A key returns the item of its own name and every item below it as a path.
//! An item whose `value` is not a string (or is missing) is skipped with a warning, as confd
//! does.
//!
//! Each read is one Scan of the table, every page, filtered to the requested prefixes (up to
//! [`MAX_FILTERED_KEYS`] keys; more keys read the whole table). The original confd did a
//! GetItem per key and scanned only when it found nothing, which lost the items below a key
//! that is itself an item; a Scan consumes read capacity for the whole table whatever the
//! filter, so reads of large tables cost accordingly.
//!
//! DynamoDB Streams would be a change feed, but confd's layout never required them, so
//! `watch_prefix` is `Unimplemented`. Settings (region, endpoint, credentials) are those of
//! every AWS backend, see `confd-aws-common`; the fork's `DYNAMODB_ENDPOINT_URL` is honoured.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::scan::ScanError;
use aws_sdk_dynamodb::types::AttributeValue;
use confd_sdk::keys::{is_under, rooted};
use confd_sdk::{
    Config, Configured, Database, DatabaseInfo, Descriptor, Error, ErrorKind, Setting, SrvNodes,
};
use serde::Deserialize;

/// The backend's name, as `--backend` spells it.
pub const NAME: &str = "dynamodb";

/// The fork's endpoint variable for this service.
const ENDPOINT_ENV: &str = "DYNAMODB_ENDPOINT_URL";
/// Above this many keys a read scans without a filter: DynamoDB limits an expression to 4 KB.
pub const MAX_FILTERED_KEYS: usize = 64;

/// Everything the host and the plugin executable know about this backend.
pub const DESCRIPTOR: Descriptor = Descriptor {
    name: NAME,
    aliases: &[],
    summary: "Amazon DynamoDB (confd's key/value table layout); cannot watch",
    default_nodes: &[],
    settings: confd_aws_common::settings![Setting::from(
        "table",
        &["table"],
        "the table (required): string partition key `key`, string attribute `value`"
    )],
    capabilities: &[],
    srv_nodes: SrvNodes::None,
    version: env!("CARGO_PKG_VERSION"),
    database: confd_sdk::shared::<DynamoDb>,
};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    table: Option<String>,
}

struct State {
    client: Client,
    table: String,
}

/// The dynamodb backend. Configure it, then read.
#[derive(Default)]
pub struct DynamoDb {
    state: Configured<State>,
}

impl std::fmt::Debug for DynamoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DynamoDb")
    }
}

impl DynamoDb {
    pub fn new() -> DynamoDb {
        DynamoDb::default()
    }
}

/// The filter of a Scan for `keys`: `begins_with(key, k)` for each, or `None` for all items.
fn filter(keys: &[String]) -> Option<(String, HashMap<String, AttributeValue>)> {
    if keys.len() > MAX_FILTERED_KEYS || keys.iter().any(|k| k == "/") {
        return None;
    }
    let mut terms = Vec::new();
    let mut values = HashMap::new();
    for (i, key) in keys.iter().enumerate() {
        terms.push(format!("begins_with(#k, :p{i})"));
        values.insert(format!(":p{i}"), AttributeValue::S(key.clone()));
    }
    Some((terms.join(" OR "), values))
}

impl State {
    fn scan_error(&self, keys: &[String], err: &SdkError<ScanError>) -> Error {
        let doing = format!("reading {} from table {:?}", keys.join(", "), self.table);
        if let Some(ScanError::ResourceNotFoundException(_)) = err.as_service_error() {
            return Error::new(
                ErrorKind::InvalidConfig,
                format!("{NAME}: {doing}: the table does not exist (or is not in this region)"),
            );
        }
        confd_aws_common::error(NAME, &doing, err)
    }

    async fn get_values(&self, keys: &[String]) -> Result<BTreeMap<String, String>, Error> {
        let keys: Vec<String> = keys.iter().map(|k| rooted(k)).collect();
        if keys.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut request = self.client.scan().table_name(&self.table);
        if let Some((expression, values)) = filter(&keys) {
            request = request
                .filter_expression(expression)
                .expression_attribute_names("#k", "key")
                .set_expression_attribute_values(Some(values));
        }
        let mut pages = request.into_paginator().send();
        let mut found = BTreeMap::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| self.scan_error(&keys, &err))?;
            for item in page.items() {
                let Some(AttributeValue::S(name)) = item.get("key") else {
                    continue;
                };
                let path = rooted(name);
                if !keys.iter().any(|k| is_under(&path, k)) {
                    continue;
                }
                match item.get("value") {
                    Some(AttributeValue::S(value)) => {
                        found.insert(path, value.clone());
                    }
                    _ => tracing::warn!(
                        table = %self.table,
                        "skipping item {name:?}: its `value` attribute is not a string"
                    ),
                }
            }
        }
        Ok(found)
    }
}

#[confd_sdk::async_trait]
impl Database for DynamoDb {
    async fn configure(&self, config: Config) -> Result<(), Error> {
        let (aws, settings): (_, Settings) = confd_aws_common::decode(&config)?;
        let table = settings
            .table
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| {
                Error::invalid_config(
                    "no DynamoDB table configured: set `table` (--table, CONFD_TABLE)",
                )
            })?;
        let sdk = aws.sdk_config(Some(ENDPOINT_ENV)).await?;
        self.state.set(State {
            client: Client::new(&sdk),
            table,
        });
        Ok(())
    }

    async fn get_values(&self, keys: &[String]) -> Result<BTreeMap<String, String>, Error> {
        let state: Arc<State> = self.state.get(NAME)?;
        state.get_values(keys).await
    }

    async fn watch_prefix(
        &self,
        _prefix: &str,
        _keys: &[String],
        _wait_index: u64,
    ) -> Result<u64, Error> {
        Err(confd_aws_common::watch_unsupported(NAME))
    }

    async fn info(&self) -> Result<DatabaseInfo, Error> {
        Ok(DESCRIPTOR.info())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_per_key_until_the_whole_table_is_cheaper() {
        let (expression, values) =
            filter(&["/a".to_string(), "/b".to_string()]).expect("two keys filter");
        assert_eq!(expression, "begins_with(#k, :p0) OR begins_with(#k, :p1)");
        assert_eq!(values[":p1"], AttributeValue::S("/b".to_string()));
        assert!(filter(&["/".to_string()]).is_none());
        let many: Vec<String> = (0..=MAX_FILTERED_KEYS).map(|i| format!("/k{i}")).collect();
        assert!(filter(&many).is_none());
    }
}
