//! Compiles every `.proto` under `proto/` with `protox` (pure Rust: no `protoc` needed) into prost
//! messages and tonic services, and writes the encoded descriptor set for gRPC reflection.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// Every .proto of Livora, relative to this crate's root (which is also the import root): Livora's
/// own APIs, and the standard ones it serves (KServe's Open Inference Protocol V2).
const PROTOS: &[&str] = &["livora/v1/features.proto", "livora/v1/inference.proto", "inference/grpc_predict_v2.proto"];

fn main() -> Result<()> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    println!("cargo:rerun-if-changed=build.rs");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={}", root.join(proto).display());
    }

    // protox ships google/protobuf/*.proto itself, so imports of the well-known types resolve.
    let mut compiler = protox::Compiler::new([&root]).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(PROTOS).map_err(|e| anyhow::anyhow!("{e:?}"))?;

    // The descriptor set served by reflection: with imports, so that a client can resolve every
    // type, and with source info, so that `grpcurl describe` shows the comments.
    let descriptor = out.join("livora_descriptor.bin");
    std::fs::write(&descriptor, compiler.encode_file_descriptor_set())
        .with_context(|| format!("cannot write {}", descriptor.display()))?;

    // Clients are generated without `connect` (which needs tonic's `channel` feature): callers
    // build a channel themselves and wrap it with `new`.
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .build_transport(false)
        .compile_fds(compiler.file_descriptor_set())
        .context("generating Rust code from the descriptors failed")?;
    Ok(())
}
