// The page's only way to the server: the HTTP API with the user's key.
// Failures come back as ApiError carrying the problem JSON (docs/http-api.md,
// "Errors"), which the page explains.

const KEY_STORAGE = "infsh.apiKey";

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

export function savedKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

export function saveKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // Storage off (private mode): the key lasts for this page only.
  }
}

export class Api {
  constructor(key = savedKey()) {
    this.key = key;
  }

  headers(extra = {}) {
    return this.key ? { Authorization: `Bearer ${this.key}`, ...extra } : extra;
  }

  async request(method, path, body) {
    const init = { method, headers: this.headers(body === undefined ? {} : { "Content-Type": "application/json" }) };
    if (body !== undefined) init.body = JSON.stringify(body);
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, { detail: `cannot reach the server: ${e.message}` });
    }
    const text = await res.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    if (!res.ok) {
      const problem = json || { detail: text || res.statusText };
      problem.retryAfter = res.headers.get("Retry-After");
      throw new ApiError(res.status, problem);
    }
    return json && "data" in json ? json.data : json;
  }

  get(path) {
    return this.request("GET", path);
  }

  post(path, body) {
    return this.request("POST", path, body);
  }

  /**
   * Registers `file` (POST /files), then PUTs its bytes to the signed
   * upload URL, as the official client does; resolves to the URI to pass as
   * the File input.
   */
  async upload(file) {
    const [entry] = await this.post("/files", {
      files: [{ uri: "", filename: file.name || null, content_type: file.type || null, path: null, size: file.size, public: null }],
    });
    // The upload URL names the server's public URL; the page PUTs to its
    // own origin (the same server) so it never needs another origin.
    const target = new URL(entry.upload_url);
    const res = await fetch(target.pathname + target.search, { method: "PUT", body: file, headers: { "Content-Type": file.type || "application/octet-stream" } });
    if (!res.ok) {
      let problem = null;
      try {
        problem = await res.json();
      } catch {
        problem = { detail: res.statusText };
      }
      throw new ApiError(res.status, problem);
    }
    return entry.uri;
  }

  /**
   * Follows a task's NDJSON stream, calling `onSnapshot` with every task
   * snapshot, until the task ends or `signal` aborts; if the stream drops
   * before the end, falls back to GET /tasks/{id} (as the client does).
   */
  async follow(id, onSnapshot, signal) {
    let last = null;
    try {
      const res = await fetch(`/tasks/${encodeURIComponent(id)}/stream`, { headers: this.headers({ Accept: "application/x-ndjson" }), signal });
      if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => null));
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let nl;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (!line) continue;
          const obj = JSON.parse(line);
          if (obj.type === "heartbeat") continue;
          last = obj;
          onSnapshot(obj);
        }
      }
    } catch (e) {
      if (signal?.aborted) return last;
      if (e instanceof ApiError) throw e;
    }
    if (!last || last.status < 10) {
      last = await this.get(`/tasks/${encodeURIComponent(id)}`);
      onSnapshot(last);
    }
    return last;
  }
}

/** What a failed request means, in words, for the page. */
export function explain(err) {
  const p = err.problem || {};
  switch (err.status) {
    case 0:
      return p.detail;
    case 401:
      return "This server needs an API key. Enter one above (it stays in this browser only).";
    case 412: {
      const keys = (p.errors || []).map((e) => e.key).filter(Boolean);
      return `The app needs secrets the server does not have${keys.length ? `: ${keys.join(", ")}` : ""}. Start infsh serve with them set (e.g. in its environment), then run again.`;
    }
    case 429:
      return `The app's queue is full (${p.capacity ?? "?"} tasks waiting). Try again${p.retry_after || p.retryAfter ? ` in ${p.retry_after || p.retryAfter} s` : " shortly"}.`;
    case 503:
      if (p.type?.endsWith("/app_unavailable")) return `The app cannot load: ${p.message || p.detail}`;
      if (p.type?.endsWith("/shutting_down")) return "The server is shutting down and takes no new tasks.";
      if (p.type?.endsWith("/no_matching_worker")) return `No worker slot on this machine can host the app: ${p.detail}`;
      return p.detail || "The service is unavailable.";
    default:
      return p.detail || err.message;
  }
}
