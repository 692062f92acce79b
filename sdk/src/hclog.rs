//! hclog's JSON line format, both ways: plugins write it to stderr so a Go host shows their logs
//! properly, and the host parses it (and `[LEVEL]` prefixes) back into `tracing` events.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::SystemTime;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

/// A `tracing` layer writing one hclog JSON object per event to stderr.
pub(crate) struct HclogLayer {
    module: String,
}

impl HclogLayer {
    pub(crate) fn new(module: impl Into<String>) -> HclogLayer {
        HclogLayer {
            module: module.into(),
        }
    }
}

/// Installs the hclog layer as the global subscriber; a second call (an in-process test, or a
/// host that already set one up) keeps the existing subscriber.
pub(crate) fn init(module: &str) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let level = level_from_env();
    // The HTTP/2 stack logs every frame at debug; a plugin's debug log is for the plugin's own
    // lines, and a Go host would otherwise drown in them.
    let transport = level.min(LevelFilter::WARN);
    let filter = Targets::new()
        .with_default(level)
        .with_target("h2", transport)
        .with_target("hyper", transport)
        .with_target("hyper_util", transport)
        .with_target("tower", transport)
        .with_target("tonic", transport);
    let _ = tracing_subscriber::registry()
        .with(HclogLayer::new(module).with_filter(filter))
        .try_init();
}

/// `CONFD_PLUGIN_LOG_LEVEL`, else `PLUGIN_LOG_LEVEL`, else info.
fn level_from_env() -> tracing_subscriber::filter::LevelFilter {
    use tracing_subscriber::filter::LevelFilter;
    let raw = std::env::var("CONFD_PLUGIN_LOG_LEVEL")
        .or_else(|_| std::env::var("PLUGIN_LOG_LEVEL"))
        .unwrap_or_default();
    match raw.trim().to_ascii_lowercase().as_str() {
        "trace" => LevelFilter::TRACE,
        "debug" => LevelFilter::DEBUG,
        "warn" | "warning" => LevelFilter::WARN,
        "error" | "panic" | "fatal" => LevelFilter::ERROR,
        "off" => LevelFilter::OFF,
        _ => LevelFilter::INFO,
    }
}

impl<S: Subscriber> Layer<S> for HclogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut line = render(
            *event.metadata().level(),
            &self.module,
            SystemTime::now(),
            event,
        );
        line.push('\n');
        // One write per line so concurrent events never interleave inside a line.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

fn render(level: Level, module: &str, now: SystemTime, event: &Event<'_>) -> String {
    let mut fields = FieldCollector::default();
    event.record(&mut fields);
    let mut obj = Map::new();
    obj.insert("@level".into(), level_name(level).into());
    obj.insert("@message".into(), fields.message.unwrap_or_default().into());
    obj.insert("@module".into(), module.into());
    obj.insert(
        "@timestamp".into(),
        humantime::format_rfc3339_micros(now).to_string().into(),
    );
    for (k, v) in fields.fields {
        obj.entry(k).or_insert(v);
    }
    Value::Object(obj).to_string()
}

#[derive(Default)]
struct FieldCollector {
    message: Option<String>,
    fields: Vec<(String, Value)>,
}

impl Visit for FieldCollector {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = Some(text);
        } else {
            self.fields.push((field.name().into(), text.into()));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.into());
        } else {
            self.fields.push((field.name().into(), value.into()));
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.push((field.name().into(), value.into()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.push((field.name().into(), value.into()));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.push((field.name().into(), value.into()));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.fields.push((field.name().into(), value.into()));
    }
}

/// One plugin stderr line, understood.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub level: Level,
    pub message: String,
    /// `key=value` pairs (hclog fields other than the `@` bookkeeping ones), sorted by key.
    pub fields: String,
}

