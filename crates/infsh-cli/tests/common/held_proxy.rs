//! A loopback proxy in front of a real `infsh serve` that holds the answer
//! to `POST /v1/run` until the test lets it go: what a busy server or a slow
//! network looks like to the CLI between submitting a run and learning the
//! task's id, while the task already runs on the server.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use infsh_testkit::wait_for;

pub struct HeldProxy {
    pub url: String,
    /// An answer to a run is being held.
    holding: Arc<AtomicBool>,
    released: Arc<(Mutex<bool>, Condvar)>,
}

impl HeldProxy {
    /// Listens on 127.0.0.1:0 and forwards every connection to `upstream`
    /// (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> HeldProxy {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let holding = Arc::new(AtomicBool::new(false));
        let released = Arc::new((Mutex::new(false), Condvar::new()));
        let (h, r) = (holding.clone(), released.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    return;
                };
                relay(client, server, h.clone(), r.clone());
            }
        });
        HeldProxy {
            url,
            holding,
            released,
        }
    }

    /// Waits until the answer to a run is being held.
    pub fn wait_holding(&self) {
        assert!(
            wait_for(Duration::from_secs(60), || self
                .holding
                .load(Ordering::SeqCst)),
            "no run was submitted through the proxy"
        );
    }

    /// Lets every held and later answer through.
    pub fn release(&self) {
        let (lock, wake) = &*self.released;
        *lock.lock().unwrap() = true;
        wake.notify_all();
    }
}

impl Drop for HeldProxy {
    fn drop(&mut self) {
        self.release();
    }
}

/// Copies both ways; an answer that follows a `POST /v1/run` waits for the release.
fn relay(
    client: TcpStream,
    server: TcpStream,
    holding: Arc<AtomicBool>,
    released: Arc<(Mutex<bool>, Condvar)>,
) {
    let run_sent = Arc::new(AtomicBool::new(false));
    let (mut from_client, mut to_server) =
        (client.try_clone().unwrap(), server.try_clone().unwrap());
    let sent = run_sent.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        while let Ok(n) = from_client.read(&mut buf) {
            if n == 0 {
                break;
            }
            if buf[..n].starts_with(b"POST /v1/run ") {
                sent.store(true, Ordering::SeqCst);
            }
            if to_server.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to_server.shutdown(Shutdown::Write);
    });
    let (mut from_server, mut to_client) = (server, client);
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        while let Ok(n) = from_server.read(&mut buf) {
            if n == 0 {
                break;
            }
            if run_sent.swap(false, Ordering::SeqCst) {
                holding.store(true, Ordering::SeqCst);
                let (lock, wake) = &*released;
                let mut go = lock.lock().unwrap();
                while !*go {
                    go = wake.wait(go).unwrap();
                }
            }
            if to_client.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to_client.shutdown(Shutdown::Write);
    });
}
