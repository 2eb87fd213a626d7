//! Every decoder of a container runtime's answer on arbitrary bytes: gRPC framing, containerd's
//! and iSulad's protobuf messages, Docker's, CRI-O's and crictl's JSON. None may panic, whatever
//! a runtime (or something else listening on its socket) sends. `cargo fuzz run runtime_answers`
//! from framework/.
#![no_main]

use gala_gopher::containers::{
    grpc, parse_crictl_inspect, parse_crio_inspect, parse_docker_inspect,
    parse_get_container_response, parse_inspect_container_response,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let message = grpc::decode_frame(data).unwrap_or(data);
    if let Ok(Some(c)) = parse_get_container_response(message) {
        let _ = c.sandbox_id();
        let _ = c.meta();
    }
    if let Ok(Some(c)) = parse_inspect_container_response(message) {
        let _ = c.meta();
    }
    if let Ok(Some(c)) = parse_docker_inspect(data) {
        let _ = c.sandbox_id();
        let _ = c.meta();
    }
    if let Ok(c) = parse_crio_inspect(data) {
        let _ = c.meta();
    }
    let _ = parse_crictl_inspect(data);
});
