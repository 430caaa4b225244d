//! [`CutProxy`]: a loopback TCP proxy in front of an API node that the test
//! can cut: every connection through it is closed and new ones are closed
//! as soon as they are accepted, while both ends stay up. What an engine
//! behind a broken network sees, until [`CutProxy::restore`].

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct State {
    cut: AtomicBool,
    stopped: AtomicBool,
    /// Both sides of every open connection, to close them on a cut.
    open: Mutex<Vec<TcpStream>>,
}

impl State {
    fn close_all(&self) {
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

pub struct CutProxy {
    /// `http://127.0.0.1:PORT`, to give the engine as its `--server`.
    pub url: String,
    addr: SocketAddr,
    state: Arc<State>,
}

impl CutProxy {
    /// Listens on 127.0.0.1:0 and forwards every connection to `upstream`
    /// (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> CutProxy {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let shared = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if shared.stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                if shared.cut.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                {
                    let mut open = shared.open.lock().unwrap();
                    open.push(client.try_clone().unwrap());
                    open.push(server.try_clone().unwrap());
                }
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        CutProxy {
            url: format!("http://{addr}"),
            addr,
            state,
        }
    }

    /// Closes every connection through the proxy, and each new one.
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        self.state.close_all();
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::SeqCst);
        self.state.close_all();
        // Wakes the accepting thread so it sees `stopped`.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Copies `from` to `to` on a thread until either side closes.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
