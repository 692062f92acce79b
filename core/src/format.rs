//! A resource's `output_format`: the rendered file must parse as JSON, YAML or TOML before it
//! may replace its destination, so a template bug cannot hand a service a file it will refuse.
//! The parsers are the ones the rest of confd uses; errors carry line and column but never the
//! offending text, because the rendered file holds values from the store.

use std::fmt;
use std::str::FromStr;

/// What a rendered file must parse as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    Json,
    Yaml,
    Toml,
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OutputFormat::Json => "JSON",
            OutputFormat::Yaml => "YAML",
            OutputFormat::Toml => "TOML",
        })
    }
}

impl FromStr for OutputFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(OutputFormat::Json),
            "yaml" | "yml" => Ok(OutputFormat::Yaml),
            "toml" => Ok(OutputFormat::Toml),
            _ => Err(format!(
                "unknown output format {text:?}: expected json, yaml or toml"
            )),
        }
    }
}

/// Where and why a rendered file does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not valid {format} at line {line}, column {column}: {message}")]
pub struct FormatError {
    pub format: OutputFormat,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// The parser's message, without the parser's quote of the input.
    pub message: String,
}

impl OutputFormat {
    /// Parses `text` in this format and discards the result.
    pub fn check(self, text: &str) -> Result<(), FormatError> {
        use serde::de::IgnoredAny;
        let fail = |line: usize, column: usize, message: String| FormatError {
            format: self,
            line: line.max(1),
            column: column.max(1),
            message,
        };
        match self {
            OutputFormat::Json => serde_json::from_str::<IgnoredAny>(text)
                .map(drop)
                .map_err(|e| {
                    // serde_json's Display appends " at line L column C"; the fields carry that.
                    let text = e.to_string();
                    let message = match text.rfind(" at line ") {
                        Some(cut) => text[..cut].to_string(),
                        None => text,
                    };
                    fail(e.line(), e.column(), message)
                }),
            OutputFormat::Toml => toml::from_str::<toml::Table>(text).map(drop).map_err(|e| {
                let (line, column) = e
                    .span()
                    .map(|span| line_column(text, span.start))
                    .unwrap_or((1, 1));
                // `message()` only: the Display form quotes the offending line.
                fail(line, column, e.message().trim_end().to_string())
            }),
            OutputFormat::Yaml => serde_saphyr::from_multiple::<IgnoredAny>(text)
                .map(drop)
                .map_err(|e| {
                    let (line, column) = e.location().map_or((1, 1), |l| {
                        (
                            usize::try_from(l.line()).unwrap_or(usize::MAX),
                            usize::try_from(l.column()).unwrap_or(usize::MAX),
                        )
                    });
                    let text = e.without_snippet().to_string();
                    let message = match text.rfind(" at line ") {
                        Some(cut) => text[..cut].to_string(),
                        None => text,
                    };
                    fail(line, column, message.trim_end().to_string())
                }),
        }
    }
}

/// 1-based line and character column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let mut cut = offset;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let before = &text[..cut];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_case_insensitively_with_yml_alias() {
        assert_eq!("JSON".parse(), Ok(OutputFormat::Json));
        assert_eq!("yml".parse(), Ok(OutputFormat::Yaml));
        assert_eq!(" toml ".parse(), Ok(OutputFormat::Toml));
        let err = "xml"
            .parse::<OutputFormat>()
            .expect_err("xml is not offered");
        assert!(err.contains("json, yaml or toml"), "{err}");
    }

    #[test]
    fn valid_documents_pass() {
        OutputFormat::Json.check("{\"a\": [1, 2]}\n").expect("json");
        OutputFormat::Yaml
            .check("a: 1\n---\nb: [x]\n")
            .expect("multi-document yaml");
        OutputFormat::Toml
            .check("[server]\nport = 80\n")
            .expect("toml");
    }

    #[test]
    fn json_error_has_line_and_column() {
        let err = OutputFormat::Json
            .check("{\n  \"a\": 1,\n  \"b\": \n}\n")
            .expect_err("trailing value missing");
        assert_eq!((err.line, err.column), (4, 1), "{err}");
        assert!(!err.message.contains("at line"), "{err}");
    }

    #[test]
    fn toml_error_has_line_and_column_and_no_quote_of_the_input() {
        let err = OutputFormat::Toml
            .check("a = 1\npassword = s3cret-value\n")
            .expect_err("bare word is not a value");
        assert_eq!(err.line, 2, "{err}");
        assert!(err.column > 1, "{err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn yaml_error_has_line_and_no_quote_of_the_input() {
        let err = OutputFormat::Yaml
            .check("a: 1\nb: [s3cret-value\nc: 2\n")
            .expect_err("unclosed flow sequence");
        assert!(err.line >= 2, "{err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn columns_count_characters() {
        assert_eq!(line_column("é = x", 5), (1, 5));
        assert_eq!(line_column("a\nbc", 3), (2, 2));
    }
}
