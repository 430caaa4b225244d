//! The worker's stdout and stderr: non-blocking pipes split into lines.
//!
//! The actor owns both pipes and reads them itself (no task in between), so
//! that when a `done`/`failed`/`setup_done`/`setup_failed` frame arrives it
//! can drain whatever the pipes hold *right now* and hand those lines to the
//! finishing operation before completing it (`docs/protocol.md`, "Logs": the
//! Python side flushes before writing such a frame). A task forwarding lines
//! over a channel would make "everything written before the frame" unknowable.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;

use tokio::net::unix::pipe;

use crate::{LogLine, LogStream};

/// Lines longer than this are cut into pieces, so an app that writes without
/// newlines (or a flood) cannot grow a buffer without bound.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// How many stderr lines crash reports carry.
pub const STDERR_TAIL_LINES: usize = 50;

/// Bytes in, lines out. `\n`, `\r\n` and a lone `\r` (progress bars redraw
/// with it) end a line; the bytes are decoded as lossy UTF-8.
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
    /// The last byte seen was `\r`: a line ends, but whether the next byte
    /// is the `\n` of a `\r\n` is not known yet.
    pending_cr: bool,
}

impl LineSplitter {
    pub fn push(&mut self, data: &[u8], out: &mut Vec<String>) {
        for &b in data {
            if self.pending_cr {
                self.pending_cr = false;
                if b == b'\n' {
                    self.emit(out);
                    continue;
                }
                // A lone `\r`: a redraw; drop the empty "line" before one.
                if !self.buf.is_empty() {
                    self.emit(out);
                }
            }
            match b {
                b'\n' => self.emit(out),
                b'\r' => self.pending_cr = true,
                _ => {
                    self.buf.push(b);
                    if self.buf.len() >= MAX_LINE_BYTES {
                        self.emit_long(out);
                    }
                }
            }
        }
    }

    /// The stream is over (or the operation is, see module docs): whatever
    /// is buffered is a line.
    pub fn finish(&mut self, out: &mut Vec<String>) {
        if self.pending_cr || !self.buf.is_empty() {
            self.pending_cr = false;
            self.emit(out);
        }
    }

    fn emit(&mut self, out: &mut Vec<String>) {
        out.push(String::from_utf8_lossy(&self.buf).into_owned());
        self.buf.clear();
    }

    /// Cuts a too-long line, without splitting a UTF-8 sequence when the
    /// buffer ends in the middle of one.
    fn emit_long(&mut self, out: &mut Vec<String>) {
        let cut = match std::str::from_utf8(&self.buf) {
            Err(e) if e.error_len().is_none() && e.valid_up_to() > 0 => e.valid_up_to(),
            _ => self.buf.len(),
        };
        out.push(String::from_utf8_lossy(&self.buf[..cut]).into_owned());
        self.buf.drain(..cut);
    }
}

/// How [`LogPipe::read_once`] reads.
#[derive(Clone, Copy)]
enum ReadMode {
    /// `try_read`: after `readable()`. It clears tokio's cached readiness
    /// on would-block, so the next `readable()` really waits.
    Tokio,
    /// A plain `read(2)`. `try_read` answers would-block *without reading*
    /// while tokio's cached readiness is empty, and that cache is only
    /// refreshed when the reactor next polls, which may be after the frame
    /// we are draining for. The drain must see what is in the pipe now.
    Syscall,
}

