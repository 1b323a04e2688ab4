//! Compiles every `.proto` under `proto/` with `protox` (pure Rust: no `protoc` needed) into prost
//! messages and tonic services, and writes the encoded descriptor sets for gRPC reflection: Livora's,
//! and Arrow Flight's service (descriptors only).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Every .proto of Livora, relative to this crate's root (which is also the import root): Livora's
/// own APIs, and the standard ones it serves (KServe's Open Inference Protocol V2).
const PROTOS: &[&str] = &["livora/v1/features.proto", "livora/v1/inference.proto", "inference/grpc_predict_v2.proto"];

/// Arrow Flight's service, described for reflection only: `arrow-flight` brings its Rust code.
const FLIGHT_PROTO: &str = "arrow/flight.proto";

fn main() -> Result<()> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    println!("cargo:rerun-if-changed=build.rs");
    for proto in PROTOS.iter().chain([&FLIGHT_PROTO]) {
        println!("cargo:rerun-if-changed={}", root.join(proto).display());
    }

    let compiler = compile(&root, PROTOS, &out.join("livora_descriptor.bin"))?;
    compile(&root, &[FLIGHT_PROTO], &out.join("flight_descriptor.bin"))?;

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

/// Compiles `files` and writes their descriptor set to `descriptor`, as reflection serves it:
/// with imports, so that a client can resolve every type, and with source info, so that
/// `grpcurl describe` shows the comments. protox ships `google/protobuf/*.proto` itself, so
/// imports of the well-known types resolve.
fn compile(root: &Path, files: &[&str], descriptor: &Path) -> Result<protox::Compiler> {
    let mut compiler = protox::Compiler::new([root]).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(files).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    std::fs::write(descriptor, compiler.encode_file_descriptor_set())
        .with_context(|| format!("cannot write {}", descriptor.display()))?;
    Ok(compiler)
}
