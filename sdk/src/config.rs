//! Decodes a plugin's flat string settings into a typed struct (the role mapstructure plays in
//! Go plugins), with errors that name the key and never echo a secret.
//!
//! ```
//! use serde::Deserialize;
//! use std::time::Duration;
//!
//! #[derive(Deserialize, Debug)]
//! #[serde(rename_all = "camelCase", deny_unknown_fields, default)]
//! struct Settings {
//!     nodes: Vec<String>,
//!     basic_auth: bool,
//!     #[serde(with = "confd_sdk::config::duration")]
//!     timeout: Duration,
//! }
//! impl Default for Settings {
//!     fn default() -> Self {
//!         Settings { nodes: vec!["127.0.0.1:2379".into()], basic_auth: false, timeout: Duration::from_secs(5) }
//!     }
//! }
//!
//! let config = [("nodes", "a:1, b:2"), ("timeout", "1m30s")]
//!     .into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
//! let settings: Settings = confd_sdk::config::decode(&config).unwrap();
//! assert_eq!(settings.nodes, ["a:1", "b:2"]);
//! assert_eq!(settings.timeout, Duration::from_secs(90));
//! ```
//!
//! Values are parsed on demand, by the type of the field: booleans from `true`/`false`/`1`/`0`
//! (Go's `strconv.ParseBool` spellings), integers and floats, `Vec<T>` from a comma-separated
//! list (items trimmed, empty items skipped), `Option<T>` (an empty string is `None`), strings,
//! unit enum variants from their (renamed) names, and durations through [`duration`].

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

use crate::{Config, Error};

/// Decodes `config` into `T`. See the [module docs](self) for the accepted value syntax.
pub fn decode<T: DeserializeOwned>(config: &Config) -> Result<T, ConfigError> {
    let mut entries: Vec<(&str, &str)> = config
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // Sorted, so the error reported first does not depend on hash order.
    entries.sort_unstable();
    T::deserialize(MapDeserializer { entries })
}

/// Whether a key holds a secret whose value must never appear in messages.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "token", "key"]
        .iter()
        .any(|word| key.contains(word))
}

/// A setting that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A key the plugin does not know.
    #[error("unknown key {key:?} ({})", expected_list(.expected))]
    UnknownKey { key: String, expected: Vec<String> },
    /// A value that does not parse as the field's type. `value` is `None` for secrets.
    #[error("key {key:?}: invalid value {}: {problem}", shown(.value))]
    InvalidValue {
        key: String,
        value: Option<String>,
        problem: String,
    },
    /// A required key (a field without a default) is absent.
    #[error("missing key {key:?}")]
    MissingKey { key: String },
    /// Anything else serde reports (e.g. a custom validation in `Deserialize`).
    #[error("{0}")]
    Other(String),
}

impl ConfigError {
    /// An invalid-value error for `key`, hiding the value when the key names a secret. For
    /// checks a plugin makes after decoding (ranges, URL schemes, ...).
    pub fn invalid_value(
        key: impl Into<String>,
        value: &str,
        problem: impl Into<String>,
    ) -> ConfigError {
        let key = key.into();
        let value = (!is_secret_key(&key)).then(|| value.to_string());
        ConfigError::InvalidValue {
            key,
            value,
            problem: problem.into(),
        }
    }
}

fn expected_list(expected: &[String]) -> String {
    if expected.is_empty() {
        "this plugin takes no settings".into()
    } else {
        format!("expected one of: {}", expected.join(", "))
    }
}

fn shown(value: &Option<String>) -> String {
    match value {
        Some(v) => format!("{v:?}"),
        None => "(hidden)".into(),
    }
}

impl From<ConfigError> for Error {
    fn from(err: ConfigError) -> Error {
        Error::invalid_config(err.to_string())
    }
}

impl de::Error for ConfigError {
    fn custom<T: fmt::Display>(msg: T) -> ConfigError {
        ConfigError::Other(msg.to_string())
    }
    // serde's default messages quote the offending value; ours must not (it may be a secret),
    // and the key and value are added by the map access anyway.
    fn invalid_type(_unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> ConfigError {
        ConfigError::Other(format!("expected {exp}"))
    }
    fn invalid_value(_unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> ConfigError {
        ConfigError::Other(format!("expected {exp}"))
    }
    fn invalid_length(len: usize, exp: &dyn de::Expected) -> ConfigError {
        ConfigError::Other(format!("expected {exp}, got {len} items"))
    }
    fn unknown_variant(_variant: &str, expected: &'static [&'static str]) -> ConfigError {
        ConfigError::Other(format!("expected one of: {}", expected.join(", ")))
    }
    fn unknown_field(field: &str, expected: &'static [&'static str]) -> ConfigError {
        ConfigError::UnknownKey {
            key: field.to_string(),
            expected: expected.iter().map(|s| s.to_string()).collect(),
        }
    }
    fn missing_field(field: &'static str) -> ConfigError {
        ConfigError::MissingKey {
            key: field.to_string(),
        }
    }
}

