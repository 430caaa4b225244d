//! Bytes → the server's run-body parsing and `RunRequest` conversion (both
//! run endpoints), and the same bytes as a request path through the path
//! normaliser. The body is `infsh_server::fuzzing::run_request`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    infsh_server::fuzzing::run_request(data);
});
