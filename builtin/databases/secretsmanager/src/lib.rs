//! confd's secretsmanager backend: AWS Secrets Manager, one secret per key, as the maintained
//! fork of confd reads it.
//!
//! A secret named `/myapp/database` (or `myapp/database`) is the key `/myapp/database`. A
//! secret whose text is a JSON object is flattened into keys below its name, one per field:
//! `{"username": "app", "pool": {"max": 5}}` gives `/myapp/database/username` = `app` and
//! `/myapp/database/pool/max` = `5` (strings as they are, numbers and booleans as JSON writes
//! them, `null` as the empty string, array items by index). With `noFlatten` the secret's text
//! is the value of its own key. Any other text is the value as it is; a binary secret is its
//! bytes in standard base64.
//!
//! A key returns every secret at or below it as a path (ListSecrets with a name filter, then
//! BatchGetSecretValue, 20 at a time), and, when flattening, the fields below it of a secret
//! named by one of its parents (`/myapp/database/username` reads the secret `/myapp/database`).
//! `versionStage` (default `AWSCURRENT`) picks the version; another stage reads each secret
//! with GetSecretValue.
//!
//! Secrets Manager has no change feed, so `watch_prefix` is `Unimplemented`. Settings
//! (region, endpoint, credentials) are those of every AWS backend, see `confd-aws-common`; the
//! fork's `SECRETSMANAGER_ENDPOINT_URL` is honoured too.

use std::collections::BTreeMap;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use base64::Engine as _;
use confd_sdk::keys::{dir, is_under, rooted};
use confd_sdk::{Config, Configured, Database, DatabaseInfo, Descriptor, Error, Setting, SrvNodes};
use serde::Deserialize;

/// The backend's name, as `--backend` spells it.
pub const NAME: &str = "secretsmanager";

/// The fork's endpoint variable for this service.
const ENDPOINT_ENV: &str = "SECRETSMANAGER_ENDPOINT_URL";
/// The version stage Secrets Manager reads by default.
pub const DEFAULT_VERSION_STAGE: &str = "AWSCURRENT";
/// BatchGetSecretValue takes at most this many ids.
const BATCH: usize = 20;

/// Everything the host and the plugin executable know about this backend.
pub const DESCRIPTOR: Descriptor = Descriptor {
    name: NAME,
    aliases: &[],
    summary: "AWS Secrets Manager (a secret per key, JSON secrets flattened); cannot watch",
    default_nodes: &[],
    settings: confd_aws_common::settings![
        Setting::from(
            "versionStage",
            &[],
            "version stage to read (default AWSCURRENT)"
        ),
        Setting::from(
            "noFlatten",
            &[],
            "keep a JSON secret whole under its own key (default false)"
        ),
    ],
    capabilities: &[],
    srv_nodes: SrvNodes::None,
    version: env!("CARGO_PKG_VERSION"),
    database: confd_sdk::shared::<SecretsManager>,
};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct Settings {
    version_stage: Option<String>,
    no_flatten: bool,
}

struct State {
    client: Client,
    version_stage: String,
    flatten: bool,
}

/// The secretsmanager backend. Configure it, then read.
#[derive(Default)]
pub struct SecretsManager {
    state: Configured<State>,
}

impl std::fmt::Debug for SecretsManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsManager")
    }
}

impl SecretsManager {
    pub fn new() -> SecretsManager {
        SecretsManager::default()
    }
}

/// One secret as read: its name and its text (binary secrets already in base64).
type Secret = (String, String);

/// `value` (a secret's text) as keys and values below `name`: flattened when it is a JSON
/// object and `flatten` is on, else the text under `name` itself.
pub fn entries(name: &str, value: &str, flatten: bool) -> Vec<(String, String)> {
    let key = rooted(name);
    if flatten && let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(value) {
        let mut out = Vec::new();
        for (field, item) in fields {
            walk(&format!("{key}/{field}"), &item, &mut out);
        }
        return out;
    }
    vec![(key, value.to_string())]
}

