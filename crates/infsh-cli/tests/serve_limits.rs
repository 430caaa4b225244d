//! `infsh serve --max-connections`, end to end with the real binary: a
//! flood of connections past the cap is refused at once with a 503 problem
//! (never by running out of file descriptors, so no `accept error` in the
//! log), and service resumes the moment the flood stops. The other limits
//! are tested over real sockets in crates/infsh-server/tests/limits.rs.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::server::{http_get, ServeSandbox};
use serde_json::Value;

const CAP: usize = 50;
const FLOOD: usize = 300;

#[test]
fn a_flood_past_max_connections_is_refused_cleanly_and_service_resumes() {
    let sb = ServeSandbox::new(&["multi-fn"]);
    let server = sb.start(&["--max-connections", "50", "--header-timeout", "60"]);
    let addr = server.url.strip_prefix("http://").unwrap().to_string();

    // The cap's worth of silent connections, accepted first (the listen
    // queue is first in, first out)...
    let held: Vec<TcpStream> = (0..CAP)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    // ...then the flood: each is answered 503 and closed at once.
    let flood: Vec<TcpStream> = (0..FLOOD)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    for mut s in flood {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text)
            .expect("a refused connection is closed, not left hanging");
        assert!(
            text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nretry-after: 1\r\n"), "{text}");
        assert!(
            text.contains("\r\ncontent-type: application/problem+json\r\n"),
            "{text}"
        );
        let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(
            body["type"],
            "https://infsh.dev/errors/too_many_connections"
        );
        assert_eq!(body["status"], 503);
        assert_eq!(
            body["detail"],
            "the server has 50 connections open, its limit (--max-connections); retry shortly"
        );
    }

    // The flood stops: the next client is served at once.
    for mut s in held {
        // A held connection still works: it is a client like any other.
        s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    }
    let t0 = Instant::now();
    let mut answered = None;
    while t0.elapsed() < Duration::from_secs(5) {
        if let Some((200, _)) = http_get(&server.url, "/health", None) {
            answered = Some(t0.elapsed());
            break;
        }
    }
    let after = answered.expect("service never resumed");
    assert!(
        after < Duration::from_millis(500),
        "service resumed after {after:?}"
    );

    let (status, metrics) = http_get(&server.url, "/metrics", None).unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics
            .lines()
            .any(|l| l == format!("infsh_http_refused_total{{limit=\"connection_cap\"}} {FLOOD}")),
        "{metrics}"
    );

    let log = server.log();
    assert!(!log.contains("accept error"), "{log}");
    assert!(!log.contains("cannot accept"), "{log}");
    assert!(log.contains("file descriptor limit"), "{log}");
    assert!(log.contains("max_connections=50"), "{log}");
}
