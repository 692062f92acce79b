//! Links the release `confd` with the functions a one-shot run executes placed together at the
//! start of .text (host/symbol-order.txt, made by scripts/symbol-order.sh from the current
//! build). The kernel maps code in 64 KB or larger chunks around each page touched; with the hot
//! functions scattered over the whole text, the host and each builtin plugin process mapped
//! nearly all of it.
//!
//! What it buys, measured (`make bench`, oneshot, with and without the order in one run): the
//! PSS of host + plugin at the peak is 2.7-2.9 MiB lower, 12.8-15.6 → 10.1-12.8 MiB over the four
//! one-shot rows, and a one-resource run 9.1 → 6.0 MiB; wall time the same within noise.
//! To check that it still pays: `CONFD_SYMBOL_ORDER=0 cargo build --release -p confd` relinks
//! without it (nothing else is rebuilt); compare the two binaries with the oneshot bench's
//! `CONFD_BENCH_BASELINE` (docs/performance.md).
//!
//! The names carry crate hashes that change with every rustc or dependency update, and the
//! linker skips names it does not find: `make bench` counts the names present in the build and
//! fails when most are missing. Only for release builds on x86_64 Linux, where rustc links with
//! lld (the option is lld's); `CONFD_SYMBOL_ORDER=0` turns it off, for another linker.

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
        // lld's warnings about names it did not find stay on; rustc shows linker output with
        // `-W linker-messages`.
        println!(
            "cargo:rustc-link-arg-bin=confd=-Wl,--symbol-ordering-file={}",
            order.display()
        );
    }
}
