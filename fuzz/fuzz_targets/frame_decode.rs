//! Bytes → `infsh_protocol::read_message` on an in-memory reader, as the
//! host reads a worker (and a worker the host). Half the inputs resolve
//! `spilled` notes in a private spill folder. The body is
//! `infsh_protocol::fuzzing::frame_decode`.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn spill_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("infsh-fuzz-spill-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("spill folder");
        dir
    })
}

// The first byte picks the mode (bit 0: resolve `spilled` notes in the
// spill folder), the rest is the byte stream.
fuzz_target!(|data: &[u8]| {
    infsh_protocol::fuzzing::frame_decode_input(data, spill_dir());
});
