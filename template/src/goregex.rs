//! Go regular expressions (RE2 syntax, as `regexMatch`, `regexFind` and `regexReplaceAll` take
//! them in abtreece/confd) on the regex crate. The syntax is the same except in a few places,
//! which the pattern is rewritten for before compiling:
//!
//! - `\d \w \s \b` and their negations are ASCII in Go, Unicode in the regex crate;
//! - `\Q...\E` quotes literal text in Go only;
//! - inside a class, a `[` that does not open `[:name:]`, `&&` and `~~` are plain characters in
//!   Go but nested classes and set operators in the regex crate;
//! - octal escapes (`\101`) need a builder option.
//!
//! Compiled expressions are cached: a template calls the same pattern in every loop iteration.

use std::collections::HashMap;
use std::sync::Mutex;

use regex::{Regex, RegexBuilder};

/// At most this many compiled expressions are kept; beyond it the cache starts over.
const CACHE_SIZE: usize = 256;

/// Compiles a Go regular expression. The error is the regex crate's, which names the problem and
/// points at it in the pattern.
pub(crate) fn compile(pattern: &str) -> Result<Regex, String> {
    static CACHE: Mutex<Option<HashMap<String, Regex>>> = Mutex::new(None);
    // A panic while holding the lock leaves at worst a missing entry.
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    let map = cache.get_or_insert_with(HashMap::new);
    if let Some(re) = map.get(pattern) {
        return Ok(re.clone());
    }
    let re = RegexBuilder::new(&translate(pattern))
        .octal(true)
        .build()
        .map_err(|e| match e {
            // The rewritten pattern is not what the user wrote: say where in their own.
            regex::Error::Syntax(_) => {
                let orig = RegexBuilder::new(pattern).octal(true).build().err();
                let msg = orig
                    .as_ref()
                    .map_or_else(|| e.to_string(), ToString::to_string);
                format!("invalid regular expression {pattern:?}: {}", one_line(&msg))
            }
            other => format!(
                "regular expression {pattern:?}: {}",
                one_line(&other.to_string())
            ),
        })?;
    if map.len() >= CACHE_SIZE {
        map.clear();
    }
    map.insert(pattern.to_string(), re.clone());
    Ok(re)
}

/// The regex crate prints syntax errors over several lines with a caret under the problem; a
/// template error is one line.
fn one_line(msg: &str) -> String {
    let lines: Vec<&str> = msg.lines().map(str::trim_end).collect();
    match lines.iter().rposition(|l| l.starts_with("error:")) {
        Some(i) => lines[i].trim_start_matches("error:").trim().to_string(),
        None => lines.join(" "),
    }
}

/// Go's Perl classes, outside a bracket class and inside one.
fn perl_class(c: char) -> Option<(&'static str, &'static str)> {
    Some(match c {
        'd' => ("[0-9]", "0-9"),
        'D' => ("[^0-9]", "[^0-9]"),
        'w' => ("[0-9A-Za-z_]", "0-9A-Za-z_"),
        'W' => ("[^0-9A-Za-z_]", "[^0-9A-Za-z_]"),
        's' => ("[\\t\\n\\f\\r ]", "\\t\\n\\f\\r "),
        'S' => ("[^\\t\\n\\f\\r ]", "[^\\t\\n\\f\\r ]"),
        _ => return None,
    })
}

/// Rewrites a Go pattern into one the regex crate reads the same way (see the module docs).
fn translate(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    // Inside `[...]`, and whether the class has no item yet (a `]` there is literal).
    let mut in_class = false;
    let mut class_start = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            let Some(&n) = chars.get(i + 1) else {
                out.push('\\');
                break;
            };
            if n == 'Q' {
                let rest: String = chars[i + 2..].iter().collect();
                let (lit, after) = match rest.find("\\E") {
                    Some(end) => (&rest[..end], end + 2),
                    None => (rest.as_str(), rest.len()),
                };
                out.push_str(&regex::escape(lit));
                i += 2 + rest[..after].chars().count();
                class_start = false;
                continue;
            }
            match (perl_class(n), in_class) {
                (Some((outside, _)), false) => out.push_str(outside),
                (Some((_, inside)), true) => out.push_str(inside),
                (None, false) if n == 'b' || n == 'B' => {
                    out.push_str("(?-u:\\");
                    out.push(n);
                    out.push(')');
                }
                _ => {
                    out.push('\\');
                    out.push(n);
                }
            }
            i += 2;
            class_start = false;
            continue;
        }
        if in_class {
            match c {
                ']' if !class_start => in_class = false,
                '[' if chars.get(i + 1) == Some(&':') => {
                    // `[:alpha:]` is copied whole.
                    let rest: String = chars[i..].iter().collect();
                    if let Some(end) = rest[2..].find(":]") {
                        out.push_str(&rest[..end + 4]);
                        i += rest[..end + 4].chars().count();
                        class_start = false;
                        continue;
                    }
                    out.push('\\');
                }
                '[' | '&' | '~' => out.push('\\'),
                _ => {}
            }
            out.push(c);
            class_start = c == '^' && class_start && chars.get(i - 1) == Some(&'[');
            i += 1;
            continue;
        }
        if c == '[' {
            in_class = true;
            class_start = true;
        }
        out.push(c);
        i += 1;
    }
    out
}

