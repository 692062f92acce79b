//! The one rule for store bytes that are not UTF-8. Templates work on strings, so a backend must
//! turn every key and value it returns into one; replacing bad bytes with U+FFFD would render a
//! file nobody asked for, and failing without a name leaves the operator searching the store. Every
//! backend decodes through these functions: a key or value that is not UTF-8 fails the read with
//! an [`ErrorKind::InvalidData`](crate::ErrorKind::InvalidData) error naming the backend and the
//! key, and the host fails only the resources that asked for it.

use std::fmt::Write as _;

use crate::Error;

/// `value`, stored under `key`, as text; `backend` names the backend in the error.
pub fn value<'a>(backend: &str, key: &str, value: &'a [u8]) -> Result<&'a str, Error> {
    std::str::from_utf8(value).map_err(|e| {
        Error::invalid_data(format!(
            "{backend}: the value of key {key:?} is not UTF-8 text ({})",
            where_bad(value, &e)
        ))
    })
}

/// [`value`] for bytes the caller owns: no copy when they are valid.
pub fn value_string(backend: &str, key: &str, value: Vec<u8>) -> Result<String, Error> {
    String::from_utf8(value).map_err(|e| {
        Error::invalid_data(format!(
            "{backend}: the value of key {key:?} is not UTF-8 text ({})",
            where_bad(e.as_bytes(), &e.utf8_error())
        ))
    })
}

/// A key as the store holds it, as text. The error shows the key with its bad bytes escaped.
pub fn key<'a>(backend: &str, key: &'a [u8]) -> Result<&'a str, Error> {
    std::str::from_utf8(key).map_err(|e| {
        Error::invalid_data(format!(
            "{backend}: key \"{}\" is not UTF-8 text ({})",
            escape(key),
            where_bad(key, &e)
        ))
    })
}

/// [`key`] for bytes the caller owns.
pub fn key_string(backend: &str, key: Vec<u8>) -> Result<String, Error> {
    String::from_utf8(key).map_err(|e| {
        Error::invalid_data(format!(
            "{backend}: key \"{}\" is not UTF-8 text ({})",
            escape(e.as_bytes()),
            where_bad(e.as_bytes(), &e.utf8_error())
        ))
    })
}

/// Bytes for a message: valid text as it is, every other byte as `\xNN`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                c if c.is_control() => out.extend(c.escape_default()),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// The first bad byte (an error always has one: `valid_up_to` is below the length).
fn where_bad(bytes: &[u8], err: &std::str::Utf8Error) -> String {
    let at = err.valid_up_to();
    let b = bytes.get(at).copied().unwrap_or_default();
    format!("byte 0x{b:02x} at offset {at}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn valid_text_passes_unchanged() {
        assert_eq!(value("etcd", "/k", "héllo".as_bytes()), Ok("héllo"));
        assert_eq!(
            value_string("redis", "/k", b"plain".to_vec()),
            Ok("plain".to_string())
        );
        assert_eq!(key("etcd", b"/app/x"), Ok("/app/x"));
        assert_eq!(key_string("redis", b"/a".to_vec()), Ok("/a".to_string()));
    }

    #[test]
    fn a_bad_value_names_backend_key_and_byte() {
        let err = value("etcd", "/app/blob", b"ab\xffcd").expect_err("not UTF-8");
        assert_eq!(err.kind(), ErrorKind::InvalidData);
        assert_eq!(
            err.message(),
            "etcd: the value of key \"/app/blob\" is not UTF-8 text (byte 0xff at offset 2)"
        );
        let err = value_string("redis", "/r", b"\xe2\x82".to_vec()).expect_err("truncated");
        assert_eq!(
            err.message(),
            "redis: the value of key \"/r\" is not UTF-8 text (byte 0xe2 at offset 0)"
        );
    }

    #[test]
    fn a_bad_key_is_shown_escaped() {
        let err = key("etcd", b"/app/\xff\xfe\xc3\xa9").expect_err("not UTF-8");
        assert_eq!(err.kind(), ErrorKind::InvalidData);
        assert_eq!(
            err.message(),
            "etcd: key \"/app/\\xff\\xfeé\" is not UTF-8 text (byte 0xff at offset 5)"
        );
        let err = key_string("redis", b"k\x80\"".to_vec()).expect_err("not UTF-8");
        assert_eq!(
            err.message(),
            "redis: key \"k\\x80\\\"\" is not UTF-8 text (byte 0x80 at offset 1)"
        );
    }

    #[test]
    fn escape_keeps_text_and_marks_bytes() {
        assert_eq!(escape(b"a\nb\x00\xc3"), "a\\nb\\u{0}\\xc3");
    }
}
