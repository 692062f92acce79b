//! Generates the gRPC stubs from `proto/` with protox, so a build needs no `protoc`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read when the script runs, not when it is compiled: a compiled script moved with its
    // target directory would otherwise look for the protos where the crate used to be.
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../proto");
    let files = [
        root.join("confd/plugin/v1/database.proto"),
        root.join("plugin/grpc_controller.proto"),
        root.join("plugin/grpc_stdio.proto"),
        root.join("plugin/grpc_broker.proto"),
    ];
    let fds = protox::compile(&files, [&root])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // The values answer is encoded and decoded by hand (sdk/src/values.rs, which says what
        // that buys); the generated client and server reach it through this mapping, so the
        // method paths of GetValues and GetValuesStream still come from the .proto.
        .extern_path(
            ".confd.plugin.v1.GetValuesResponse",
            "crate::values::GetValuesResponse",
        )
        // Values sent along with a watch answer arrive as the map the trait returns.
        .btree_map(".confd.plugin.v1.WatchPrefixResponse.values")
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