/// Go's `ReplaceAllString`: every match replaced by `repl` with `$1`, `${name}` expanded; an
/// empty match right after the previous match is not replaced (the regex crate's iterator would
/// replace it).
pub(crate) fn replace_all(re: &Regex, s: &str, repl: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    let mut last_end: Option<usize> = None;
    for caps in re.captures_iter(s) {
        let Some(m) = caps.get(0) else { continue };
        if m.is_empty() && last_end == Some(m.start()) {
            continue;
        }
        out.push_str(&s[copied..m.start()]);
        caps.expand(repl, &mut out);
        copied = m.end();
        last_end = Some(m.end());
    }
    out.push_str(&s[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_match(p: &str, s: &str) -> bool {
        compile(p).expect("compiles").is_match(s)
    }

    #[test]
    fn perl_classes_are_ascii() {
        assert!(is_match(r"^\d+$", "123"));
        assert!(!is_match(r"^\d+$", "١٢٣"));
        assert!(is_match(r"^\D+$", "١٢٣"));
        assert!(!is_match(r"^\w$", "é"));
        assert!(is_match(r"^\W$", "é"));
        assert!(is_match(r"^[\d\s]+$", "1 2\t3"));
        assert!(!is_match(r"^\s$", "\u{0b}"));
        assert!(!is_match(r"^\s$", "\u{a0}"));
        assert!(is_match(r"^[^\d]+$", "ab"));
        assert!(is_match(r"^[a\D]+$", "xyz"));
        // ASCII word boundaries: é is not a word character in Go.
        assert!(is_match(r"\bx", "éx"));
        assert!(!is_match(r"\Bx", "éx"));
    }

    #[test]
    fn go_only_syntax() {
        assert!(is_match(r"^\Qa.b*\E$", "a.b*"));
        assert!(!is_match(r"^\Qa.b\E$", "axb"));
        assert!(is_match(r"^\Q[x\E", "[x"));
        assert!(is_match(r"^[[]$", "["));
        assert!(is_match(r"^[a&&b]+$", "a&b"));
        assert!(is_match(r"^[~~]$", "~"));
        assert!(is_match(r"^[]a]+$", "]a"));
        assert!(is_match(r"^[^]a]$", "b"));
        assert!(!is_match(r"^[^]a]$", "]"));
        assert!(is_match(r"^[[:alpha:]]+$", "abc"));
        assert!(is_match(r"^\101$", "A"));
    }

    #[test]
    fn errors_name_the_pattern_on_one_line() {
        let e = compile("a(b").expect_err("unclosed group");
        assert!(e.starts_with("invalid regular expression \"a(b\": "), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = compile("[z-a]").expect_err("bad range");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn replace_all_like_go() {
        let r = |p: &str, s: &str, repl: &str| replace_all(&compile(p).expect("compiles"), s, repl);
        assert_eq!(r("a*", "baaac", "-"), "-b-c-");
        assert_eq!(r("x*", "abc", "-"), "-a-b-c-");
        assert_eq!(r(r"(\w+)@(\w+)", "me@host", "$2 at ${1}"), "host at me");
        assert_eq!(r(r"(\w+)", "ab", "$1x"), "");
        assert_eq!(r(r"(?P<n>\d)", "a1", "<$n>"), "a<1>");
        assert_eq!(r("a", "aa", "$$"), "$$");
    }
}
