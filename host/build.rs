//! Links the release `confd` with the functions a run executes placed together at the start of
//! .text (host/symbol-order.txt, made by scripts/symbol-order.sh). The kernel maps code in
//! 64 KB or larger chunks around each page touched; with the hot functions scattered over the
//! whole text, the host and each builtin plugin process mapped nearly all of it, which was
//! most of their resident memory.
//!
//! Only for release builds on x86_64 Linux, where rustc links with lld (the option is lld's);
//! `CONFD_SYMBOL_ORDER=0` turns it off, for another linker.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=symbol-order.txt");
    println!("cargo:rerun-if-env-changed=CONFD_SYMBOL_ORDER");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let target = std::env::var("TARGET").unwrap_or_default();
    let off = std::env::var("CONFD_SYMBOL_ORDER").is_ok_and(|v| v == "0");
    let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR") else {
        return;
    };
    let order = PathBuf::from(dir).join("symbol-order.txt");
    if release && target == "x86_64-unknown-linux-gnu" && !off && order.exists() {
        println!(
            "cargo:rustc-link-arg-bin=confd=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        // Names from an older build that no longer exist are expected, not worth a warning.
        println!("cargo:rustc-link-arg-bin=confd=-Wl,--no-warn-symbol-ordering");
    }
}
