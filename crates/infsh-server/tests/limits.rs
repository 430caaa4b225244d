//! Real-socket tier, connection limits (docs/operations.md): `serve()` on
//! 127.0.0.1:0 with a real engine, spoken to over raw TCP so that the tests
//! can be the slow, stalling or greedy client. Timeouts are set short here
//! (about a second) to keep the file fast.

mod common;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use common::*;
use infsh_engine::Engine;
use infsh_server::{Limits, StreamTiming};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

struct Live {
    addr: SocketAddr,
    engine: Engine,
    stop: Option<oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<Result<(), infsh_server::ServerError>>,
    dir: tempfile::TempDir,
}

async fn live(apps: &[&'static str], keys: &[&str], limits: Limits, timing: StreamTiming) -> Live {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut setup = Setup::new(apps);
    setup.public_url = format!("http://{addr}");
    setup.server.api_keys = keys.iter().map(|k| k.to_string()).collect();
    setup.server.limits = limits;
    let server_config = setup.server.clone();
    let s = start(setup).await;
    let (tx, rx) = oneshot::channel::<()>();
    let served = tokio::spawn(infsh_server::serve_with_timing(
        s.engine.clone(),
        server_config,
        timing,
        listener,
        async move {
            let _ = rx.await;
        },
    ));
    Live {
        addr,
        engine: s.engine,
        stop: Some(tx),
        served,
        dir: s.dir,
    }
}

impl Live {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(20), &mut self.served)
            .await
            .expect("graceful shutdown finished")
            .unwrap()
            .unwrap();
        self.engine.shutdown(Duration::from_secs(5)).await;
    }
}

/// A raw HTTP/1.1 response: status, lower-cased headers, body.
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Reads one response with a Content-Length body off `r`.
async fn read_response<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Raw {
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).await.unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':').unwrap();
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).await.unwrap();
    Raw {
        status,
        headers,
        body,
    }
}

/// One request on a fresh connection.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> Raw {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = key
        .map(|k| format!("authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    read_response(&mut BufReader::new(s)).await
}

/// Reads until the server closes the connection; Err if it has not
/// within `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Result<(), ()> {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(()),
            Ok(Ok(_)) => continue,
            Err(_) => return Err(()),
        }
    }
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in\n{text}"))
}