/// The whole settings map, seen by serde as a map (a struct's fields).
struct MapDeserializer<'de> {
    entries: Vec<(&'de str, &'de str)>,
}

impl<'de> de::Deserializer<'de> for MapDeserializer<'de> {
    type Error = ConfigError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        visitor.visit_map(MapAccess {
            entries: self.entries.into_iter(),
            current: None,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct MapAccess<'de> {
    entries: std::vec::IntoIter<(&'de str, &'de str)>,
    current: Option<(&'de str, &'de str)>,
}

impl<'de> de::MapAccess<'de> for MapAccess<'de> {
    type Error = ConfigError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ConfigError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.current = Some((key, value));
        seed.deserialize(de::value::BorrowedStrDeserializer::new(key))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ConfigError> {
        let (key, value) = self
            .current
            .take()
            .ok_or_else(|| ConfigError::Other("value requested before its key".into()))?;
        seed.deserialize(ValueDeserializer { key, value })
            .map_err(|err| match err {
                // A visitor's complaint about this value: attach the key (and the value unless
                // it is a secret).
                ConfigError::Other(problem) => ConfigError::invalid_value(key, value, problem),
                other => other,
            })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// One setting's value, parsed when serde asks for a type.
struct ValueDeserializer<'de> {
    key: &'de str,
    value: &'de str,
}

impl ValueDeserializer<'_> {
    fn invalid(&self, problem: &str) -> ConfigError {
        ConfigError::invalid_value(self.key, self.value, problem)
    }
}

