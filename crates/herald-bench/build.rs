//! Generates the Rust types of the client protocol's Protobuf schema for `--format protobuf`:
//! Herald's own `.proto` (crates/herald/proto/client.proto, whose message and field numbers
//! are the ones the Centrifugo SDKs put on the wire), parsed with protox (no system `protoc`)
//! and turned into Rust by prost into `$OUT_DIR/herald.client.rs`.

fn main() {
    const DIR: &str = "../herald/proto";
    const SCHEMA: &str = "../herald/proto/client.proto";
    println!("cargo:rerun-if-changed={SCHEMA}");
    println!("cargo:rerun-if-changed=build.rs");
    let descriptors = protox::compile([SCHEMA], [DIR])
        .unwrap_or_else(|e| panic!("{SCHEMA} is not a valid Protobuf schema: {e}"));
    prost_build::Config::new()
        .bytes(["."])
        .compile_fds(descriptors)
        .unwrap_or_else(|e| panic!("cannot generate Rust from {SCHEMA}: {e}"));
}
