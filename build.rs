//! Compiles the public contract in `proto/` with `protox` (pure Rust, no system `protoc`) and writes the
//! descriptor set that the server's reflection service publishes.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &[
    "proto/kit/webhooks/v1/resources.proto",
    "proto/kit/webhooks/v1/webhook_service.proto",
    "proto/kit/webhooks/v1/event_service.proto",
    "proto/kit/webhooks/v1/delivery_service.proto",
    "proto/kit/webhooks/v1/api_key_service.proto",
    "proto/kit/webhooks/v1/audit_service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(PROTOS, ["proto"])?;
    // `compile_fds` ignores `file_descriptor_set_path`, so the set for reflection is written here.
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("kit_webhooks_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        // Header maps as BTreeMap: a report's ten or so headers decode without hashing or rehashing (that was
        // a fifth of the server's gRPC time under load), and they are stored and shown in name order.
        .btree_map(".")
        // `bytes` fields as `bytes::Bytes`: a task's body is built once per event and shared by its
        // deliveries' tasks, and the daemon decodes it as a slice of the received buffer, not a copy.
        .bytes(".")
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
