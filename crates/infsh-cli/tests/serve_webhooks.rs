//! End to end: webhooks that survive the server and can be verified. A
//! receiver in Python checks every delivery with the independent
//! `standardwebhooks` package (scripts/dev-requirements.txt); the server is
//! killed with -9 while it retries, and the restarted one delivers the same
//! message. A short `--webhook-secret` is refused before anything starts.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::server::*;
use common::*;
use serde_json::{json, Value};

/// 32 bytes, base64.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwAAAAAAAAAAA=";

/// Answers every POST with the status in `status.txt` (500 until the test
/// writes 200), and appends one JSON line per request to `hooks.jsonl`:
/// its headers, its body, and whether `standardwebhooks` verified it with
/// the right secret and with a wrong one (which must fail: the check can).
const RECEIVER: &str = r#"
import json, sys, http.server, pathlib
from standardwebhooks.webhooks import Webhook

here = pathlib.Path(sys.argv[1])
right, wrong = Webhook(sys.argv[2]), Webhook("whsec_" + "QUFB" * 8)

def verifies(wh, body, headers):
    try:
        wh.verify(body, headers)
        return True
    except Exception:
        return False

class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"])).decode()
        headers = {k.lower(): v for k, v in self.headers.items()}
        line = {"headers": headers, "body": json.loads(body),
                "verified": verifies(right, body, headers),
                "verified_with_wrong_secret": verifies(wrong, body, headers)}
        with open(here / "hooks.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")
        status = int((here / "status.txt").read_text())
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

server = http.server.HTTPServer(("127.0.0.1", 0), H)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// The receiver process; killed (and reaped) on drop.
struct Receiver {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl Receiver {
    fn start(dir: &Path) -> Receiver {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("status.txt"), "500").unwrap();
        std::fs::write(dir.join("receiver.py"), RECEIVER).unwrap();
        let mut child = Command::new(python())
            .arg(dir.join("receiver.py"))
            .arg(dir)
            .arg(SECRET)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the webhook receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("the receiver did not start (is standardwebhooks installed? scripts/dev-requirements.txt): {line:?}")
        });
        Receiver {
            child,
            dir: dir.to_path_buf(),
            url: format!("http://127.0.0.1:{port}/hook"),
        }
    }

    fn answer(&self, status: u16) {
        std::fs::write(self.dir.join("status.txt"), status.to_string()).unwrap();
    }

    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("hooks.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_webhook_retried_across_kill_9_is_delivered_signed_and_verifies() {
    let sb = ServeSandbox::new(&["multi-fn"]);
    let receiver = Receiver::start(&sb.path().join("receiver"));
    let flags = ["--webhook-secret", SECRET];
    let mut server = sb.start(&flags);
    let id = server.submit(json!({
        "app": "tests/multi-fn",
        "input": {"text": "hook"},
        "webhook": receiver.url,
        "metadata": {"m": 3},
    }));
    // The receiver answers 500: the failed attempt shows on the task.
    let task = server.wait_task(&id, Duration::from_secs(60), |t| {
        t["webhook_delivery"]["attempts"].as_u64() >= Some(1)
    });
    assert_eq!(task["status"], 10);
    let delivery = &task["webhook_delivery"];
    assert_eq!(delivery["state"], "pending", "{task:#}");
    assert_eq!(
        delivery["last_error"], "HTTP 500 Internal Server Error",
        "{task:#}"
    );
    assert_eq!(delivery["message_id"], format!("msg_{id}"));

    server.kill9();
    let failed_before_restart = receiver.requests().len();
    assert!(failed_before_restart >= 1);
    receiver.answer(200);
    let server = sb.start(&flags);
    let task = server.wait_task(&id, Duration::from_secs(60), |t| {
        t["webhook_delivery"]["state"] == "delivered"
    });
    let delivery = &task["webhook_delivery"];
    let requests = receiver.requests();
    assert!(requests.len() > failed_before_restart, "{requests:#?}");
    assert_eq!(delivery["attempts"], requests.len() as u64, "{task:#}");
    assert_eq!(delivery["last_error"], Value::Null);

    for request in &requests {
        assert_eq!(request["verified"], true, "{request:#}");
        assert_eq!(request["verified_with_wrong_secret"], false, "{request:#}");
        assert_eq!(request["headers"]["webhook-id"], format!("msg_{id}"));
        assert!(request["headers"]["webhook-signature"]
            .as_str()
            .unwrap()
            .starts_with("v1,"));
        assert_eq!(
            request["body"], requests[0]["body"],
            "the same body on every attempt"
        );
    }
    // The full task record.
    let body = &requests.last().unwrap()["body"];
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["status"], 10);
    assert_eq!(body["app"], "tests/multi-fn");
    assert_eq!(body["function"], "run");
    assert_eq!(body["input"], json!({"text": "hook"}));
    assert_eq!(body["output"]["echo"], "hook");
    assert_eq!(body["error"], Value::Null);
    assert_eq!(body["metadata"], json!({"m": 3}));
    assert_eq!(body["session_id"], task["session_id"]);
    assert_eq!(body["created_at"], task["created_at"]);
    assert_eq!(body["updated_at"], task["updated_at"]);
    drop(server);
}

#[test]
fn without_a_flag_the_secret_is_generated_into_the_data_folder_and_kept() {
    let sb = ServeSandbox::new(&["multi-fn"]);
    let server = sb.start(&[]);
    let path = sb.data_dir().join("webhook.secret");
    let first = std::fs::read_to_string(&path).unwrap();
    assert!(first.starts_with("whsec_"), "{first}");
    drop(server);
    let _server = sb.start(&[]);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
}

#[test]
fn a_short_webhook_secret_is_refused_at_start() {
    let sb = ServeSandbox::new(&["multi-fn"]);
    let out = Command::new(assert_cmd::cargo::cargo_bin("infsh"))
        .args(["serve", "--port", "0", "--webhook-secret", "whsec_c2hvcnQ="])
        .arg("--apps")
        .arg(sb.apps_dir())
        .arg("--data-dir")
        .arg(sb.data_dir())
        .env_remove("INFSH_WEBHOOK_SECRET")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "--webhook-secret: the webhook secret is 5 bytes; at least 24 are needed (whsec_ followed by the base64 of at least 24 random bytes)"
        ),
        "{}",
        stderr(&out)
    );
}