fn walk(key: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
    use serde_json::Value;
    match value {
        Value::Object(fields) => {
            for (field, item) in fields {
                walk(&format!("{key}/{field}"), item, out);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(&format!("{key}/{i}"), item, out);
            }
        }
        Value::String(text) => out.push((rooted(key), text.clone())),
        Value::Null => out.push((rooted(key), String::new())),
        other => out.push((rooted(key), other.to_string())),
    }
}

/// The names a secret holding `key` could have, parents first: `/a/b` → `/a`, `a`.
fn parents(key: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut current = dir(key);
    while current != "/" {
        names.push(current.clone());
        names.push(current.trim_start_matches('/').to_string());
        current = dir(&current);
    }
    names
}

impl State {
    /// The names of every secret at or below `key` (with or without a leading `/`).
    async fn names_under(&self, key: &str) -> Result<Vec<String>, Error> {
        let mut request = self.client.list_secrets();
        if key != "/" {
            let filter = Filter::builder()
                .key(FilterNameStringType::Name)
                .values(key)
                .values(key.trim_start_matches('/'))
                .build();
            request = request.filters(filter);
        }
        let mut pages = request.into_paginator().send();
        let mut names = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| {
                confd_aws_common::error(NAME, &format!("listing secrets under {key}"), &err)
            })?;
            names.extend(
                page.secret_list()
                    .iter()
                    .filter_map(|s| s.name())
                    .filter(|name| is_under(&rooted(name), key))
                    .map(str::to_string),
            );
        }
        Ok(names)
    }

    /// The secrets named in `ids` that exist; `key` is for messages.
    async fn read(&self, ids: &[String], key: &str) -> Result<Vec<Secret>, Error> {
        if self.version_stage != DEFAULT_VERSION_STAGE {
            let mut found = Vec::new();
            for id in ids {
                found.extend(self.read_one(id, key).await?);
            }
            return Ok(found);
        }
        let mut found = Vec::new();
        for chunk in ids.chunks(BATCH) {
            let answer = self
                .client
                .batch_get_secret_value()
                .set_secret_id_list(Some(chunk.to_vec()))
                .send()
                .await;
            let answer = match answer {
                Ok(answer) => answer,
                // A secret without a current value (deleted, or never given one between the
                // list and the read) can fail the whole batch: read those one by one.
                Err(err)
                    if err.as_service_error().and_then(|e| e.meta().code())
                        == Some("ResourceNotFoundException") =>
                {
                    for id in chunk {
                        found.extend(self.read_one(id, key).await?);
                    }
                    continue;
                }
                Err(err) => {
                    return Err(confd_aws_common::error(
                        NAME,
                        &format!("reading secrets for {key}"),
                        &err,
                    ));
                }
            };
            for problem in answer.errors() {
                let code = problem.error_code().unwrap_or_default();
                if code == "ResourceNotFoundException" {
                    continue;
                }
                return Err(Error::new(
                    confd_aws_common::code_kind(code),
                    format!(
                        "{NAME}: reading secret {} for {key}: {code}: {}",
                        problem.secret_id().unwrap_or_default(),
                        problem.message().unwrap_or_default()
                    ),
                ));
            }
            for secret in answer.secret_values() {
                let Some(name) = secret.name() else { continue };
                if let Some(text) = text(secret.secret_string(), secret.secret_binary()) {
                    found.push((name.to_string(), text));
                }
            }
        }
        Ok(found)
    }

    /// One secret at the configured version stage, if it exists.
    async fn read_one(&self, id: &str, key: &str) -> Result<Option<Secret>, Error> {
        let answer = self
            .client
            .get_secret_value()
            .secret_id(id)
            .version_stage(&self.version_stage)
            .send()
            .await;
        match answer {
            Ok(secret) => Ok(text(secret.secret_string(), secret.secret_binary())
                .map(|t| (secret.name().unwrap_or(id).to_string(), t))),
            Err(err) => match err.as_service_error() {
                Some(GetSecretValueError::ResourceNotFoundException(_)) => Ok(None),
                _ => Err(confd_aws_common::error(
                    NAME,
                    &format!("reading secret {id} ({}) for {key}", self.version_stage),
                    &err,
                )),
            },
        }
    }

    async fn get_values(&self, keys: &[String]) -> Result<BTreeMap<String, String>, Error> {
        let mut values = BTreeMap::new();
        for key in keys {
            let key = rooted(key);
            let mut ids = self.names_under(&key).await?;
            if self.flatten {
                ids.extend(parents(&key));
            }
            ids.sort();
            ids.dedup();
            for (name, text) in self.read(&ids, &key).await? {
                for (path, value) in entries(&name, &text, self.flatten) {
                    if is_under(&path, &key) {
                        values.insert(path, value);
                    }
                }
            }
        }
        Ok(values)
    }
}

