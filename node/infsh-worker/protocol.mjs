// Frames on the protocol channel (docs/protocol.md, "Frames"): the Node side
// of the contract the Rust host keeps in crates/infsh-protocol and the Python
// worker in python/infsh_worker/protocol.py. A 4-byte big-endian length, then
// that many bytes of UTF-8 JSON; messages over SPILL_THRESHOLD_BYTES travel as
// a file in the spill folder announced by {"type":"spilled","path","bytes"}.

import net from "node:net";
import fs from "node:fs";
import path from "node:path";
import os from "node:os";

export const MAX_FRAME_BYTES = 64 * 1024 * 1024;
export const SPILL_THRESHOLD_BYTES = 1024 * 1024;

/** The peer broke the framing contract: exit 2, as the Python worker does. */
export function exitProtocolError(reason) {
  try {
    fs.writeSync(2, `infsh worker: protocol error, exiting: ${reason}\n`);
  } catch {}
  process.exit(2);
}

/** A message over the host's limit: not sent, the call fails instead. */
export class MessageTooLarge extends Error {
  constructor(size) {
    super(
      `a message of ${size} bytes is over the limit of ${MAX_FRAME_BYTES} bytes (MAX_MESSAGE_BYTES)`
    );
    this.size = size;
  }
}

/** JSON text of `msg`; NaN and infinities become null (JSON has no spelling for them). */
export function encode(msg) {
  return JSON.stringify(msg, (_k, v) =>
    typeof v === "number" && !Number.isFinite(v) ? null : v
  );
}

let spillCounter = 0;

export class Channel {
  /**
   * @param {number} fd the protocol fd (3)
   * @param {string|undefined} spillDir INFSH_SPILL_DIR
   * @param {(msg: object) => void} onMessage
   * @param {() => void} onGone the host closed the channel
   */
  constructor(fd, spillDir, onMessage, onGone) {
    this.spillDir = spillDir || os.tmpdir();
    this.onMessage = onMessage;
    this.buffer = Buffer.alloc(0);
    this.socket = new net.Socket({ fd, readable: true, writable: true });
    this.socket.on("data", (chunk) => this.feed(chunk));
    this.socket.on("end", onGone);
    this.socket.on("close", onGone);
    this.socket.on("error", onGone);
  }

  feed(chunk) {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    while (this.buffer.length >= 4) {
      const n = this.buffer.readUInt32BE(0);
      if (n > MAX_FRAME_BYTES) {
        exitProtocolError(`frame of ${n} bytes is over the limit of ${MAX_FRAME_BYTES}`);
      }
      if (this.buffer.length < 4 + n) break;
      const body = this.buffer.subarray(4, 4 + n);
      this.buffer = this.buffer.subarray(4 + n);
      this.onMessage(this.decode(body));
    }
  }

  decode(body) {
    let msg;
    try {
      msg = JSON.parse(body.toString("utf8"));
    } catch (e) {
      exitProtocolError(`frame is not JSON: ${e.message}`);
    }
    if (msg === null || typeof msg !== "object" || typeof msg.type !== "string") {
      exitProtocolError("frame is not an object with a string 'type'");
    }
    if (msg.type === "spilled") msg = this.loadSpilled(msg);
    return msg;
  }

  loadSpilled(stub) {
    if (typeof stub.path !== "string" || !Number.isInteger(stub.bytes)) {
      exitProtocolError("spilled frame needs a string 'path' and an integer 'bytes'");
    }
    let real;
    try {
      real = fs.realpathSync(stub.path);
    } catch (e) {
      exitProtocolError(`cannot read spilled frame ${stub.path}: ${e.message}`);
    }
    // Only a file directly inside our own spill folder.
    if (path.dirname(real) !== fs.realpathSync(this.spillDir)) {
      exitProtocolError(
        `spilled file ${stub.path} is not directly inside the spill folder ${this.spillDir}`
      );
    }
    const data = fs.readFileSync(real);
    if (data.length !== stub.bytes) {
      exitProtocolError(`spilled file ${stub.path} has ${data.length} bytes, the frame said ${stub.bytes}`);
    }
    try {
      fs.unlinkSync(real);
    } catch {}
    const msg = JSON.parse(data.toString("utf8"));
    if (msg.type === "spilled") exitProtocolError("a spilled file may not itself be 'spilled'");
    return msg;
  }

  /** Sends one message (spilled to a file when large). Throws MessageTooLarge. */
  write(msg) {
    let data = Buffer.from(encode(msg), "utf8");
    if (data.length > MAX_FRAME_BYTES) throw new MessageTooLarge(data.length);
    if (data.length > SPILL_THRESHOLD_BYTES) {
      const file = path.join(
        this.spillDir,
        `worker-${process.pid}-${spillCounter++}-${Date.now()}.json`
      );
      fs.writeFileSync(file, data);
      data = Buffer.from(encode({ type: "spilled", path: file, bytes: data.length }), "utf8");
    }
    const header = Buffer.alloc(4);
    header.writeUInt32BE(data.length, 0);
    this.socket.write(Buffer.concat([header, data]));
  }
}
