//! Generates the Rust types of the control-channel schema at build time: `protox` parses the
//! `.proto` in pure Rust (no system `protoc`), `prost-build` writes the message types and
//! `pbjson-build` writes their serde impls following the proto3 JSON mapping.

use std::error::Error;
use std::path::PathBuf;

const PROTO_ROOT: &str = "proto";
const PROTO_FILE: &str = "gala_gopher/ipc/v1/control.proto";

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let descriptors = protox::compile([PROTO_FILE], [PROTO_ROOT])?;
    let descriptor_bytes = prost::Message::encode_to_vec(&descriptors);
    // For `strict`: the schema at run time, to refuse unknown fields in hand-written JSON.
    std::fs::write(out_dir.join("control.fds"), &descriptor_bytes)?;

    prost_build::Config::new()
        .out_dir(&out_dir)
        .compile_fds(descriptors)?;

    pbjson_build::Builder::new()
        .out_dir(&out_dir)
        .register_descriptors(&descriptor_bytes)?
        // A newer daemon may add fields; an older probe must keep reading, as it does in
        // the protobuf encoding, which skips unknown fields by design.
        .ignore_unknown_fields()
        .build(&[".gala_gopher.ipc.v1"])?;
    Ok(())
}
