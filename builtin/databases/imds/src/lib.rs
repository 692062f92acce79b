//! confd's imds backend: the EC2 instance metadata service, as the maintained fork of confd
//! reads it, through the AWS SDK's IMDS client (IMDSv2: a session token from
//! `PUT /latest/api/token`, then GETs carrying it; retries and token refresh are the SDK's).
//!
//! Keys are paths below `/latest`: `/meta-data/instance-id`,
//! `/meta-data/placement/availability-zone`, `/meta-data/tags/instance/<tag>` (when the
//! instance allows tags in its metadata), `/dynamic/instance-identity/document`, `/user-data`.
//! A key that names a directory returns every leaf below it, found by walking the listings
//! (a child ending in `/` is a directory; at the top `meta-data` and `dynamic` are directories,
//! as the service lists them without the slash). `/` walks everything. Listing entries of the
//! form `0=name` (`public-keys`) are not followed.
//!
//! Every answer, including "not found", is kept for `cacheTtl` (default 60 s, the fork's
//! `--imds-cache-ttl`; `0s` turns the cache off), so interval runs do not ask the service
//! again for data that rarely changes. Metadata has no change feed: `watch_prefix` is
//! `Unimplemented`.
//!
//! The endpoint is `endpoint` (`--node`), else the fork's `IMDS_ENDPOINT`, else the SDK's
//! (`AWS_EC2_METADATA_SERVICE_ENDPOINT`, the profile, `http://169.254.169.254`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::imds::client::Client;
use aws_config::imds::client::error::ImdsError;
use confd_sdk::keys::{base, dir, is_under, join, rooted};
use confd_sdk::{
    Config, Configured, Database, DatabaseInfo, Descriptor, Error, ErrorKind, Setting, SrvNodes,
};
use serde::Deserialize;

/// The backend's name, as `--backend` spells it.
pub const NAME: &str = "imds";
/// How long answers are kept by default (the fork's default).
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);
/// The fork's endpoint variable.
const ENDPOINT_ENV: &str = "IMDS_ENDPOINT";
/// The top-level names the service lists without a trailing `/` although they are directories.
const TOP_DIRECTORIES: &[&str] = &["meta-data", "dynamic"];

/// Everything the host and the plugin executable know about this backend.
pub const DESCRIPTOR: Descriptor = Descriptor {
    name: NAME,
    aliases: &[],
    summary: "EC2 instance metadata (IMDSv2) under /meta-data, /dynamic, /user-data; cannot watch",
    default_nodes: &[],
    settings: &[
        Setting::from(
            "endpoint",
            &["nodes"],
            "metadata endpoint URL (default: IMDS_ENDPOINT, AWS_EC2_METADATA_SERVICE_ENDPOINT, then http://169.254.169.254)",
        ),
        Setting::from(
            "cacheTtl",
            &[],
            "how long answers are kept (default 60s; 0s: no cache)",
        ),
        confd_aws_common::DIAL_TIMEOUT,
    ],
    capabilities: &[],
    srv_nodes: SrvNodes::None,
    version: env!("CARGO_PKG_VERSION"),
    database: confd_sdk::shared::<Imds>,
};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct Settings {
    #[serde(alias = "nodes")]
    endpoint: Option<String>,
    #[serde(with = "confd_sdk::config::duration")]
    cache_ttl: Duration,
    #[serde(with = "confd_sdk::config::duration::option")]
    dial_timeout: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            endpoint: None,
            cache_ttl: DEFAULT_CACHE_TTL,
            dial_timeout: None,
        }
    }
}

/// An answer of the service: the body, or `None` for 404.
type Answer = Option<String>;

struct State {
    client: Client,
    cache_ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, Answer)>>,
}

/// The imds backend. Configure it, then read.
#[derive(Default)]
pub struct Imds {
    state: Configured<State>,
}

impl std::fmt::Debug for Imds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Imds")
    }
}

impl Imds {
    pub fn new() -> Imds {
        Imds::default()
    }
}

/// What a listing line names: a child path and whether it is a directory.
fn children(dir_key: &str, listing: &str) -> Vec<(String, bool)> {
    listing
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.contains('='))
        .map(|line| {
            let is_dir = line.ends_with('/') || (dir_key == "/" && TOP_DIRECTORIES.contains(&line));
            (join(dir_key, line.trim_end_matches('/')), is_dir)
        })
        .collect()
}

