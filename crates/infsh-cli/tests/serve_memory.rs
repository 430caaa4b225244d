//! Issue 15, bounded memory, end to end with the real binary: the server's
//! resident memory (`VmRSS`/`VmHWM` from /proc/PID/status) stays flat under
//! a 300 MB JSON body (413 at once, the rest never read), a 400 MB upload
//! and 8 concurrent 200 MB uploads (streamed to disk), and an upload that
//! stops half way leaves no partial file behind. The test streams every
//! body from one small buffer: it never holds one in memory either.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::server::{ServeSandbox, Server};
use common::wait_for;
use serde_json::{json, Value};

const MB: u64 = 1_000_000;
const CHUNK: usize = 64 * 1024;

/// A `kB` line of /proc/PID/status, in bytes.
fn status_kb(pid: i32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("{field} not in /proc/{pid}/status"))
        * 1024
}

/// Resident memory now, and its peak so far.
fn rss(server: &Server) -> (u64, u64) {
    (
        status_kb(server.pid(), "VmRSS:"),
        status_kb(server.pid(), "VmHWM:"),
    )
}

/// Sends `head`, then `len` bytes of body (as one stream, or chunked when
/// `chunked`) from one 64 KiB buffer, while reading the answer on another
/// thread; stops sending when the server stops reading (it answered and
/// closed). Returns `(status, body)` of the answer.
fn send_streamed(addr: &str, head: &str, len: u64, chunked: bool) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut reader = stream.try_clone().unwrap();
    let answer = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        // Read until the head and a Content-Length body are in, or EOF.
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            if let Some(end) = find(&got, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
                let want = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if got.len() >= end + 4 + want {
                    break;
                }
            }
        }
        got
    });
    stream.write_all(head.as_bytes()).unwrap();
    let buf = vec![b'x'; CHUNK];
    let mut sent = 0u64;
    while sent < len {
        let n = (len - sent).min(CHUNK as u64) as usize;
        let ok = if chunked {
            stream
                .write_all(format!("{n:x}\r\n").as_bytes())
                .and_then(|_| stream.write_all(&buf[..n]))
                .and_then(|_| stream.write_all(b"\r\n"))
        } else {
            stream.write_all(&buf[..n])
        };
        if ok.is_err() {
            break;
        }
        sent += n as u64;
    }
    if chunked && sent == len {
        let _ = stream.write_all(b"0\r\n\r\n");
    }
    let got = answer.join().unwrap();
    let end = find(&got, b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no answer: {:?}", String::from_utf8_lossy(&got)));
    let head = String::from_utf8_lossy(&got[..end]);
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = serde_json::from_slice(&got[end + 4..]).unwrap_or(Value::Null);
    (status, body)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn addr(server: &Server) -> String {
    server.url.strip_prefix("http://").unwrap().to_string()
}

/// Registers a file of `size` bytes: `(id, path and query of its upload URL)`.
fn register(server: &Server, size: u64) -> (String, String) {
    let data = server.api(
        "POST",
        "/files",
        Some(json!({"files": [{"filename": "big.bin", "content_type": "application/octet-stream", "size": size}]})),
        200,
    );
    let id = data[0]["id"].as_str().unwrap().to_string();
    let url = data[0]["upload_url"].as_str().unwrap();
    (id, url[url.find("/files/").unwrap()..].to_string())
}

fn upload(server: &Server, path: &str, size: u64) -> (u16, Value) {
    let head = format!(
        "PUT {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: {size}\r\nconnection: close\r\n\r\n"
    );
    send_streamed(&addr(server), &head, size, false)
}

/// Temporary (unfinished) files in the file store.
fn partial_files(data_dir: &Path) -> Vec<String> {
    std::fs::read_dir(data_dir.join("files"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// The server warmed up (a registration and a small upload served), then
/// its idle resident memory.
fn idle(server: &Server) -> u64 {
    let (_, path) = register(server, 10);
    assert_eq!(upload(server, &path, 10).0, 200);
    rss(server).0
}

#[test]
fn a_300_mb_json_body_is_413_without_the_server_reading_it() {
    let sb = ServeSandbox::new(&["multi-fn"]);
    let server = sb.start(&[]);
    let idle = idle(&server);
    let len = 300 * MB;
    // With a length: refused before a byte of the body is read.
    let head = format!(
        "POST /apps/run HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n"
    );
    let (status, body) = send_streamed(&addr(&server), &head, len, false);
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["type"], "https://infsh.dev/errors/payload_too_large");
    assert_eq!(
        body["detail"],
        "the JSON body is larger than 32 MiB (--max-json-mib)"
    );
    assert_eq!(body["limited_by"], "--max-json-mib");
    let (_, peak) = rss(&server);
    eprintln!(
        "300 MB JSON with a length: idle {} MB, peak {} MB",
        idle / MB,
        peak / MB
    );
    assert!(
        peak < idle + 8 * MB,
        "RSS peaked at {peak}, idle {idle}: the body was read"
    );

    // Chunked: read only up to the limit (32 MiB), then refused.
    let head = "POST /apps/run HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
    let (status, body) = send_streamed(&addr(&server), head, len, true);
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["limited_by"], "--max-json-mib");
    let (_, peak) = rss(&server);
    eprintln!("300 MB chunked JSON: peak {} MB", peak / MB);
    assert!(
        peak < idle + 32 * 1024 * 1024 + 16 * MB,
        "RSS peaked at {peak}, idle {idle}: more than the limit was held"
    );
    // And the server still serves.
    assert_eq!(upload(&server, &register(&server, 10).1, 10).0, 200);
}

#[test]
fn a_400_mb_upload_and_8_concurrent_200_mb_uploads_keep_rss_flat() {
    let sb = ServeSandbox::new(&["multi-fn"]);
    let server = sb.start(&[]);
    let idle = idle(&server);

    let size = 400 * MB;
    let (id, path) = register(&server, size);
    let (status, body) = upload(&server, &path, size);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["size"], size);
    assert_eq!(
        std::fs::metadata(sb.data_dir().join("files").join(&id))
            .unwrap()
            .len(),
        size
    );
    let (_, peak) = rss(&server);
    eprintln!(
        "400 MB upload: idle {} MB, peak {} MB",
        idle / MB,
        peak / MB
    );
    assert!(peak < idle + 100 * MB, "RSS peaked at {peak}, idle {idle}");

    let size = 200 * MB;
    let uploads: Vec<(String, String)> = (0..8).map(|_| register(&server, size)).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = uploads
            .iter()
            .map(|(_, path)| s.spawn(|| upload(&server, path, size)))
            .collect();
        for h in handles {
            let (status, body) = h.join().unwrap();
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["data"]["size"], size);
        }
    });
    let (_, peak) = rss(&server);
    eprintln!("8 x 200 MB uploads: peak {} MB", peak / MB);
    assert!(peak < idle + 100 * MB, "RSS peaked at {peak}, idle {idle}");
    assert_eq!(partial_files(&sb.data_dir()), Vec::<String>::new());

    // Downloads stream too: reading the 400 MB file back stays flat.
    let mut stream = TcpStream::connect(addr(&server)).unwrap();
    write!(
        stream,
        "GET /files/{id} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        match stream.read(&mut buf).unwrap() {
            0 => break,
            n => total += n as u64,
        }
    }
    assert!(total > 400 * MB, "read {total} bytes");
    let (_, peak) = rss(&server);
    eprintln!("400 MB download: peak {} MB", peak / MB);
    assert!(peak < idle + 100 * MB, "RSS peaked at {peak}, idle {idle}");
}

#[test]
fn an_upload_that_stops_half_way_leaves_no_partial_file() {
    let sb = ServeSandbox::new(&["multi-fn"]);
    let server = sb.start(&[]);
    let size = 100 * MB;
    let (id, path) = register(&server, size);
    let mut stream = TcpStream::connect(addr(&server)).unwrap();
    write!(
        stream,
        "PUT {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: {size}\r\n\r\n"
    )
    .unwrap();
    let buf = vec![b'x'; CHUNK];
    for _ in 0..160 {
        stream.write_all(&buf).unwrap();
    }
    // Some of it reached the disk...
    assert!(
        wait_for(Duration::from_secs(10), || !partial_files(&sb.data_dir())
            .is_empty()),
        "no temporary file while uploading"
    );
    // ...then the client goes away.
    drop(stream);
    assert!(
        wait_for(Duration::from_secs(10), || partial_files(&sb.data_dir())
            .is_empty()),
        "a partial file was left: {:?}",
        partial_files(&sb.data_dir())
    );
    assert!(!sb.data_dir().join("files").join(&id).exists());
    let problem = server.api("GET", &format!("/files/{id}"), None, 404);
    assert_eq!(problem["type"], "https://infsh.dev/errors/not_found");
}