/// A secret's value as text: the string, or the binary in base64.
fn text(
    string: Option<&str>,
    binary: Option<&aws_sdk_secretsmanager::primitives::Blob>,
) -> Option<String> {
    match (string, binary) {
        (Some(s), _) => Some(s.to_string()),
        (None, Some(b)) => Some(base64::engine::general_purpose::STANDARD.encode(b.as_ref())),
        (None, None) => None,
    }
}

#[confd_sdk::async_trait]
impl Database for SecretsManager {
    async fn configure(&self, config: Config) -> Result<(), Error> {
        let (aws, settings): (_, Settings) = confd_aws_common::decode(&config)?;
        let version_stage = settings
            .version_stage
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_VERSION_STAGE.to_string());
        let sdk = aws.sdk_config(Some(ENDPOINT_ENV)).await?;
        self.state.set(State {
            client: Client::new(&sdk),
            version_stage,
            flatten: !settings.no_flatten,
        });
        Ok(())
    }

    async fn get_values(&self, keys: &[String]) -> Result<BTreeMap<String, String>, Error> {
        self.state.get(NAME)?.get_values(keys).await
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
    fn json_objects_are_flattened_below_the_secret_name() {
        let got = entries(
            "myapp/database",
            r#"{"username":"app","port":5432,"tls":true,"none":null,"pool":{"max":5},"hosts":["a","b"]}"#,
            true,
        );
        let got: BTreeMap<_, _> = got.into_iter().collect();
        let want: BTreeMap<String, String> = [
            ("/myapp/database/username", "app"),
            ("/myapp/database/port", "5432"),
            ("/myapp/database/tls", "true"),
            ("/myapp/database/none", ""),
            ("/myapp/database/pool/max", "5"),
            ("/myapp/database/hosts/0", "a"),
            ("/myapp/database/hosts/1", "b"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn other_text_and_no_flatten_keep_the_value_whole() {
        assert_eq!(
            entries("/a/b", "8080", true),
            [("/a/b".to_string(), "8080".to_string())]
        );
        assert_eq!(
            entries("/a/b", "[1,2]", true),
            [("/a/b".to_string(), "[1,2]".to_string())]
        );
        assert_eq!(
            entries("/a/b", r#"{"x":1}"#, false),
            [("/a/b".to_string(), r#"{"x":1}"#.to_string())]
        );
    }

    #[test]
    fn parents_are_tried_with_and_without_the_leading_slash() {
        assert_eq!(parents("/a/b/c"), ["/a/b", "a/b", "/a", "a"]);
        assert!(parents("/a").is_empty());
    }

    #[test]
    fn binary_secrets_are_base64() {
        let blob = aws_sdk_secretsmanager::primitives::Blob::new(vec![0u8, 255, 1]);
        assert_eq!(text(None, Some(&blob)).as_deref(), Some("AP8B"));
        assert_eq!(text(Some("s"), Some(&blob)).as_deref(), Some("s"));
    }
}
