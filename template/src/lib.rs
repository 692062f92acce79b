//! confd-template: the key store, the one table of confd template functions, and the two template
//! engines (Go text/template for existing confd templates, Jinja for new ones) behind one API.
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use std::path::Path;
//! use confd_template::{EngineKind, Store, Template, TemplateOptions};
//!
//! let src = "nginx.conf.tmpl";
//! let tmpl = Template::load(
//!     Path::new("/etc/confd/templates"),
//!     src,
//!     EngineKind::from_extension(src),
//!     &TemplateOptions::default(),
//! )?;
//! let store = Store::new(BTreeMap::from([("/app/port".to_string(), "8080".to_string())]));
//! let text = tmpl.render(&store)?;
//! # Ok::<(), confd_template::TemplateError>(())
//! ```

pub mod datetime;
mod extra;
pub mod funcs;
mod gofmt;
mod gojson;
mod goregex;
mod gotemplate;
mod include;
mod jinja;
pub mod store;
pub mod value;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use funcs::{FilterInput, FuncContext, FuncError, Function, Include, functions};
pub use store::{KvPair, Store, StoreError};
pub use value::Val;

/// Which template syntax a resource uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    /// Go text/template, confd's syntax.
    Go,
    /// Jinja (minijinja).
    Jinja,
}

impl EngineKind {
    /// The engine implied by a template's file name: `.j2`, `.jinja` and `.jinja2` are Jinja,
    /// everything else is Go text/template (what confd users have).
    pub fn from_extension(src: &str) -> EngineKind {
        let ext = Path::new(src)
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("");
        match ext {
            "j2" | "jinja" | "jinja2" => EngineKind::Jinja,
            _ => EngineKind::Go,
        }
    }
}

impl FromStr for EngineKind {
    type Err = String;

    /// The engine names users write, in any case: `go` (also `gotmpl`, `gotemplate`) and
    /// `jinja` (also `jinja2`, `j2`). The one parser for `--template-engine` and a resource's
    /// `engine` key.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "go" | "gotmpl" | "gotemplate" => Ok(EngineKind::Go),
            "jinja" | "jinja2" | "j2" => Ok(EngineKind::Jinja),
            _ => Err(format!(
                "unknown template engine {s:?} (expected \"go\" or \"jinja\")"
            )),
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EngineKind::Go => "go",
            EngineKind::Jinja => "jinja",
        })
    }
}

/// Per-resource rendering options.
#[derive(Default, Clone, Debug)]
pub struct TemplateOptions {
    /// Jinja `trim_blocks`: drop the first newline after a block tag.
    pub trim_blocks: bool,
    /// Jinja `lstrip_blocks`: strip whitespace before a block tag on its line.
    pub lstrip_blocks: bool,
}

/// Where a template error happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorPhase {
    /// Reading or parsing the template, or checking its function names.
    Load,
    /// Executing it against a store.
    Render,
}

/// A template failed to load or to render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TemplateError {
    /// Load or render.
    pub phase: ErrorPhase,
    /// The template's name: the base name of `src` for Go templates (as confd names them), the path
    /// relative to the templates directory for Jinja (so an included template is told apart).
    pub template: String,
    /// The 1-based line, where the engine knows it.
    pub line: Option<usize>,
    /// The store key that was missing, for missing-key errors.
    pub missing_key: Option<String>,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.phase {
            ErrorPhase::Load => "cannot load template",
            ErrorPhase::Render => "cannot render template",
        };
        match self.line {
            Some(line) => write!(f, "{what} {}:{line}: {}", self.template, self.message),
            None => write!(f, "{what} {}: {}", self.template, self.message),
        }
    }
}

impl TemplateError {
    pub(crate) fn load(template: &str, line: Option<usize>, message: impl fmt::Display) -> Self {
        TemplateError {
            phase: ErrorPhase::Load,
            template: template.to_string(),
            line,
            missing_key: None,
            message: message.to_string(),
        }
    }

    pub(crate) fn render(template: &str, line: Option<usize>, message: impl fmt::Display) -> Self {
        TemplateError {
            phase: ErrorPhase::Render,
            template: template.to_string(),
            line,
            missing_key: None,
            message: message.to_string(),
        }
    }

    pub(crate) fn with_missing_key(mut self, key: Option<String>) -> Self {
        self.missing_key = key;
        self
    }
}

/// A parsed template, ready to render many times (also from several threads at once).
#[derive(Debug)]
pub struct Template {
    path: PathBuf,
    engine: Engine,
}

#[derive(Debug)]
enum Engine {
    Go(gotemplate::GoTemplate),
    Jinja(jinja::JinjaTemplate),
}