macro_rules! parse_number {
    ($($method:ident $visit:ident $ty:ty, $what:literal;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
            match self.value.trim().parse::<$ty>() {
                Ok(n) => visitor.$visit(n),
                Err(_) => Err(self.invalid($what)),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for ValueDeserializer<'de> {
    type Error = ConfigError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        visitor.visit_borrowed_str(self.value)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        match self.value.trim() {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => visitor.visit_bool(true),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => visitor.visit_bool(false),
            _ => Err(self.invalid("expected a boolean (true, false, 1 or 0)")),
        }
    }

    parse_number! {
        deserialize_i8 visit_i8 i8, "expected an integer between -128 and 127";
        deserialize_i16 visit_i16 i16, "expected an integer between -32768 and 32767";
        deserialize_i32 visit_i32 i32, "expected a 32-bit integer";
        deserialize_i64 visit_i64 i64, "expected an integer";
        deserialize_i128 visit_i128 i128, "expected an integer";
        deserialize_u8 visit_u8 u8, "expected an unsigned integer between 0 and 255";
        deserialize_u16 visit_u16 u16, "expected an unsigned integer between 0 and 65535";
        deserialize_u32 visit_u32 u32, "expected a 32-bit unsigned integer";
        deserialize_u64 visit_u64 u64, "expected an unsigned integer";
        deserialize_u128 visit_u128 u128, "expected an unsigned integer";
        deserialize_f32 visit_f32 f32, "expected a number";
        deserialize_f64 visit_f64 f64, "expected a number";
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        let mut chars = self.value.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => visitor.visit_char(c),
            _ => Err(self.invalid("expected a single character")),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        visitor.visit_borrowed_str(self.value)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        visitor.visit_borrowed_str(self.value)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        visitor.visit_borrowed_bytes(self.value.as_bytes())
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        visitor.visit_borrowed_bytes(self.value.as_bytes())
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        if self.value.trim().is_empty() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        let key = self.key;
        let items = self
            .value
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(move |value| ValueDeserializer { key, value });
        visitor.visit_seq(de::value::SeqDeserializer::new(items))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, ConfigError> {
        Err(self.invalid("nested settings are not supported; use a flat key"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        _fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, ConfigError> {
        let problem = if name == "Duration" {
            "durations need #[serde(with = \"confd_sdk::config::duration\")]".to_string()
        } else {
            format!("{name} cannot be read from a single string")
        };
        Err(self.invalid(&problem))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        let value = de::value::BorrowedStrDeserializer::<ConfigError>::new(self.value.trim());
        visitor.visit_enum(value)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        visitor.visit_borrowed_str(self.value)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        visitor.visit_unit()
    }
}

impl<'de> IntoDeserializer<'de, ConfigError> for ValueDeserializer<'de> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

/// `#[serde(with = "confd_sdk::config::duration")]`: a `Duration` written the humantime way
/// (`500ms`, `5s`, `1m30s`, `2h`).
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize as _, Deserializer, de::Error as _};

    /// Parses a humantime duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        parse(&text).map_err(D::Error::custom)
    }

    pub(crate) fn parse(text: &str) -> Result<Duration, String> {
        humantime::parse_duration(text.trim())
            .map_err(|err| format!("expected a duration such as 500ms, 5s or 1m30s ({err})"))
    }

    /// The same for `Option<Duration>`; an empty value is `None`.
    pub mod option {
        use std::time::Duration;

        use serde::{Deserialize as _, Deserializer, de::Error as _};

        /// Parses an optional humantime duration.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Duration>, D::Error> {
            let text = Option::<std::borrow::Cow<str>>::deserialize(deserializer)?;
            match text {
                None => Ok(None),
                Some(text) => super::parse(&text).map(Some).map_err(D::Error::custom),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Scheme {
        Http,
        Https,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "camelCase", deny_unknown_fields, default)]
    struct Settings {
        nodes: Vec<String>,
        scheme: Scheme,
        basic_auth: bool,
        username: String,
        password: String,
        client_key: Option<String>,
        timeout_ms: u64,
        port: u16,
        offset: i32,
        ratio: f64,
        #[serde(with = "duration")]
        timeout: Duration,
        #[serde(with = "duration::option")]
        interval: Option<Duration>,
        ports: Vec<u16>,
        separator: Option<char>,
    }

    impl Default for Settings {
        fn default() -> Settings {
            Settings {
                nodes: vec!["127.0.0.1:2379".into()],
                scheme: Scheme::Http,
                basic_auth: false,
                username: String::new(),
                password: String::new(),
                client_key: None,
                timeout_ms: 1000,
                port: 80,
                offset: 0,
                ratio: 1.0,
                timeout: Duration::from_secs(5),
                interval: None,
                ports: Vec::new(),
                separator: None,
            }
        }
    }

    fn map(pairs: &[(&str, &str)]) -> Config {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn decode_err(pairs: &[(&str, &str)]) -> String {
        decode::<Settings>(&map(pairs))
            .expect_err("must fail")
            .to_string()
    }

    #[test]
    fn empty_map_gives_defaults() {
        assert_eq!(
            decode::<Settings>(&map(&[])).expect("ok"),
            Settings::default()
        );
    }

    #[test]
    fn parses_every_supported_type() {
        let got: Settings = decode(&map(&[
            ("nodes", "a:1, b:2,,c:3"),
            ("scheme", "https"),
            ("basicAuth", "1"),
            ("username", "me"),
            ("password", "0123"),
            ("clientKey", "/etc/key.pem"),
            ("timeoutMs", " 250 "),
            ("port", "8080"),
            ("offset", "-5"),
            ("ratio", "0.5"),
            ("timeout", "1m30s"),
            ("interval", "10s"),
            ("ports", "1,2"),
            ("separator", "."),
        ]))
        .expect("ok");
        assert_eq!(
            got,
            Settings {
                nodes: vec!["a:1".into(), "b:2".into(), "c:3".into()],
                scheme: Scheme::Https,
                basic_auth: true,
                username: "me".into(),
                password: "0123".into(),
                client_key: Some("/etc/key.pem".into()),
                timeout_ms: 250,
                port: 8080,
                offset: -5,
                ratio: 0.5,
                timeout: Duration::from_secs(90),
                interval: Some(Duration::from_secs(10)),
                ports: vec![1, 2],
                separator: Some('.'),
            }
        );
    }

    #[test]
    fn booleans_take_go_spellings() {
        for (text, want) in [
            ("true", true),
            ("True", true),
            ("0", false),
            ("f", false),
            ("FALSE", false),
        ] {
            let got: Settings = decode(&map(&[("basicAuth", text)])).expect("ok");
            assert_eq!(got.basic_auth, want, "{text}");
        }
        assert_eq!(
            decode_err(&[("basicAuth", "maybe")]),
            r#"key "basicAuth": invalid value "maybe": expected a boolean (true, false, 1 or 0)"#
        );
    }

    #[test]
    fn empty_values_are_none_or_empty_lists() {
        let got: Settings =
            decode(&map(&[("clientKey", ""), ("interval", ""), ("nodes", "")])).expect("ok");
        assert_eq!(got.client_key, None);
        assert_eq!(got.interval, None);
        assert!(got.nodes.is_empty());
    }

    #[test]
    fn bad_numbers_name_key_value_and_problem() {
        assert_eq!(
            decode_err(&[("timeoutMs", "abc")]),
            r#"key "timeoutMs": invalid value "abc": expected an unsigned integer"#
        );
        assert_eq!(
            decode_err(&[("port", "70000")]),
            r#"key "port": invalid value "70000": expected an unsigned integer between 0 and 65535"#
        );
        assert_eq!(
            decode_err(&[("offset", "1.5")]),
            r#"key "offset": invalid value "1.5": expected a 32-bit integer"#
        );
        assert_eq!(
            decode_err(&[("ratio", "half")]),
            r#"key "ratio": invalid value "half": expected a number"#
        );
        assert_eq!(
            decode_err(&[("ports", "1,x")]),
            r#"key "ports": invalid value "x": expected an unsigned integer between 0 and 65535"#
        );
        assert_eq!(
            decode_err(&[("separator", "::")]),
            r#"key "separator": invalid value "::": expected a single character"#
        );
    }

    #[test]
    fn unknown_keys_list_the_known_ones() {
        let err = decode_err(&[("nodez", "a")]);
        assert!(
            err.starts_with(r#"unknown key "nodez" (expected one of: nodes, scheme, basicAuth,"#),
            "{err}"
        );
        #[derive(Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        struct Nothing {}
        assert_eq!(
            decode::<Nothing>(&map(&[("x", "1")]))
                .expect_err("unknown")
                .to_string(),
            r#"unknown key "x" (this plugin takes no settings)"#
        );
    }

    #[test]
    fn enums_read_their_names() {
        assert_eq!(
            decode_err(&[("scheme", "ftp")]),
            r#"key "scheme": invalid value "ftp": expected one of: http, https"#
        );
    }

    #[test]
    fn durations_need_units() {
        let err = decode_err(&[("timeout", "10")]);
        assert!(
            err.starts_with(r#"key "timeout": invalid value "10": expected a duration such as 500ms, 5s or 1m30s"#),
            "{err}"
        );
        #[derive(Deserialize, Debug)]
        struct Raw {
            #[allow(dead_code)]
            wait: Duration,
        }
        let err = decode::<Raw>(&map(&[("wait", "5s")]))
            .expect_err("plain Duration")
            .to_string();
        assert!(err.contains("confd_sdk::config::duration"), "{err}");
    }

    #[test]
    fn secrets_are_never_echoed() {
        #[derive(Deserialize, Debug)]
        #[serde(rename_all = "camelCase")]
        #[allow(dead_code)]
        struct Secrets {
            #[serde(default)]
            db_password: u32,
            #[serde(default)]
            api_token: bool,
            #[serde(default)]
            client_secret: u8,
            #[serde(default)]
            ssh_key_bits: u16,
        }
        for (key, value) in [
            ("dbPassword", "hunter2"),
            ("apiToken", "s3cr3t-token"),
            ("clientSecret", "topsecret"),
            ("sshKeyBits", "many-bits"),
        ] {
            let err = decode::<Secrets>(&map(&[(key, value)]))
                .expect_err("bad value")
                .to_string();
            assert!(
                err.starts_with(&format!("key {key:?}: invalid value (hidden): ")),
                "{err}"
            );
            assert!(!err.contains(value), "{err} leaks the value");
        }
        assert_eq!(
            ConfigError::invalid_value("PASSWORD", "x", "too short").to_string(),
            r#"key "PASSWORD": invalid value (hidden): too short"#
        );
        assert!(is_secret_key("caKeyFile") && !is_secret_key("nodes"));
    }

    #[test]
    fn missing_required_keys_are_named() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Required {
            nodes: Vec<String>,
        }
        assert_eq!(
            decode::<Required>(&map(&[]))
                .expect_err("missing")
                .to_string(),
            r#"missing key "nodes""#
        );
    }

    #[test]
    fn nested_values_are_refused() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Nested {
            inner: std::collections::HashMap<String, String>,
        }
        assert_eq!(
            decode::<Nested>(&map(&[("inner", "a=b")]))
                .expect_err("nested")
                .to_string(),
            r#"key "inner": invalid value "a=b": nested settings are not supported; use a flat key"#
        );
    }

    #[test]
    fn converts_into_an_invalid_config_error() {
        let err: Error = ConfigError::MissingKey {
            key: "nodes".into(),
        }
        .into();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidConfig);
        assert_eq!(
            err.to_string(),
            r#"invalid configuration: missing key "nodes""#
        );
    }
}
