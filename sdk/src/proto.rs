//! The generated gRPC code, private to the crate so protobuf types never reach the public API.
#![allow(clippy::all, missing_docs, unreachable_pub, dead_code)]

/// confd's own wire contract (`confd.plugin.v1.Database`).
pub(crate) mod v1 {
    tonic::include_proto!("confd.plugin.v1");
}

/// go-plugin's housekeeping services (`plugin.GRPCController`, `GRPCStdio`, `GRPCBroker`).
pub(crate) mod goplugin {
    tonic::include_proto!("plugin");
}
