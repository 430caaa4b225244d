// How often a streaming call's yields go to the host as `snapshot` frames,
// the same rule as python/infsh_worker/snapshot_pacer.py (docs/protocol.md,
// "Streaming"): each yield is the whole output so far, so the first goes at
// once and after it at most one per SNAPSHOT_INTERVAL_MS, the newest. A
// yield within the interval is held (a later one replaces it) and a timer
// sends it when the interval is up, even if the generator then pauses;
// `done` carries the last yield, so what is held at the end is dropped.

export const SNAPSHOT_INTERVAL_MS = 10;

export class SnapshotPacer {
  // `send(snapshot)` may throw; from the timer, the error is kept and
  // thrown by the next `offer` or by `finish`, in the call's own code.
  constructor(send, intervalMs = SNAPSHOT_INTERVAL_MS, now = () => performance.now()) {
    this.sendFn = send;
    this.intervalMs = intervalMs;
    this.now = now;
    this.held = undefined;
    this.nextAt = 0; // when the next snapshot may go; 0: at once
    this.timer = null;
    this.error = null;
  }

  offer(snapshot) {
    this.throwKept();
    const now = this.now();
    if (now >= this.nextAt) {
      this.close(); // a held one is older than this: dropped
      this.emit(snapshot, now);
      return;
    }
    this.held = snapshot;
    if (this.timer === null) {
      this.timer = setTimeout(() => this.onTimer(), Math.max(0, this.nextAt - now));
    }
  }

  finish() {
    this.close();
    this.throwKept();
  }

  close() {
    this.held = undefined;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  onTimer() {
    this.timer = null;
    const held = this.held;
    this.held = undefined;
    if (held === undefined) return;
    try {
      this.emit(held, this.now());
    } catch (e) {
      this.error = e;
    }
  }

  emit(snapshot, now) {
    this.nextAt = now + this.intervalMs;
    this.sendFn(snapshot);
  }

  throwKept() {
    if (this.error !== null) {
      const e = this.error;
      this.error = null;
      throw e;
    }
  }
}
