//! The rules `include` follows in both engines, kept in one place so that a Go template and a
//! Jinja template may include the same things: where the named template is looked up (inside the
//! templates directory only, symlinks included), and how deep and how circular includes may go.

use std::path::{Path, PathBuf};

/// The most includes that may be nested below the template being rendered (as abtreece/confd).
pub(crate) const MAX_DEPTH: usize = 10;

/// `name` resolved inside `templates_dir`: its clean relative name (`partials/a.tmpl`, the name
/// used in cycles and messages) and the file's real path. A name that climbs out with `..`, or
/// a symlink that leads out, is refused; a leading `/` is relative to the directory, as in `src`.
pub(crate) fn resolve(templates_dir: &Path, name: &str) -> Result<(String, PathBuf), String> {
    let outside = || format!("template {name:?} is outside the templates directory");
    let mut parts: Vec<&str> = Vec::new();
    for seg in name.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop().ok_or_else(outside)?;
            }
            s => parts.push(s),
        }
    }
    if parts.is_empty() {
        return Err(format!("template name {name:?} is empty"));
    }
    if parts.iter().any(|p| p.contains('\\')) {
        return Err(outside());
    }
    let rel = parts.join("/");
    let root = templates_dir.canonicalize().map_err(|e| {
        format!(
            "cannot open templates directory {}: {e}",
            templates_dir.display()
        )
    })?;
    let path = root.join(&rel);
    let real = path
        .canonicalize()
        .map_err(|e| format!("cannot open template {rel}: {e}"))?;
    if !real.starts_with(&root) {
        return Err(outside());
    }
    Ok((rel, real))
}

/// The include chain after entering `name` from the templates in `chain` (the outermost first):
/// a template already in the chain is a cycle, and more than [`MAX_DEPTH`] nested includes is
/// refused; both errors show the chain.
pub(crate) fn enter(chain: &[String], name: &str) -> Result<Vec<String>, String> {
    let mut next = chain.to_vec();
    next.push(name.to_string());
    if chain.iter().any(|c| c == name) {
        return Err(format!("include cycle: {}", next.join(" -> ")));
    }
    if next.len() > MAX_DEPTH + 1 {
        return Err(format!(
            "more than {MAX_DEPTH} nested includes: {}",
            next.join(" -> ")
        ));
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_inside_the_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/a.tmpl"), "a").expect("write");
        std::fs::write(dir.path().join("b.tmpl"), "b").expect("write");
        let real = dir.path().canonicalize().expect("canonical");
        for name in ["sub/a.tmpl", "/sub/a.tmpl", "./sub/../sub/a.tmpl"] {
            assert_eq!(
                resolve(dir.path(), name),
                Ok(("sub/a.tmpl".to_string(), real.join("sub/a.tmpl")))
            );
        }
        assert_eq!(
            resolve(dir.path(), "../b.tmpl"),
            Err("template \"../b.tmpl\" is outside the templates directory".to_string())
        );
        assert_eq!(
            resolve(dir.path(), "/"),
            Err("template name \"/\" is empty".to_string())
        );
        assert!(
            resolve(dir.path(), "nope.tmpl")
                .expect_err("missing")
                .starts_with("cannot open template nope.tmpl: ")
        );
    }

    #[test]
    fn symlinks_out_of_the_directory_are_refused() {
        let outer = tempfile::tempdir().expect("temp dir");
        let dir = outer.path().join("templates");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(outer.path().join("secret"), "s").expect("write");
        std::os::unix::fs::symlink("../secret", dir.join("link.tmpl")).expect("symlink");
        assert_eq!(
            resolve(&dir, "link.tmpl"),
            Err("template \"link.tmpl\" is outside the templates directory".to_string())
        );
    }

    #[test]
    fn cycles_and_depth() {
        let chain = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            enter(&chain, "c"),
            Ok(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(enter(&chain, "a"), Err("include cycle: a -> b -> a".into()));
        assert_eq!(enter(&chain, "b"), Err("include cycle: a -> b -> b".into()));
        let mut chain = vec!["root".to_string()];
        for i in 0..MAX_DEPTH {
            chain = enter(&chain, &format!("t{i}")).expect("within the limit");
        }
        assert_eq!(chain.len(), MAX_DEPTH + 1);
        let e = enter(&chain, "deep").expect_err("too deep");
        assert!(
            e.starts_with("more than 10 nested includes: root -> t0 -> "),
            "{e}"
        );
        assert!(e.ends_with(" -> t9 -> deep"), "{e}");
    }
}
