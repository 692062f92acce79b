//! The host's one log subscriber: human-readable lines (`--log-format text`, the default) or one
//! JSON object per line (`--log-format json`) for log shippers, with the fork's field names:
//! `time`, `level`, `msg`, then the event's own fields (`resource`, `dest`, `backend`,
//! `plugin_pid`, `duration_ms`, `error`, ...). Values read from a store are never put in an
//! event, so neither format can leak them.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::settings::{LogFormat, LogLevel};

/// Installs the subscriber for the whole process (stderr).
pub fn init(level: LogLevel, format: LogFormat) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let level = level.as_filter();
    // gRPC plumbing logs every frame at debug; keep it out unless asked for trace. A plain
    // target list, not an EnvFilter: no regex engine to load for a fixed set of targets.
    let mut filter = Targets::new().with_default(level);
    if level < tracing::level_filters::LevelFilter::TRACE {
        for target in ["h2", "hyper", "hyper_util", "tower", "tonic", "axum"] {
            filter =
                filter.with_target(target, level.min(tracing::level_filters::LevelFilter::WARN));
        }
    }
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_target(false),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(false)
                    .event_format(JsonLines),
            )
            .try_init(),
    };
}

/// One JSON object per event: `{"time":…,"level":…,"msg":…,<fields>}`, keys in that order.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        writer.write_str(&json_line(
            std::time::SystemTime::now(),
            event.metadata().level(),
            event,
        ))
    }
}

/// The line for `event` at `time`, newline included.
fn json_line(time: std::time::SystemTime, level: &tracing::Level, event: &Event<'_>) -> String {
    let mut fields = Fields::default();
    event.record(&mut fields);
    let mut line = String::with_capacity(128);
    line.push_str("{\"time\":");
    push_json(
        &mut line,
        &serde_json::Value::String(humantime::format_rfc3339_millis(time).to_string()),
    );
    line.push_str(",\"level\":");
    push_json(&mut line, &serde_json::Value::String(level.to_string()));
    line.push_str(",\"msg\":");
    push_json(
        &mut line,
        &serde_json::Value::String(fields.message.unwrap_or_default()),
    );
    for (name, value) in fields.pairs {
        line.push(',');
        push_json(&mut line, &serde_json::Value::String(name));
        line.push(':');
        push_json(&mut line, &value);
    }
    line.push_str("}\n");
    line
}

fn push_json(line: &mut String, value: &serde_json::Value) {
    // Writing a serde_json::Value to a String cannot fail.
    let _ = write!(line, "{value}");
}

/// An event's fields: `message` apart, the rest in the order given, numbers and booleans kept
/// as JSON numbers and booleans.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    pairs: Vec<(String, serde_json::Value)>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: serde_json::Value) {
        let name = field.name();
        if name == "message" {
            self.message = Some(match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            });
        } else if !name.starts_with("log.") {
            // `log.*` are the log crate's call-site details, bridged by tracing-log.
            self.pairs.push((name.to_string(), value));
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, serde_json::Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, serde_json::Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, serde_json::Value::String(value.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt as _;

    /// A writer collecting what the layer writes.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("sink").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn events_become_one_json_object_per_line_with_typed_fields() {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || writer.clone())
                .event_format(JsonLines),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(
                resource = "/c/conf.d/app.toml",
                dest = %"/etc/app.conf",
                plugin_pid = 42u32,
                duration_ms = 7u64,
                ok = false,
                "resource \"failed\""
            );
            tracing::info!("plain");
        });
        let text = String::from_utf8(sink.0.lock().expect("sink").clone()).expect("utf-8");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        let first = &lines[0];
        assert_eq!(first["level"], "ERROR");
        assert_eq!(first["msg"], "resource \"failed\"");
        assert_eq!(first["resource"], "/c/conf.d/app.toml");
        assert_eq!(first["dest"], "/etc/app.conf");
        assert_eq!(first["plugin_pid"], 42);
        assert_eq!(first["duration_ms"], 7);
        assert_eq!(first["ok"], false);
        let time = first["time"].as_str().expect("time is a string");
        humantime::parse_rfc3339(time).expect("RFC 3339 time");
        // Keys in the documented order.
        let first_line = text.lines().next().expect("a line");
        let order: Vec<usize> = ["\"time\"", "\"level\"", "\"msg\"", "\"resource\""]
            .iter()
            .map(|k| first_line.find(k).expect("key present"))
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{first_line}");
        assert_eq!(lines[1]["msg"], "plain");
        assert_eq!(lines[1]["level"], "INFO");
    }
}