impl State {
    /// `GET /latest<path>` (with a trailing `/` for a directory), through the cache.
    async fn fetch(&self, path: &str, directory: bool, key: &str) -> Result<Answer, Error> {
        let url = match (path, directory) {
            ("/", _) => "/latest/".to_string(),
            (p, true) => format!("/latest{p}/"),
            (p, false) => format!("/latest{p}"),
        };
        if !self.cache_ttl.is_zero() {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, answer)) = cache.get(&url)
                && at.elapsed() < self.cache_ttl
            {
                return Ok(answer.clone());
            }
        }
        let answer = match self.client.get(url.clone()).await {
            Ok(body) => Some(body.as_ref().to_string()),
            Err(ImdsError::ErrorResponse(response))
                if response.response().status().as_u16() == 404 =>
            {
                None
            }
            Err(err) => return Err(imds_error(&err, &url, key)),
        };
        if !self.cache_ttl.is_zero() {
            self.cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(url, (Instant::now(), answer.clone()));
        }
        Ok(answer)
    }

    /// Every leaf below the directory `dir_key`.
    async fn walk(
        &self,
        dir_key: &str,
        key: &str,
        out: &mut BTreeMap<String, String>,
    ) -> Result<(), Error> {
        let mut pending = vec![dir_key.to_string()];
        while let Some(current) = pending.pop() {
            let Some(listing) = self.fetch(&current, true, key).await? else {
                continue;
            };
            for (child, is_dir) in children(&current, &listing) {
                if is_dir {
                    pending.push(child);
                } else if let Some(value) = self.fetch(&child, false, key).await? {
                    out.insert(child, value);
                }
            }
        }
        Ok(())
    }

    async fn read(&self, key: &str, out: &mut BTreeMap<String, String>) -> Result<(), Error> {
        if key == "/" {
            return self.walk("/", key, out).await;
        }
        // The parent's listing says whether the key is a leaf, a directory or nothing.
        let parent = dir(key);
        let Some(listing) = self.fetch(&parent, true, key).await? else {
            return Ok(());
        };
        let name = base(key);
        let entry = children(&parent, &listing)
            .into_iter()
            .find(|(child, _)| base(child) == name);
        match entry {
            Some((_, true)) => self.walk(key, key, out).await,
            Some((child, false)) => {
                if let Some(value) = self.fetch(&child, false, key).await? {
                    out.insert(child, value);
                }
                Ok(())
            }
            None => Ok(()),
        }
    }
}

fn imds_error(err: &ImdsError, url: &str, key: &str) -> Error {
    let (kind, cause) = match err {
        ImdsError::ErrorResponse(response) => {
            let status = response.response().status().as_u16();
            let kind = match status {
                401 | 403 => ErrorKind::PermissionDenied,
                500..=599 => ErrorKind::Unavailable,
                _ => ErrorKind::Internal,
            };
            (kind, format!("HTTP {status}"))
        }
        ImdsError::FailedToLoadToken(_) => (
            ErrorKind::Unavailable,
            format!("no IMDSv2 session token: {}", confd_aws_common::chain(err)),
        ),
        _ => (ErrorKind::Unavailable, confd_aws_common::chain(err)),
    };
    Error::new(kind, format!("{NAME}: reading {key} (GET {url}): {cause}"))
}

#[confd_sdk::async_trait]
impl Database for Imds {
    async fn configure(&self, config: Config) -> Result<(), Error> {
        let settings: Settings = confd_sdk::config::decode(&config)?;
        let mut builder = Client::builder();
        let endpoint = settings
            .endpoint
            .filter(|e| !e.trim().is_empty())
            .or_else(|| std::env::var(ENDPOINT_ENV).ok().filter(|e| !e.is_empty()));
        if let Some(endpoint) = endpoint {
            let url = if endpoint.contains("://") {
                endpoint
            } else {
                format!("http://{endpoint}")
            };
            builder = builder.endpoint(&url).map_err(|e| {
                Error::invalid_config(format!(
                    "`endpoint` {url:?}: {}",
                    confd_aws_common::chain(&*e)
                ))
            })?;
        }
        if let Some(timeout) = settings.dial_timeout {
            builder = builder.connect_timeout(timeout);
        }
        self.state.set(State {
            client: builder.build(),
            cache_ttl: settings.cache_ttl,
            cache: Mutex::new(HashMap::new()),
        });
        Ok(())
    }

    async fn get_values(&self, keys: &[String]) -> Result<BTreeMap<String, String>, Error> {
        let state: Arc<State> = self.state.get(NAME)?;
        let mut values = BTreeMap::new();
        for key in keys {
            let key = rooted(key);
            let mut found = BTreeMap::new();
            state.read(&key, &mut found).await?;
            values.extend(found.into_iter().filter(|(k, _)| is_under(k, &key)));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_name_children_and_directories() {
        assert_eq!(
            children("/", "dynamic\nmeta-data\nuser-data"),
            [
                ("/dynamic".to_string(), true),
                ("/meta-data".to_string(), true),
                ("/user-data".to_string(), false)
            ]
        );
        assert_eq!(
            children("/meta-data", "ami-id\nplacement/\npublic-keys/\n\n"),
            [
                ("/meta-data/ami-id".to_string(), false),
                ("/meta-data/placement".to_string(), true),
                ("/meta-data/public-keys".to_string(), true)
            ]
        );
        assert!(children("/meta-data/public-keys", "0=my-key").is_empty());
    }

    #[test]
    fn the_cache_ttl_defaults_to_a_minute() {
        let settings: Settings =
            confd_sdk::config::decode(&Config::new()).expect("empty settings are valid");
        assert_eq!(settings.cache_ttl, DEFAULT_CACHE_TTL);
        let bad = Config::from([("cacheTtl".to_string(), "soon".to_string())]);
        let err = confd_sdk::config::decode::<Settings>(&bad).expect_err("bad duration");
        assert!(err.to_string().contains("cacheTtl"), "{err}");
    }
}
