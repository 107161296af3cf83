//! Compiles `proto/` with protox (a pure-Rust protobuf compiler, so no system `protoc` is needed)
//! and generates the tonic services and prost messages. The encoded descriptor set is written to
//! `OUT_DIR` too, for server reflection.

use prost::Message;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["ipledger/v1/ipledger.proto", "ipledger/journal/v1/journal.proto"];
    let fds = protox::compile(files, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("ipledger_descriptor.bin"), fds.encode_to_vec())?;
    // Our codec reports a request that does not decode as INVALID_ARGUMENT (src/grpc/codec.rs).
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::grpc::codec::Codec")
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
