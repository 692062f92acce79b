//! host/symbol-order.txt feeds the release link (host/build.rs): a malformed or empty file
//! would silently stop ordering, so its shape is checked here.

#[test]
fn the_symbol_order_file_lists_mangled_rust_functions() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("symbol-order.txt");
    let text = std::fs::read_to_string(&path).expect("host/symbol-order.txt exists");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 1000, "only {} functions", lines.len());
    let rust = lines
        .iter()
        .filter(|l| l.starts_with("_ZN") || l.starts_with("_R"))
        .count();
    assert!(
        rust * 10 > lines.len() * 9,
        "{rust} of {} are Rust symbols",
        lines.len()
    );
    assert!(
        lines
            .iter()
            .all(|l| !l.is_empty() && !l.contains(char::is_whitespace)),
        "one symbol per line, no blanks"
    );
    // The hot path of every run must be in it: the plugin client and the server loop.
    for needle in ["confd_sdk", "confd_core", "tokio"] {
        assert!(
            lines.iter().any(|l| l.contains(needle)),
            "no {needle} function in the order"
        );
    }
}