/// Reads a plugin's stderr line the way go-plugin's host does: hclog JSON, then `[LEVEL]`
/// prefixes, else the raw line at debug.
pub fn parse_line(line: &str) -> LogLine {
    let line = line.trim_end_matches(['\r', '\n']);
    if let Some(parsed) = parse_json(line) {
        return parsed;
    }
    for (prefix, level) in [
        ("[TRACE]", Level::TRACE),
        ("[DEBUG]", Level::DEBUG),
        ("[INFO]", Level::INFO),
        ("[WARN]", Level::WARN),
        ("[ERROR]", Level::ERROR),
    ] {
        if let Some(rest) = line.strip_prefix(prefix) {
            return LogLine {
                level,
                message: rest.trim_start().to_string(),
                fields: String::new(),
            };
        }
    }
    LogLine {
        level: Level::DEBUG,
        message: line.to_string(),
        fields: String::new(),
    }
}

fn parse_json(line: &str) -> Option<LogLine> {
    if !line.starts_with('{') {
        return None;
    }
    let Value::Object(obj) = serde_json::from_str::<Value>(line).ok()? else {
        return None;
    };
    let level = match obj.get("@level")?.as_str()?.to_ascii_lowercase().as_str() {
        "trace" => Level::TRACE,
        "debug" => Level::DEBUG,
        "info" => Level::INFO,
        "warn" => Level::WARN,
        "error" => Level::ERROR,
        _ => return None,
    };
    let message = obj.get("@message")?.as_str()?.to_string();
    let mut keys: Vec<&String> = obj
        .keys()
        .filter(|k| !matches!(k.as_str(), "@level" | "@message" | "@timestamp" | "@module"))
        .collect();
    keys.sort();
    let mut fields = String::new();
    for key in keys {
        if !fields.is_empty() {
            fields.push(' ');
        }
        match &obj[key.as_str()] {
            Value::String(s) => {
                let _ = write!(fields, "{key}={s}");
            }
            other => {
                let _ = write!(fields, "{key}={other}");
            }
        }
    }
    Some(LogLine {
        level,
        message,
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, UNIX_EPOCH};
    use tracing_subscriber::layer::SubscriberExt as _;

    /// A layer like `HclogLayer` that renders into a buffer with a fixed clock.
    struct Capture(Arc<Mutex<Vec<String>>>);
    impl<S: Subscriber> Layer<S> for Capture {
        fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
            let at = UNIX_EPOCH + Duration::from_micros(1_767_225_600_123_456);
            let line = render(*event.metadata().level(), "memory", at, event);
            self.0.lock().expect("not poisoned").push(line);
        }
    }

    #[test]
    fn writes_hclog_json_with_six_fractional_digits() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(Capture(lines.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(keys = 3, prefix = "/app", "served GetValues");
        });
        let lines = lines.lock().expect("not poisoned");
        assert_eq!(
            lines[0],
            r#"{"@level":"info","@message":"served GetValues","@module":"memory","@timestamp":"2026-01-01T00:00:00.123456Z","keys":3,"prefix":"/app"}"#
        );
        // and the host reads back what the plugin wrote
        let back = parse_line(&lines[0]);
        assert_eq!(back.level, Level::INFO);
        assert_eq!(back.message, "served GetValues");
        assert_eq!(back.fields, "keys=3 prefix=/app");
    }

    #[test]
    fn reads_go_hclog_lines() {
        let line = r#"{"@level":"debug","@message":"plugin address","@module":"plugin","@timestamp":"2026-11-25T12:00:00.000001Z","address":"/tmp/plugin1","network":"unix"}"#;
        let got = parse_line(line);
        assert_eq!(got.level, Level::DEBUG);
        assert_eq!(got.message, "plugin address");
        assert_eq!(got.fields, "address=/tmp/plugin1 network=unix");
    }

    #[test]
    fn falls_back_to_prefixes_then_debug() {
        let got = parse_line("[WARN] disk almost full\n");
        assert_eq!(
            (got.level, got.message.as_str()),
            (Level::WARN, "disk almost full")
        );
        let got = parse_line("panic: oh no");
        assert_eq!(
            (got.level, got.message.as_str()),
            (Level::DEBUG, "panic: oh no")
        );
        let got = parse_line(r#"{"@level":"loud","@message":"x"}"#);
        assert_eq!(got.level, Level::DEBUG);
        assert_eq!(got.message, r#"{"@level":"loud","@message":"x"}"#);
    }
}
