//! The implementations behind the functions abtreece/confd added to confd's set (its sprig-like
//! helpers, `hostname`, the interface lookups), with the fork's semantics; `funcs.rs` lists them
//! in the shared table.

use std::net::IpAddr;

use crate::value::Val;

/// The longest string `repeat` builds: a config file of more is a mistake, not a wish.
pub(crate) const MAX_REPEAT_BYTES: usize = 16 << 20;

/// Emptiness as the fork's `empty`, `default` and `coalesce` see it (Go's zero values): nil,
/// false, 0, "", an empty list or map, and a pair with empty key and value. Times, SRV records
/// (pointers in Go) and locations are never empty; a month, weekday or duration is when 0.
pub(crate) fn is_empty(v: &Val) -> bool {
    match v {
        Val::Nil => true,
        Val::Bool(b) => !b,
        Val::Int(i) | Val::Duration(i) => *i == 0,
        Val::Month(n) | Val::Weekday(n) => *n == 0,
        Val::Float(f) => *f == 0.0,
        Val::Str(s) => s.is_empty(),
        Val::List(l) => l.is_empty(),
        Val::Map(m) => m.is_empty(),
        Val::Pair(p) => p.key.is_empty() && p.value.is_empty(),
        Val::Time(_) | Val::Srv(_) | Val::Location(_) => false,
    }
}

/// Every line of `s` prefixed with `spaces` spaces (none when negative); "" stays "".
pub(crate) fn indent(spaces: i64, s: &str) -> String {
    if s.is_empty() {
        return String::new();
    }
    let pad = " ".repeat(usize::try_from(spaces).unwrap_or(0));
    let mut out = String::with_capacity(s.len() + pad.len());
    out.push_str(&pad);
    out.push_str(&s.replace('\n', &format!("\n{pad}")));
    out
}

/// Single quotes around `s`, a quote inside doubled (SQL style).
pub(crate) fn squote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Words of an identifier or phrase: split at `_`, `-` and spaces, before an upper-case letter
/// that follows a lower-case letter or digit, and before the last capital of an acronym that is
/// followed by a lower-case letter (`HTTPServer` is `HTTP`, `Server`).
fn words(s: &str) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let mut words = Vec::new();
    let mut current = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if matches!(c, '_' | '-' | ' ') {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            continue;
        }
        if c.is_uppercase() && !current.is_empty() {
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_uppercase();
            if next_lower || !prev_upper {
                words.push(std::mem::take(&mut current));
            }
        }
        current.push(c);
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

pub(crate) fn snakecase(s: &str) -> String {
    lower_words(s).join("_")
}

pub(crate) fn kebabcase(s: &str) -> String {
    lower_words(s).join("-")
}

pub(crate) fn camelcase(s: &str) -> String {
    let mut out = String::new();
    for (i, w) in lower_words(s).into_iter().enumerate() {
        let mut chars = w.chars();
        match chars.next() {
            Some(first) if i > 0 => {
                out.push_str(&crate::funcs::go_to_upper(&first.to_string()));
                out.push_str(chars.as_str());
            }
            _ => out.push_str(&w),
        }
    }
    out
}

fn lower_words(s: &str) -> Vec<String> {
    words(s)
        .iter()
        .map(|w| crate::funcs::go_to_lower(w))
        .collect()
}

/// The lowercase hex SHA-256 digest of `s`.
pub(crate) fn sha256sum(s: &str) -> String {
    use sha2::Digest as _;
    use std::fmt::Write as _;
    let digest = sha2::Sha256::digest(s.as_bytes());
    let mut hex = String::with_capacity(64);
    for b in digest.iter() {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// The machine's host name (Go's `os.Hostname`).
pub(crate) fn hostname() -> Result<String, String> {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .map_err(|e| format!("cannot read the host name: {e}"))
}

/// The first IPv4 (`v4`) or first other address of the network interface `name`, in the order
/// the system lists them; "" when there is none or no such interface (as the fork).
pub(crate) fn interface_address(name: &str, v4: bool) -> String {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return String::new();
    };
    for a in addrs.filter(|a| a.interface_name == name) {
        let Some(addr) = a.address else { continue };
        let ip = if let Some(sin) = addr.as_sockaddr_in() {
            IpAddr::V4(sin.ip())
        } else if let Some(sin6) = addr.as_sockaddr_in6() {
            // Go counts an IPv4-mapped IPv6 address as IPv4.
            match sin6.ip().to_ipv4_mapped() {
                Some(v4addr) => IpAddr::V4(v4addr),
                None => IpAddr::V6(sin6.ip()),
            }
        } else {
            continue;
        };
        if ip.is_ipv4() == v4 {
            return ip.to_string();
        }
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn emptiness() {
        for v in [
            Val::Nil,
            Val::Bool(false),
            Val::Int(0),
            Val::Float(0.0),
            Val::from(""),
            Val::List(vec![]),
            Val::Map(BTreeMap::new()),
            crate::funcs::pair("", ""),
            Val::Month(0),
            Val::Duration(0),
        ] {
            assert!(is_empty(&v), "{v:?}");
        }
        for v in [
            Val::Bool(true),
            Val::Int(-1),
            Val::Float(0.1),
            Val::from(" "),
            Val::List(vec![Val::Nil]),
            crate::funcs::pair("", "v"),
            crate::funcs::srv("", 0, 0, 0),
            Val::Month(1),
        ] {
            assert!(!is_empty(&v), "{v:?}");
        }
    }

    #[test]
    fn indenting() {
        assert_eq!(indent(2, "a\nb"), "  a\n  b");
        assert_eq!(indent(2, "a\n"), "  a\n  ");
        assert_eq!(indent(-3, "a\nb"), "a\nb");
        assert_eq!(indent(4, ""), "");
    }

    #[test]
    fn word_cases() {
        for (s, snake, camel, kebab) in [
            ("HTTPServer", "http_server", "httpServer", "http-server"),
            (
                "myVar_name-x y",
                "my_var_name_x_y",
                "myVarNameXY",
                "my-var-name-x-y",
            ),
            (
                "getHTTPResponseCode",
                "get_http_response_code",
                "getHttpResponseCode",
                "get-http-response-code",
            ),
            ("v2Beta", "v2_beta", "v2Beta", "v2-beta"),
            ("ab2C", "ab2_c", "ab2C", "ab2-c"),
            ("__x__", "x", "x", "x"),
            ("", "", "", ""),
            ("ÉtéÀ", "été_à", "étéÀ", "été-à"),
        ] {
            assert_eq!(snakecase(s), snake, "{s}");
            assert_eq!(camelcase(s), camel, "{s}");
            assert_eq!(kebabcase(s), kebab, "{s}");
        }
    }

    #[test]
    fn quoting_and_hashing() {
        assert_eq!(squote("it's"), "'it''s'");
        assert_eq!(
            sha256sum("hello"),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(
            sha256sum(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn machine_facts() {
        let host = hostname().expect("host name");
        assert!(!host.is_empty());
        assert_eq!(interface_address("lo", true), "127.0.0.1");
        let v6 = interface_address("lo", false);
        assert!(v6.is_empty() || v6 == "::1", "{v6}");
        assert_eq!(interface_address("no-such-interface0", true), "");
    }
}
