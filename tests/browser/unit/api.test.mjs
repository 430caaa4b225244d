// What the page says for each refusal (api.js's `explain`): 401, 412, 429
// and the three 503s, in the server's problem shapes (docs/http-api.md).
import assert from "node:assert/strict";
import { test } from "node:test";

import { ApiError, explain } from "../../../crates/infsh-server/src/web/api.js";

const err = (status, problem) => new ApiError(status, problem);

test("each refusal is explained as what it means", () => {
  assert.match(explain(err(401, { detail: "missing API key" })), /needs an API key/);
  assert.equal(
    explain(err(412, { detail: "missing required secrets: HF_TOKEN", errors: [{ type: "secret", key: "HF_TOKEN" }, { type: "secret", key: "OTHER" }] })),
    "The app needs secrets the server does not have: HF_TOKEN, OTHER. Start infsh serve with them set (e.g. in its environment), then run again.",
  );
  assert.equal(explain(err(429, { capacity: 16, retry_after: 2 })), "The app's queue is full (16 tasks waiting). Try again in 2 s.");
  assert.equal(explain(err(429, { capacity: 16 })), "The app's queue is full (16 tasks waiting). Try again shortly.");
  assert.equal(
    explain(err(503, { type: "https://infsh.dev/errors/app_unavailable", detail: "d", message: "ImportError: no module x" })),
    "The app cannot load: ImportError: no module x",
  );
  assert.equal(explain(err(503, { type: "https://infsh.dev/errors/shutting_down", detail: "d" })), "The server is shutting down and takes no new tasks.");
  assert.equal(
    explain(err(503, { type: "https://infsh.dev/errors/no_matching_worker", detail: "acme/big needs 2 nvidia GPUs" })),
    "No worker slot on this machine can host the app: acme/big needs 2 nvidia GPUs",
  );
  assert.equal(explain(err(404, { detail: "unknown task" })), "unknown task");
  assert.equal(explain(err(0, { detail: "cannot reach the server: x" })), "cannot reach the server: x");
});