fn short(header: f64, idle: f64, body: f64) -> Limits {
    Limits {
        header_timeout: Duration::from_secs_f64(header),
        idle_timeout: Duration::from_secs_f64(idle),
        body_timeout: Duration::from_secs_f64(body),
        ..Limits::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_by_the_header_timeout_while_others_are_served() {
    bounded(async {
        // 3,000 client sockets and as many server ones in this process.
        infsh_server::raise_fd_limit().unwrap();
        const HALF_OPEN: usize = 3000;
        let header = Duration::from_secs(2);
        let live = live(
            &["multi-fn"],
            &[],
            short(2.0, 60.0, 30.0),
            StreamTiming::default(),
        )
        .await;
        let addr = live.addr;

        // Each sends half a request head and then nothing; its task reports
        // how long after connecting the server closed it.
        let mut closers = Vec::with_capacity(HALF_OPEN);
        for _ in 0..HALF_OPEN {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let t0 = Instant::now();
            s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nx-slow: ")
                .await
                .unwrap();
            closers.push(tokio::spawn(async move {
                let closed = closed_within(&mut s, Duration::from_secs(10)).await;
                (closed, t0.elapsed())
            }));
        }

        // Meanwhile a normal client is answered at once, every time.
        let mut slowest = Duration::ZERO;
        for _ in 0..10 {
            let t = Instant::now();
            let r = request(addr, "GET", "/health", None, None).await;
            assert_eq!(r.status, 200);
            slowest = slowest.max(t.elapsed());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            slowest < Duration::from_millis(50),
            "a normal request took {slowest:?}"
        );

        let mut latest = Duration::ZERO;
        for c in closers {
            let (closed, after) = c.await.unwrap();
            assert!(closed.is_ok(), "a half-open connection was never closed");
            // Closed by the timeout, not before it.
            assert!(
                after >= header - Duration::from_millis(100),
                "closed after {after:?}"
            );
            latest = latest.max(after);
        }
        assert!(
            latest <= header + Duration::from_secs(1),
            "the last closed after {latest:?}"
        );

        let text =
            String::from_utf8(request(addr, "GET", "/metrics", None, None).await.body).unwrap();
        assert!(
            metric(
                &text,
                "infsh_http_connections_closed_total{reason=\"header_timeout\"}"
            ) >= HALF_OPEN as u64
        );
        // Only the /metrics request's own connection is open.
        assert_eq!(metric(&text, "infsh_http_open_connections"), 1);
        live.stop().await;
    })
    .await;
}

#[tokio::test]
async fn idle_keep_alive_connections_close_after_the_idle_timeout_but_a_long_stream_does_not() {
    bounded(async {
        let timing = StreamTiming {
            heartbeat: Duration::from_millis(200),
            snapshot: Duration::from_secs(15),
            ..StreamTiming::default()
        };
        let live = live(&["slow"], &[], short(0.5, 1.0, 30.0), timing).await;
        let addr = live.addr;

        // A keep-alive connection: one request, then silence.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut r = BufReader::new(s);
        assert_eq!(read_response(&mut r).await.status, 200);
        let t0 = Instant::now();
        let mut s = r.into_inner();
        closed_within(&mut s, Duration::from_secs(5))
            .await
            .expect("idle connection closed");
        let idle = t0.elapsed();
        // The idle timeout (1 s), not the shorter header timeout (0.5 s).
        assert!(
            idle >= Duration::from_millis(900) && idle < Duration::from_millis(1900),
            "closed after {idle:?}"
        );

        // A stream of a 3 s task: heartbeats every 200 ms, nothing from the
        // client, three times the idle timeout, and it ends with the task.
        let task = request(
            addr,
            "POST",
            "/apps/run",
            None,
            Some(json!({"app": "tests/slow", "input": {"seconds": 3.0}})),
        )
        .await
        .json();
        let id = task["data"]["id"].as_str().unwrap().to_string();
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET /tasks/{id}/stream HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut r = BufReader::new(s);
        let mut heartbeats = 0;
        let mut line = String::new();
        let t0 = Instant::now();
        let last = loop {
            line.clear();
            let n = tokio::time::timeout(Duration::from_secs(30), r.read_line(&mut line))
                .await
                .expect("stream went silent")
                .unwrap();
            assert!(
                n > 0,
                "connection closed mid-stream after {:?}",
                t0.elapsed()
            );
            let Ok(v) = serde_json::from_str::<Value>(line.trim()) else {
                continue; // status line, headers, chunk sizes
            };
            if v["type"] == "heartbeat" {
                heartbeats += 1;
            } else if v["status"].as_u64().is_some_and(|s| s >= 10) {
                break v;
            }
        };
        assert_eq!(last["status"], 10, "{last}"); // COMPLETED
        assert!(t0.elapsed() > Duration::from_secs(2), "{:?}", t0.elapsed());
        assert!(heartbeats >= 5, "{heartbeats} heartbeats");

        let text =
            String::from_utf8(request(addr, "GET", "/metrics", None, None).await.body).unwrap();
        assert!(
            metric(
                &text,
                "infsh_http_connections_closed_total{reason=\"idle_timeout\"}"
            ) >= 1
        );
        live.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_stalled_upload_is_cut_off_with_408_and_leaves_no_file() {
    bounded(async {
        let live = live(
            &["multi-fn"],
            &[],
            short(5.0, 60.0, 1.0),
            StreamTiming::default(),
        )
        .await;
        let addr = live.addr;
        let created = request(
            addr,
            "POST",
            "/files",
            None,
            Some(json!({"files": [{"filename": "big.bin", "size": 100000}]})),
        )
        .await;
        assert_eq!(created.status, 200);
        let file = created.json()["data"][0].clone();
        let id = file["id"].as_str().unwrap().to_string();
        let upload_url = file["upload_url"].as_str().unwrap();
        let path = &upload_url[upload_url.find("/files/").unwrap()..];

        // 10 KB of a promised 100 KB, then nothing.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("PUT {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        s.write_all(&[b'x'; 10_000]).await.unwrap();
        let t0 = Instant::now();
        let mut r = BufReader::new(s);
        let resp = tokio::time::timeout(Duration::from_secs(5), read_response(&mut r))
            .await
            .expect("no answer to the stalled upload");
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
            "answered after {waited:?}"
        );
        assert_eq!(resp.status, 408);
        assert_eq!(
            resp.header("content-type"),
            Some("application/problem+json")
        );
        assert_eq!(resp.header("connection"), Some("close"));
        let body = resp.json();
        assert_eq!(body["type"], "https://infsh.dev/errors/request_timeout");
        assert_eq!(body["status"], 408);
        assert_eq!(
            body["detail"],
            "the request body stalled: no request body bytes arrived for 1s (--body-timeout 1s)"
        );
        let mut s = r.into_inner();
        closed_within(&mut s, Duration::from_secs(2))
            .await
            .expect("connection closed after the 408");

        // Nothing stored: the file still has no content, and no file under
        // the store's folder carries its id.
        let get = request(addr, "GET", &format!("/files/{id}"), None, None).await;
        assert_eq!(get.status, 404);
        assert!(get.json()["detail"]
            .as_str()
            .unwrap()
            .contains("has no content yet"));
        let files_dir = live.dir.path().join("data").join("files");
        let mut stack = vec![files_dir];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                assert!(
                    !p.to_string_lossy().contains(&id),
                    "left behind: {}",
                    p.display()
                );
                if p.is_dir() {
                    stack.push(p);
                }
            }
        }

        // The same signed URL takes the whole body afterwards.
        let mut s = TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "PUT {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\nconnection: close\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&[b'y'; 100_000]).await.unwrap();
        let put = read_response(&mut BufReader::new(s)).await;
        assert_eq!(put.status, 200, "{}", String::from_utf8_lossy(&put.body));
        let get = request(addr, "GET", &format!("/files/{id}"), None, None).await;
        assert_eq!(get.status, 200);
        assert_eq!(get.body, vec![b'y'; 100_000]);

        let text =
            String::from_utf8(request(addr, "GET", "/metrics", None, None).await.body).unwrap();
        assert_eq!(
            metric(
                &text,
                "infsh_http_connections_closed_total{reason=\"body_timeout\"}"
            ),
            1
        );
        live.stop().await;
    })
    .await;
}

#[tokio::test]
async fn runs_past_the_rate_limit_get_429_with_retry_after_per_key() {
    bounded(async {
        let limits = Limits {
            runs_per_minute: NonZeroU32::new(2),
            ..Limits::default()
        };
        let live = live(
            &["multi-fn"],
            &["key-a", "key-b"],
            limits,
            StreamTiming::default(),
        )
        .await;
        let addr = live.addr;
        // Runs of an app that does not exist still count: the limit is on
        // submissions, checked before the body is looked at.
        let run = |key: &'static str| {
            request(
                addr,
                "POST",
                "/apps/run",
                Some(key),
                Some(json!({"app": "tests/nope"})),
            )
        };
        assert_eq!(run("key-a").await.status, 404);
        assert_eq!(run("key-a").await.status, 404);
        let refused = run("key-a").await;
        assert_eq!(refused.status, 429);
        assert_eq!(
            refused.header("content-type"),
            Some("application/problem+json")
        );
        let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
        // One run per 30 s comes back.
        assert!((29..=30).contains(&retry), "Retry-After {retry}");
        let body = refused.json();
        assert_eq!(body["type"], "https://infsh.dev/errors/rate_limited");
        assert_eq!(body["status"], 429);
        assert_eq!(body["retry_after"], retry);
        assert_eq!(body["limit_per_minute"], 2);
        assert_eq!(
            body["detail"],
            format!(
                "too many runs: at most 2 per minute per API key (--rate-limit); retry in {retry}s"
            )
        );
        // The other key has its own budget; other routes are not limited.
        assert_eq!(run("key-b").await.status, 404);
        let tasks = request(addr, "GET", "/tasks", Some("key-a"), None).await;
        assert_eq!(tasks.status, 200);
        // The per-function route shares the budget.
        let f = request(
            addr,
            "POST",
            "/apps/tests/multi-fn/functions/run/run",
            Some("key-a"),
            Some(json!({"input": {}})),
        )
        .await;
        assert_eq!(f.status, 429);

        let text = String::from_utf8(
            request(addr, "GET", "/metrics", Some("key-b"), None)
                .await
                .body,
        )
        .unwrap();
        assert_eq!(
            metric(&text, "infsh_http_refused_total{limit=\"rate_limit\"}"),
            2
        );
        live.stop().await;
    })
    .await;
}

#[tokio::test]
async fn streams_past_the_per_task_cap_get_429() {
    bounded(async {
        let limits = Limits {
            streams_per_task: 2,
            ..Limits::default()
        };
        let timing = StreamTiming {
            heartbeat: Duration::from_millis(200),
            snapshot: Duration::from_secs(15),
            ..StreamTiming::default()
        };
        let live = live(&["slow"], &[], limits, timing).await;
        let addr = live.addr;
        let task = request(
            addr,
            "POST",
            "/apps/run",
            None,
            Some(json!({"app": "tests/slow", "input": {"seconds": 30.0}})),
        )
        .await
        .json();
        let id = task["data"]["id"].as_str().unwrap().to_string();
        // Two open streams, each past its headers (the first snapshot).
        let mut open = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET /tasks/{id}/stream HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut r = BufReader::new(s);
            let mut line = String::new();
            r.read_line(&mut line).await.unwrap();
            assert!(line.starts_with("HTTP/1.1 200"), "{line}");
            open.push(r);
        }
        let refused = request(addr, "GET", &format!("/tasks/{id}/stream"), None, None).await;
        assert_eq!(refused.status, 429);
        let body = refused.json();
        assert_eq!(body["type"], "https://infsh.dev/errors/too_many_streams");
        assert_eq!(body["scope"], "task");
        assert_eq!(body["limit"], 2);
        assert_eq!(
            body["detail"],
            format!("task \"{id}\" already has 2 open streams, the most per task (--max-streams-per-task)")
        );
        // A closed stream gives its slot back.
        drop(open.pop());
        // (The server notices the close at its next heartbeat write or read;
        // poll until it has.)
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = request(addr, "GET", &format!("/tasks/{id}"), None, None).await;
            assert_eq!(r.status, 200);
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET /tasks/{id}/stream HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut line = String::new();
            BufReader::new(s).read_line(&mut line).await.unwrap();
            if line.starts_with("HTTP/1.1 200") {
                break;
            }
            assert!(line.starts_with("HTTP/1.1 429"), "{line}");
            assert!(Instant::now() < deadline, "no stream slot came back after a stream closed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let cancel = request(addr, "POST", &format!("/tasks/{id}/cancel"), None, None).await;
        assert_eq!(cancel.status, 200);
        live.stop().await;
    })
    .await;
}

/// One request on a fresh connection from this local address.
async fn request_from(from: &str, addr: SocketAddr, path: &str, body: Value) -> Raw {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    let body = body.to_string();
    let req = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    read_response(&mut BufReader::new(s)).await
}

#[tokio::test]
async fn without_keys_the_rate_limit_is_per_client_address() {
    bounded(async {
        let limits = Limits {
            runs_per_minute: NonZeroU32::new(1),
            ..Limits::default()
        };
        let live = live(&["multi-fn"], &[], limits, StreamTiming::default()).await;
        let run = json!({"app": "tests/nope"});
        // Two loopback addresses are two clients.
        assert_eq!(
            request_from("127.0.0.1", live.addr, "/run", run.clone())
                .await
                .status,
            404
        );
        let refused = request_from("127.0.0.1", live.addr, "/run", run.clone()).await;
        assert_eq!(refused.status, 429);
        assert!(refused.json()["detail"].as_str().unwrap().starts_with(
            "too many runs: at most 1 per minute per client address (--rate-limit); retry in "
        ));
        assert_eq!(
            request_from("127.0.0.2", live.addr, "/run", run)
                .await
                .status,
            404
        );
        live.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_stalled_json_body_is_cut_off_with_408() {
    bounded(async {
        let live = live(&["multi-fn"], &[], short(5.0, 60.0, 1.0), StreamTiming::default()).await;
        let mut s = TcpStream::connect(live.addr).await.unwrap();
        s.write_all(
            b"POST /apps/run HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"app\": ",
        )
        .await
        .unwrap();
        let t0 = Instant::now();
        let mut r = BufReader::new(s);
        let resp = tokio::time::timeout(Duration::from_secs(5), read_response(&mut r))
            .await
            .expect("no answer to the stalled body");
        assert!(t0.elapsed() >= Duration::from_millis(900), "{:?}", t0.elapsed());
        assert_eq!(resp.status, 408);
        let body = resp.json();
        assert_eq!(body["type"], "https://infsh.dev/errors/request_timeout");
        assert_eq!(
            body["detail"],
            "the request body stalled: no request body bytes arrived for 1s (--body-timeout 1s)"
        );
        live.stop().await;
    })
    .await;
}
