//! Rendering without writing: `confd --validate` renders every resource against mock data and
//! `confd --preflight` against the real stores, to show what would be written and which keys
//! have no value, with no stage file, no command and no destination touched.

use std::collections::BTreeMap;

use confd_sdk::keys::is_under;

use crate::engine::Store;
use crate::keys;
use crate::resource::Resource;
use crate::run::{Backends, groups, known};
use crate::sync::{SyncError, check_format};

/// One resource rendered in memory.
#[derive(Debug)]
pub struct Preview<'a> {
    pub resource: &'a Resource,
    /// The query keys for which the store holds nothing (neither the key nor a key below it).
    pub missing: Vec<String>,
    /// The text that would be written (it passed the `output_format` check), or why there is
    /// none. A fetch error is the same for every member of a group.
    pub rendered: Result<String, SyncError>,
}

/// Fetches once per group (same backend, prefix and keys, as a run would) and renders every
/// member, in resource order.
pub async fn preview<'a>(resources: &'a [Resource], backends: &Backends) -> Vec<Preview<'a>> {
    let mut out: Vec<Preview<'a>> = Vec::with_capacity(resources.len());
    for group in groups(resources) {
        let fetched = fetch(group.backend, group.query_keys, backends).await;
        for resource in group.members {
            let preview = match &fetched {
                Err(failure) => Preview {
                    resource,
                    missing: Vec::new(),
                    rendered: Err(failure.to_error()),
                },
                Ok(values) => {
                    let missing = group
                        .query_keys
                        .iter()
                        .filter(|k| !values.keys().any(|key| is_under(key, k)))
                        .cloned()
                        .collect();
                    let store = Store::new(keys::store_values(values, group.prefix));
                    Preview {
                        resource,
                        missing,
                        rendered: render(resource, &store),
                    }
                }
            };
            out.push(preview);
        }
    }
    // Groups gather resources; report them in the order they were loaded.
    out.sort_by_key(|p| {
        resources
            .iter()
            .position(|r| std::ptr::eq(r, p.resource))
            .unwrap_or(usize::MAX)
    });
    out
}

/// Why a group's fetch failed, kept so every member gets its own [`SyncError`].
enum FetchFailure {
    Unknown {
        backend: String,
        known: String,
    },
    Store {
        backend: String,
        source: confd_sdk::Error,
    },
}

impl FetchFailure {
    fn to_error(&self) -> SyncError {
        match self {
            FetchFailure::Unknown { backend, known } => SyncError::UnknownBackend {
                backend: backend.clone(),
                known: known.clone(),
            },
            FetchFailure::Store { backend, source } => SyncError::Fetch {
                backend: backend.clone(),
                source: source.clone(),
            },
        }
    }
}

async fn fetch(
    backend: &str,
    query_keys: &[String],
    backends: &Backends,
) -> Result<BTreeMap<String, String>, FetchFailure> {
    if query_keys.is_empty() {
        return Ok(BTreeMap::new());
    }
    let Some(db) = backends.get(backend) else {
        return Err(FetchFailure::Unknown {
            backend: backend.to_string(),
            known: known(backends),
        });
    };
    db.get_values(query_keys)
        .await
        .map_err(|source| FetchFailure::Store {
            backend: backend.to_string(),
            source,
        })
}

fn render(resource: &Resource, store: &Store) -> Result<String, SyncError> {
    let text = resource
        .template()
        .render(store)
        .map_err(|e| SyncError::Render {
            src: resource.src().to_string(),
            message: e.to_string(),
        })?;
    check_format(resource, &text)?;
    Ok(text)
}
