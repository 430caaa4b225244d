//! Bytes → one HTTP request (method, content type, key, path, body) through
//! the whole router of a server hosting no app: no 5xx, no panic, every
//! error problem JSON. The body is `infsh_server::fuzzing::http_request`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    infsh_server::fuzzing::http_request(data);
});
