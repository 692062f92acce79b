//! confd's ssm backend: AWS Systems Manager Parameter Store.
//!
//! Keys are parameter names: `/app/db/host` is the parameter of that name. A key returns the
//! parameter of its own name and every parameter below it as a path (GetParameter and a
//! recursive GetParametersByPath, every page), so `/app` never returns `/application`.
//! SecureString values come back decrypted (the caller needs `kms:Decrypt`); StringList values
//! as the comma-separated text SSM stores. Names without a leading `/` are not hierarchical in
//! SSM and cannot be reached through confd's rooted keys.
//!
//! The original confd ran GetParameter only when the path read found nothing, which lost a
//! parameter `/app` that has parameters below it; this backend always asks for both.
//!
//! Parameter Store has no change feed, so `watch_prefix` is `Unimplemented`: use `--onetime`
//! or `--interval`. Settings (region, endpoint, credentials) are those of every AWS backend,
//! see `confd-aws-common`; the fork's `SSM_ENDPOINT_URL` is honoured too.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_ssm::Client;
use aws_sdk_ssm::operation::get_parameter::GetParameterError;
use aws_sdk_ssm::types::Parameter;
use confd_sdk::keys::{is_under, rooted};
use confd_sdk::{Config, Configured, Database, DatabaseInfo, Descriptor, Error, SrvNodes};
use serde::Deserialize;

/// The backend's name, as `--backend` spells it.
pub const NAME: &str = "ssm";

/// The fork's endpoint variable for this service.
const ENDPOINT_ENV: &str = "SSM_ENDPOINT_URL";

/// Everything the host and the plugin executable know about this backend.
pub const DESCRIPTOR: Descriptor = Descriptor {
    name: NAME,
    aliases: &[],
    summary: "AWS SSM Parameter Store (parameters by path, decrypted); cannot watch",
    default_nodes: &[],
    settings: confd_aws_common::settings![],
    capabilities: &[],
    srv_nodes: SrvNodes::None,
    version: env!("CARGO_PKG_VERSION"),
    database: confd_sdk::shared::<Ssm>,
};

/// Nothing of its own: only the shared AWS settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {}

/// The ssm backend. Configure it, then read.
#[derive(Debug, Default)]
pub struct Ssm {
    client: Configured<Client>,
}

impl Ssm {
    pub fn new() -> Ssm {
        Ssm::default()
    }

    fn client(&self) -> Result<Arc<Client>, Error> {
        self.client.get(NAME)
    }
}

/// The parameter's name as a confd key and its value; `None` for a parameter without either.
fn entry(parameter: Parameter) -> Option<(String, String)> {
    Some((rooted(parameter.name()?), parameter.value?))
}

/// The parameter named `key`, if there is one.
async fn exact(client: &Client, key: &str) -> Result<Option<(String, String)>, Error> {
    let answer = client
        .get_parameter()
        .name(key)
        .with_decryption(true)
        .send()
        .await;
    match answer {
        Ok(found) => Ok(found.parameter.and_then(entry)),
        Err(err) => match err.as_service_error() {
            Some(GetParameterError::ParameterNotFound(_)) => Ok(None),
            // A key SSM cannot take as a parameter name (too deep, odd characters) names no
            // parameter; the path read says what is wrong with it if anything is.
            Some(e) if e.meta().code() == Some("ValidationException") => Ok(None),
            _ => Err(confd_aws_common::error(
                NAME,
                &format!("reading parameter {key}"),
                &err,
            )),
        },
    }
}

/// Every parameter below `key` as a path, page after page.
async fn below(client: &Client, key: &str) -> Result<Vec<(String, String)>, Error> {
    let mut pages = client
        .get_parameters_by_path()
        .path(key)
        .recursive(true)
        .with_decryption(true)
        .into_paginator()
        .send();
    let mut found = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|err| {
            confd_aws_common::error(NAME, &format!("reading parameters under {key}"), &err)
        })?;
        found.extend(
            page.parameters
                .unwrap_or_default()
                .into_iter()
                .filter_map(entry),
        );
    }
    Ok(found)
}

#[confd_sdk::async_trait]
impl Database for Ssm {
    async fn configure(&self, config: Config) -> Result<(), Error> {
        let (aws, Settings {}) = confd_aws_common::decode(&config)?;
        let sdk = aws.sdk_config(Some(ENDPOINT_ENV)).await?;
        self.client.set(Client::new(&sdk));
        Ok(())
    }

    async fn get_values(&self, keys: &[String]) -> Result<BTreeMap<String, String>, Error> {
        let client = self.client()?;
        let mut values = BTreeMap::new();
        for key in keys {
            let key = rooted(key);
            let (own, under) = if key == "/" {
                (Ok(None), below(&client, &key).await)
            } else {
                tokio::join!(exact(&client, &key), below(&client, &key))
            };
            for (name, value) in own?.into_iter().chain(under?) {
                if is_under(&name, &key) {
                    values.insert(name, value);
                }
            }
        }
        Ok(values)
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