/// One non-blocking `read(2)` (the fd is in non-blocking mode).
fn read_now(rx: &pipe::Receiver, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes of writes; the fd is
    // open for as long as `rx` is borrowed.
    let n = unsafe { libc::read(rx.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// One of the worker's output pipes.
pub struct LogPipe {
    stream: LogStream,
    /// `None` once the pipe reached EOF (or failed).
    rx: Option<pipe::Receiver>,
    splitter: LineSplitter,
    buf: Box<[u8]>,
}

/// What one non-blocking read did.
enum Read {
    Data,
    WouldBlock,
    Closed,
}

impl LogPipe {
    pub fn new(stream: LogStream, rx: pipe::Receiver) -> Self {
        LogPipe {
            stream,
            rx: Some(rx),
            splitter: LineSplitter::default(),
            buf: vec![0u8; MAX_LINE_BYTES].into_boxed_slice(),
        }
    }

    /// Resolves when a read would not block (data or EOF). Never resolves
    /// for a closed pipe. Cancel safe: it only waits for readiness.
    pub async fn readable(&self) {
        match &self.rx {
            Some(rx) => {
                // An error here shows up again in `try_read`, which closes.
                let _ = rx.readable().await;
            }
            None => std::future::pending().await,
        }
    }

    /// The pipe reached EOF (or failed).
    pub fn is_closed(&self) -> bool {
        self.rx.is_none()
    }

    /// One read (at most [`MAX_LINE_BYTES`]); complete lines go to `out`.
    /// Used after [`LogPipe::readable`]: one read per wake-up keeps a
    /// flooding pipe from starving the actor's other work.
    pub fn read_some(&mut self, out: &mut Vec<LogLine>) {
        self.read_once(out, ReadMode::Tokio);
    }

    /// Reads until the pipe is empty (or closed), then also hands out a
    /// partial last line: the operation it belongs to is ending.
    pub fn drain(&mut self, out: &mut Vec<LogLine>) {
        while let Read::Data = self.read_once(out, ReadMode::Syscall) {}
        let mut lines = Vec::new();
        self.splitter.finish(&mut lines);
        self.collect(lines, out);
    }

    fn read_once(&mut self, out: &mut Vec<LogLine>, mode: ReadMode) -> Read {
        let Some(rx) = &self.rx else {
            return Read::Closed;
        };
        let mut lines = Vec::new();
        let read = match mode {
            ReadMode::Tokio => rx.try_read(&mut self.buf),
            ReadMode::Syscall => read_now(rx, &mut self.buf),
        };
        let result = match read {
            Ok(0) => {
                self.rx = None;
                self.splitter.finish(&mut lines);
                Read::Closed
            }
            Ok(n) => {
                self.splitter.push(&self.buf[..n], &mut lines);
                Read::Data
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Read::WouldBlock,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Read::Data,
            Err(e) => {
                tracing::warn!(stream = ?self.stream, error = %e, "reading worker output failed");
                self.rx = None;
                self.splitter.finish(&mut lines);
                Read::Closed
            }
        };
        self.collect(lines, out);
        result
    }

    fn collect(&self, lines: Vec<String>, out: &mut Vec<LogLine>) {
        out.extend(lines.into_iter().map(|line| LogLine {
            stream: self.stream,
            line,
        }));
    }
}

/// The last [`STDERR_TAIL_LINES`] stderr lines, for crash reports.
#[derive(Debug, Default)]
pub struct StderrTail(VecDeque<String>);

impl StderrTail {
    pub fn push(&mut self, line: &str) {
        if self.0.len() == STDERR_TAIL_LINES {
            self.0.pop_front();
        }
        self.0.push_back(line.to_owned());
    }

    pub fn lines(&self) -> Vec<String> {
        self.0.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, &mut out);
        }
        s.finish(&mut out);
        out
    }

    #[test]
    fn newline_conventions() {
        assert_eq!(split(&[b"a\nb\r\nc"]), ["a", "b", "c"]);
        assert_eq!(split(&[b"a\r", b"\nb\n"]), ["a", "b"]);
        assert_eq!(split(&[b"\n\n"]), ["", ""]);
        // Progress bar redraws: one line per state, no empty ones.
        assert_eq!(
            split(&[b"\r 10%\r 20%", b"\r100%\n"]),
            [" 10%", " 20%", "100%"]
        );
        assert_eq!(split(&[b"end\r"]), ["end"]);
    }

    #[test]
    fn lossy_utf8() {
        assert_eq!(split(&[b"caf\xc3", b"\xa9 \xff\n"]), ["café \u{fffd}"]);
    }

    #[test]
    fn long_lines_are_cut_on_char_boundaries() {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        // 3-byte characters: MAX_LINE_BYTES is not a multiple of 3.
        let text = "€".repeat(MAX_LINE_BYTES);
        s.push(text.as_bytes(), &mut out);
        s.finish(&mut out);
        assert!(out.iter().all(|l| l.len() <= MAX_LINE_BYTES));
        assert!(out.iter().all(|l| !l.contains('\u{fffd}')));
        assert_eq!(out.concat(), text);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let mut tail = StderrTail::default();
        for i in 0..(STDERR_TAIL_LINES + 10) {
            tail.push(&i.to_string());
        }
        let lines = tail.lines();
        assert_eq!(lines.len(), STDERR_TAIL_LINES);
        assert_eq!(lines[0], "10");
    }
}
