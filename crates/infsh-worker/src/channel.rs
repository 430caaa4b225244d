//! The protocol socket's two halves, each driven by a task of its own.
//!
//! Reading a frame is not cancel safe (a half-read frame would be lost), so
//! it cannot sit in the actor's `select!`; the reader task reads whole
//! messages (resolving spilled ones) and forwards them. Writing has its own
//! task so the actor never blocks on a worker that is slow to read, which
//! could otherwise deadlock with a worker blocked writing to us.

use infsh_protocol::{
    read_message, write_message, CallId, FrameError, HostMessage, SpillDir, WorkerMessage,
};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// On whose behalf a message is sent, so a failed send fails the right
/// operation.
#[derive(Debug, Clone)]
pub enum Op {
    Setup,
    Call(CallId),
    CallBatch(Vec<CallId>),
    Cancel,
    Shutdown,
}

/// A message for the writer task.
pub struct Outgoing {
    pub msg: HostMessage,
    pub op: Op,
}

/// What the reader and writer tasks tell the actor.
pub enum Inbound {
    Frame(WorkerMessage),
    /// The worker closed the channel (or died) between frames.
    Eof,
    /// A broken frame; the reader has stopped.
    ReadError(FrameError),
    /// A message could not be sent. An `Io` error means the channel is
    /// broken and the writer has stopped; others (spilling, encoding) only
    /// concern that one message.
    WriteFailed(Op, FrameError),
}

/// Splits the socket and starts the two tasks. Dropping the returned
/// sender stops the writer, which shuts down our sending side (the worker
/// sees EOF); the handles let the actor abort both tasks when it ends.
pub fn start(
    socket: UnixStream,
    spill: SpillDir,
) -> (
    mpsc::UnboundedSender<Outgoing>,
    mpsc::Receiver<Inbound>,
    [JoinHandle<()>; 2],
) {
    let (read_half, write_half) = socket.into_split();
    // Bounded: a flood of frames waits in the socket (back-pressure on the
    // worker) rather than in host memory.
    let (inbound_tx, inbound_rx) = mpsc::channel(64);
    let (outgoing_tx, outgoing_rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(reader(read_half, spill.clone(), inbound_tx.clone()));
    let writer = tokio::spawn(writer(write_half, outgoing_rx, spill, inbound_tx));
    (outgoing_tx, inbound_rx, [reader, writer])
}

async fn reader(mut half: OwnedReadHalf, spill: SpillDir, inbound: mpsc::Sender<Inbound>) {
    loop {
        let item = match read_message(&mut half, Some(&spill)).await {
            Ok(Some(msg)) => Inbound::Frame(msg),
            Ok(None) => Inbound::Eof,
            Err(e) => Inbound::ReadError(e),
        };
        let last = !matches!(item, Inbound::Frame(_));
        if inbound.send(item).await.is_err() || last {
            return;
        }
    }
}

async fn writer(
    mut half: OwnedWriteHalf,
    mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
    spill: SpillDir,
    inbound: mpsc::Sender<Inbound>,
) {
    while let Some(Outgoing { msg, op }) = outgoing.recv().await {
        if let Err(e) = write_message(&mut half, &msg, Some(&spill)).await {
            let fatal = matches!(e, FrameError::Io(_));
            if inbound.send(Inbound::WriteFailed(op, e)).await.is_err() || fatal {
                return;
            }
        }
    }
}
