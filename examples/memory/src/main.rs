//! The `confd-database-memory` plugin executable: one call into the SDK.
fn main() {
    confd_sdk::serve(
        confd_sdk::ServeOpts::new("memory", confd_database_memory::Memory::new)
            .version(env!("CARGO_PKG_VERSION"))
            .capabilities(["watch"]),
    );
}
