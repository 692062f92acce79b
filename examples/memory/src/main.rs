//! The `confd-database-memory` plugin executable: one call into the SDK.
use confd_database_memory::Memory;

fn main() {
    let opts = confd_sdk::ServeOpts::new("memory", Memory::new)
        .version(env!("CARGO_PKG_VERSION"))
        .capabilities(["watch"]);
    // The benchmark sets this to measure a plugin that offers only the `Database` trait.
    let opts = if std::env::var_os("CONFD_MEMORY_PLUGIN_MAP_ONLY").is_some() {
        opts
    } else {
        opts.visit_values(Memory::visit_values)
    };
    confd_sdk::serve(opts);
}
