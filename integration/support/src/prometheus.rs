//! A real Prometheus text-format parser for tests: the official Python client library's
//! (`prometheus_client.parser`), run from the virtualenv `scripts/setup-python.sh` creates in
//! `target/test-venv`. Missing virtualenv: a loud skip, or a panic under `CI=true`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Reads the exposition on stdin, prints one JSON object: family name (as in its `# TYPE`
/// line) → type and samples. The parser drops `_total` from counter family names; it is put
/// back so names match what a scrape shows.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    name = family.name
    if family.type == "counter" and any(s.name == name + "_total" for s in family.samples):
        name += "_total"
    out[name] = {
        "type": family.type,
        "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in family.samples],
    }
json.dump(out, sys.stdout)
"#;

/// One metric family.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Family {
    #[serde(rename = "type")]
    pub kind: String,
    pub samples: Vec<Sample>,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The Python of the test virtualenv: `CONFD_TEST_PYTHON`, else `<target>/test-venv/bin/python`.
fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CONFD_TEST_PYTHON") {
        return Some(PathBuf::from(p));
    }
    crate::venv::program("python", "to parse /metrics with prometheus_client")
}

/// Parses a scrape. `None` when the parser is not installed (outside CI); panics when the text
/// does not parse.
pub fn parse_metrics(text: &str) -> Option<BTreeMap<String, Family>> {
    let python = python()?;
    let mut child = Command::new(&python)
        .arg("-c")
        .arg(PARSE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(text.as_bytes())
        .expect("write the scrape to the parser");
    let output = child.wait_with_output().expect("wait for the parser");
    assert!(
        output.status.success(),
        "prometheus_client refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(serde_json::from_slice(&output.stdout).expect("the parser prints JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_exposition_parses_with_types_labels_and_total_names() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n\
                    # HELP b B.\n# TYPE b gauge\nb 1.5\n";
        let Some(families) = parse_metrics(text) else {
            return;
        };
        assert_eq!(families["a_total"].kind, "counter");
        assert_eq!(families["a_total"].samples[0].labels["x"], "1");
        assert_eq!(families["a_total"].samples[0].value, 3.0);
        assert_eq!(families["b"].kind, "gauge");
    }
}