impl Template {
    /// Reads and parses `<templates_dir>/<src>` with the given engine. Syntax errors and unknown
    /// function names are reported here, with the template name and line.
    pub fn load(
        templates_dir: &Path,
        src: &str,
        engine: EngineKind,
        opts: &TemplateOptions,
    ) -> Result<Template, TemplateError> {
        datetime::init();
        let path = templates_dir.join(normalize_src(src)?);
        let engine = match engine {
            EngineKind::Go => Engine::Go(gotemplate::GoTemplate::load(&path, templates_dir)?),
            EngineKind::Jinja => Engine::Jinja(jinja::load(templates_dir, src, opts)?),
        };
        Ok(Template { path, engine })
    }

    /// Renders with `store` as the key store of the store functions.
    pub fn render(&self, store: &Store) -> Result<String, TemplateError> {
        match &self.engine {
            Engine::Go(t) => t.render(store),
            Engine::Jinja(t) => t.render(store),
        }
    }

    /// The template file this was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The engine that renders it.
    pub fn engine(&self) -> EngineKind {
        match self.engine {
            Engine::Go(_) => EngineKind::Go,
            Engine::Jinja(_) => EngineKind::Jinja,
        }
    }
}

/// `src` as a path inside the templates directory: a leading `/` is relative to it (confd joins
/// the two), and a path that climbs out of it with `..` is refused.
fn normalize_src(src: &str) -> Result<PathBuf, TemplateError> {
    let mut parts: Vec<&str> = Vec::new();
    for seg in src.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(TemplateError::load(
                        src,
                        None,
                        "the template path leaves the templates directory",
                    ));
                }
            }
            s => parts.push(s),
        }
    }
    if parts.is_empty() {
        return Err(TemplateError::load(src, None, "the template path is empty"));
    }
    Ok(parts.iter().collect())
}

/// The name a template is known by in messages: the base name of its `src`, as in confd.
pub(crate) fn template_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_from_extension() {
        assert_eq!(EngineKind::from_extension("a.conf.j2"), EngineKind::Jinja);
        assert_eq!(EngineKind::from_extension("a.jinja"), EngineKind::Jinja);
        assert_eq!(
            EngineKind::from_extension("sub/a.jinja2"),
            EngineKind::Jinja
        );
        assert_eq!(EngineKind::from_extension("a.tmpl"), EngineKind::Go);
        assert_eq!(EngineKind::from_extension("a.j2.tmpl"), EngineKind::Go);
        assert_eq!(EngineKind::from_extension("j2"), EngineKind::Go);
    }

    #[test]
    fn engine_from_str() {
        assert_eq!("go".parse::<EngineKind>(), Ok(EngineKind::Go));
        assert_eq!("jinja".parse::<EngineKind>(), Ok(EngineKind::Jinja));
        for (text, kind) in [
            ("Go", EngineKind::Go),
            (" gotmpl ", EngineKind::Go),
            ("gotemplate", EngineKind::Go),
            ("JINJA2", EngineKind::Jinja),
            ("j2", EngineKind::Jinja),
        ] {
            assert_eq!(text.parse::<EngineKind>(), Ok(kind), "{text:?}");
        }
        assert!("mustache".parse::<EngineKind>().is_err());
    }

    #[test]
    fn src_stays_inside_the_templates_directory() {
        assert_eq!(normalize_src("/a/./b.tmpl"), Ok(PathBuf::from("a/b.tmpl")));
        assert_eq!(normalize_src("a/../b.tmpl"), Ok(PathBuf::from("b.tmpl")));
        assert!(normalize_src("../etc/passwd").is_err());
        assert!(normalize_src("a/../../x").is_err());
        assert!(normalize_src("/").is_err());
        let e = Template::load(
            Path::new("/nonexistent"),
            "../x.tmpl",
            EngineKind::Go,
            &TemplateOptions::default(),
        )
        .expect_err("outside");
        assert_eq!(
            e.to_string(),
            "cannot load template ../x.tmpl: the template path leaves the templates directory"
        );
    }

    #[test]
    fn template_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Template>();
    }

    #[test]
    fn error_display_names_template_and_line() {
        let e = TemplateError::load("a.tmpl", Some(3), "unexpected EOF");
        assert_eq!(
            e.to_string(),
            "cannot load template a.tmpl:3: unexpected EOF"
        );
        let e = TemplateError::render("a.tmpl", None, "getv: key does not exist: /x")
            .with_missing_key(Some("/x".into()));
        assert_eq!(
            e.to_string(),
            "cannot render template a.tmpl: getv: key does not exist: /x"
        );
        assert_eq!(e.missing_key.as_deref(), Some("/x"));
    }
}
