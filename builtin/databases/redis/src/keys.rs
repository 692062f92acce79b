//! How confd paths map onto redis keys, and how one requested key is read:
//! a string, a hash (fields become subkeys) or a prefix found with SCAN.

use std::collections::BTreeMap;

use confd_sdk::{Error, text};

use crate::{Connection, Link, NAME};

/// SCAN batch size: large enough to keep round trips few, small enough not
/// to stall the server.
const SCAN_COUNT: usize = 1000;

/// The redis key for a confd path. With the default separator `/` the path
/// is the key (leading `/` included, as confd stores them); otherwise the
/// leading `/` is dropped and `/` becomes the separator (`/a/b` → `a:b`).
pub fn transform(path: &str, separator: &str) -> String {
    if separator == "/" {
        path.to_string()
    } else {
        path.trim_start_matches('/').replace('/', separator)
    }
}

/// The confd path for a redis key: separators become `/`, with a leading `/`.
pub fn clean(key: &str, separator: &str) -> String {
    let path = if separator == "/" {
        key.to_string()
    } else {
        key.replace(separator, "/")
    };
    if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    }
}

pub use confd_sdk::keys::is_under;

/// Escapes redis glob characters so a key is matched literally.
pub(crate) fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Reads one requested confd path into `values`, as confd does: the key
/// itself if it is a string or a hash, otherwise every key under it.
pub(crate) async fn read_key(
    connection: &Connection,
    link: &Link,
    requested: &str,
    values: &mut BTreeMap<String, String>,
) -> Result<(), Error> {
    let sep = connection.settings.separator.as_str();
    // confd strips glob suffixes such as `/upstream/*`; a trailing `/` asks for the same key
    // (otherwise `/app/` would scan for `/app//*` and find nothing).
    let mut path = requested
        .replace("/*", "")
        .trim_end_matches('/')
        .to_string();
    if path.is_empty() {
        path = "/".to_string();
    }
    let key = transform(&path, sep);
    let mut conn = link.manager.clone();
    let kind: String = connection
        .deadline(
            &link.node,
            redis::cmd("TYPE").arg(&key).query_async(&mut conn),
        )
        .await?;
    match kind.as_str() {
        "string" => {
            let value: Option<Vec<u8>> = connection
                .deadline(
                    &link.node,
                    redis::cmd("GET").arg(&key).query_async(&mut conn),
                )
                .await?;
            if let Some(value) = value {
                let path = clean(&key, sep);
                let value = text::value_string(NAME, &path, value)?;
                values.insert(path, value);
            }
        }
        "hash" => {
            read_hash(connection, link, &key, values).await?;
        }
        _ => {
            let pattern = if path == "/" {
                "*".to_string()
            } else {
                format!("{}{}*", escape_glob(&key), escape_glob(sep))
            };
            let found = scan(connection, link, &pattern).await?;
            read_found(connection, link, &found, &path, values).await?;
        }
    }
    Ok(())
}

async fn read_hash(
    connection: &Connection,
    link: &Link,
    key: &str,
    values: &mut BTreeMap<String, String>,
) -> Result<(), Error> {
    let sep = connection.settings.separator.as_str();
    let mut conn = link.manager.clone();
    let fields: Vec<(Vec<u8>, Vec<u8>)> = connection
        .deadline(
            &link.node,
            redis::cmd("HGETALL").arg(key).query_async(&mut conn),
        )
        .await?;
    for (field, value) in fields {
        let mut full = format!("{key}/").into_bytes();
        full.extend_from_slice(&field);
        let path = clean(&text::key_string(NAME, full)?, sep);
        let value = text::value_string(NAME, &path, value)?;
        values.insert(path, value);
    }
    Ok(())
}

/// SCAN (never KEYS, which blocks the server) for every key matching.
async fn scan(connection: &Connection, link: &Link, pattern: &str) -> Result<Vec<String>, Error> {
    let mut conn = link.manager.clone();
    let mut cursor: u64 = 0;
    let mut found = Vec::new();
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = connection
            .deadline(
                &link.node,
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT)
                    .query_async(&mut conn),
            )
            .await?;
        for key in batch {
            found.push(text::key_string(NAME, key)?);
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    found.sort();
    found.dedup();
    Ok(found)
}

/// Reads the keys a SCAN found: strings by value, hashes field by field
/// (so a hash under a prefix reads the same as when asked for directly);
/// other types are not configuration and are skipped.
async fn read_found(
    connection: &Connection,
    link: &Link,
    found: &[String],
    requested: &str,
    values: &mut BTreeMap<String, String>,
) -> Result<(), Error> {
    if found.is_empty() {
        return Ok(());
    }
    let sep = connection.settings.separator.as_str();
    let mut conn = link.manager.clone();
    let mut types = redis::pipe();
    for key in found {
        types.cmd("TYPE").arg(key);
    }
    let kinds: Vec<String> = connection
        .deadline(&link.node, types.query_async(&mut conn))
        .await?;
    let strings: Vec<&String> = found
        .iter()
        .zip(&kinds)
        .filter(|(_, kind)| kind.as_str() == "string")
        .map(|(key, _)| key)
        .collect();
    if !strings.is_empty() {
        let mut gets = redis::pipe();
        for key in &strings {
            gets.cmd("GET").arg(key.as_str());
        }
        let got: Vec<Option<Vec<u8>>> = connection
            .deadline(&link.node, gets.query_async(&mut conn))
            .await?;
        for (key, value) in strings.iter().zip(got) {
            // A key deleted between SCAN and GET is simply gone.
            if let Some(value) = value {
                let path = clean(key, sep);
                if is_under(&path, requested) {
                    let value = text::value_string(NAME, &path, value)?;
                    values.insert(path, value);
                }
            }
        }
    }
    for (key, kind) in found.iter().zip(&kinds) {
        if kind == "hash" && is_under(&clean(key, sep), requested) {
            read_hash(connection, link, key, values).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transform_and_clean_round_trip() {
        assert_eq!(transform("/app/db/host", "/"), "/app/db/host");
        assert_eq!(transform("/app/db/host", ":"), "app:db:host");
        assert_eq!(clean("app:db:host", ":"), "/app/db/host");
        assert_eq!(clean("/app/db/host", "/"), "/app/db/host");
        assert_eq!(clean("plain", "/"), "/plain");
        for sep in ["/", ":", "::", "."] {
            let path = "/a/b/c";
            assert_eq!(clean(&transform(path, sep), sep), path, "separator {sep}");
        }
    }

    #[test]
    fn globs_are_escaped() {
        assert_eq!(escape_glob("/a*b?[c]\\"), "/a\\*b\\?\\[c\\]\\\\");
    }
}
