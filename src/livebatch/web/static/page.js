// The progress page's wiring: the batch API for the first state, then the stream from its lastEventId,
// every message through reduce(), drawn by render() (and guardrails.js) at most ten times a second. After an event that
// changed the batch itself, the batch API again (the server says what the batch is now). EventSource
// reconnects by itself (sending Last-Event-ID) while the page shows "disconnected"; the page closes it on
// `batch.complete`, and opens a new one when "Retry failed" sets a finished batch running again.
//
// A server that hangs (a stopped process, a dead proxy) closes nothing, so EventSource would wait for ever
// and the page would say "Live": a stream that has sent nothing, not even a heartbeat, for two heartbeat
// intervals is taken as lost, closed, and opened again from the last event id. A finished batch has no
// stream; the page reads it again when the tab comes back into view and every two heartbeat intervals,
// so that a retry started elsewhere (another tab, the API) is followed here too.

import { holdEta, smoothEta } from "./eta.js";
import { createConfirm } from "./confirm.js";
import { formatWhen, remainingMs } from "./format.js";
import { createGuardrails } from "./guardrails.js";
import { createFailuresPanel } from "./failures.js";
import { createNotifier } from "./notify.js";
import { EVENT_NAMES, initialState, mustRead, reduce } from "./reduce.js";
import { createView } from "./render.js";

const root = document.querySelector(".progress-page");
const batchId = root.dataset.batchId;
const api = `/api/v1/generation/batch/${encodeURIComponent(batchId)}`;
const RETRY_DELAYS_MS = [1000, 2000, 4000, 8000, 15000];
const HEARTBEAT_MS = Number(root.dataset.heartbeatMs) || 15_000;
const SILENCE_MS = 2 * HEARTBEAT_MS; // no heartbeat for two intervals: the stream is lost
const RECHECK_MS = 2 * HEARTBEAT_MS; // a finished batch is read again this often (while the tab is in view)

let state = initialState();
let source = null;
let frame = 0;
let retries = 0;
let reconnectTimer = 0;
let reading = false; // a read of the batch after an event is in flight
let rendered = false;
let lastDraw = 0;
let lastHeard = 0; // when the stream last sent anything (performance.now())
let eta = null; // the time remaining shown: eta.js's { ms, at }
const FRAME_MS = 100;

const view = createView(root, {
  onAction: act,
  onToggle: (index) => dispatch({ type: "toggle", index }),
  onExpand: (index) => dispatch({ type: "expand", index }),
  onAutoScroll: (value) => dispatch({ type: "autoscroll", value }),
  onFilter: (value) => dispatch({ type: "filter", value }),
});
const guardrails = createGuardrails(root, { onBudget: setBudget });
const confirmCancel = createConfirm(document.querySelector("#confirm-cancel"));
// Failures by cause (failures.js) and opt-in notifications (notify.js): modules of their own, fed from here.
const failures = createFailuresPanel(document.querySelector("#failures"), {
  read: async () => (await readBatch("?feed=0")).detail || null,
  retry: (body) => act("retry-failed", body),
});
const notifier = createNotifier(document.querySelector("#notify"));
// The first time shown makes Intl's formatter (format.js), which costs more than the whole first draw:
// made now, in a task of its own while the batch is fetched.
setTimeout(() => formatWhen(new Date().toISOString()));

function dispatch(action) {
  const next = reduce(state, action);
  if (next === state) return;
  state = next;
  schedule(action.type !== "event");
}

// Events may arrive by the hundred per second; the page redraws at most every FRAME_MS (nobody sees
// the difference, and a 1000-item feed stays smooth), but at once for what the user just did.
function schedule(urgent) {
  if (frame && !urgent) return;
  clearTimeout(frame);
  const wait = urgent ? 0 : Math.max(0, lastDraw + FRAME_MS - performance.now());
  frame = setTimeout(() => requestAnimationFrame(draw), wait);
}

function draw() {
  frame = 0;
  lastDraw = performance.now();
  const now = Date.now();
  const more = view.render(state, now, moveEta(now)); // a long feed comes a slice per frame
  guardrails.render(state);
  if (more) schedule(true);
  if (!rendered && state.batch !== null) {
    rendered = true;
    performance.mark("batch-rendered"); // first paint with the batch's data: measured by the browser tests
  }
}

// Elapsed time and the ETA move between events too; and a silent stream is found out.
setInterval(() => {
  const now = Date.now();
  view.tick(state, now, moveEta(now));
  if (source !== null && performance.now() - lastHeard > SILENCE_MS) reconnectSilent();
}, 1000);

// The time remaining to show now (eta.js): smoothed while the batch runs and the stream is live, held while
// it is paused or the connection is lost, none once it is over.
function moveEta(now) {
  const batch = state.batch;
  if (batch === null || batch.finished || state.snapshot === null) eta = null;
  else if (state.connection === "lost" || !["queued", "running"].includes(batch.status)) eta = holdEta(eta, now);
  else eta = smoothEta(eta, remainingMs(state.snapshot, state.snapshotAt, now), now);
  return eta;
}

// The stream went silent (a hung server or proxy): say so, close it, and open it again from the last id.
function reconnectSilent() {
  source.close();
  source = null;
  dispatch({ type: "connection", value: "lost" });
  clearTimeout(reconnectTimer);
  reconnectTimer = setTimeout(connect, nextDelay());
}

// A finished batch has no stream: read it again now and then, and follow it when it runs again.
async function recheck() {
  if (state.batch === null || !state.batch.finished || source !== null || reading) return;
  if (document.visibilityState === "hidden") return;
  try {
    const result = await readBatch();
    if (result.detail) {
      dispatch({ type: "refreshed", detail: result.detail, at: Date.now() });
      follow();
    }
  } catch {
    // unreachable for now: the next check asks again
  }
}
setInterval(recheck, RECHECK_MS);
document.addEventListener("visibilitychange", recheck);
window.addEventListener("focus", recheck);

async function readBatch(query = "") {
  const response = await fetch(api + query, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (!response.ok) return { status: response.status, error: await errorMessage(response) };
  const detail = await response.json();
  failures.offer(detail);
  return { detail };
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    return (body && body.error && body.error.message) || `The server answered ${response.status}.`;
  } catch {
    return `The server answered ${response.status}.`;
  }
}

function stopForGood(status, message) {
  // Signed out, or no longer allowed: retrying would not help.
  if (status === 401) {
    const next = encodeURIComponent(location.pathname);
    location.assign(`/signin?next=${next}`);
    return;
  }
  view.showProblem(message);
}

async function start() {
  for (;;) {
    try {
      const result = await readBatch();
      if (result.detail) {
        dispatch({ type: "loaded", detail: result.detail, at: Date.now() });
        break;
      }
      if ([401, 403, 404].includes(result.status)) return stopForGood(result.status, result.error);
    } catch {
      // the server is unreachable: try again below
    }
    if (state.batch !== null) dispatch({ type: "connection", value: "lost" });
    await sleep(nextDelay());
  }
  retries = 0;
  if (state.batch.finished) dispatch({ type: "connection", value: "closed" });
  else connect();
}

function connect() {
  clearTimeout(reconnectTimer);
  if (source) source.close();
  const es = new EventSource(`${api}/progress?lastEventId=${state.cursor}`);
  source = es;
  lastHeard = performance.now(); // an answer that never comes counts as silence too
  es.onopen = () => {
    lastHeard = performance.now();
    retries = 0;
    dispatch({ type: "connection", value: "open" });
  };
  for (const name of EVENT_NAMES) es.addEventListener(name, (message) => receive(es, name, message));
  es.onerror = () => {
    if (source !== es) return;
    dispatch({ type: "connection", value: "lost" });
    // CONNECTING: the browser retries by itself. CLOSED: it gave up (an HTTP error): find out why.
    if (es.readyState === EventSource.CLOSED) {
      source = null;
      reconnectTimer = setTimeout(diagnose, nextDelay());
    }
  };
}

function receive(es, name, message) {
  if (source === es) lastHeard = performance.now();
  let data;
  try {
    data = JSON.parse(message.data);
  } catch {
    return;
  }
  if (name === "batch.reset") return reset(es);
  // A heartbeat has no id of its own (lastEventId would repeat the previous event's): it is not progress.
  const id = name === "heartbeat" ? "" : message.lastEventId;
  dispatch({ type: "event", name, id, data, at: Date.now() });
  failures.onEvent(name, data);
  notifier.onEvent(name, data, id, state);
  // The server ends the stream after batch.complete: left open, EventSource would only reconnect.
  if (name === "batch.complete") {
    es.close();
    if (source === es) {
      source = null;
      dispatch({ type: "connection", value: "closed" });
    }
    follow();
  }
  if (mustRead(state)) readAgain();
}

// The batch as the server has it now, after an event that changed it in ways only the server knows: its
// status and controls, and the rows a pause, a cancel, a failure or a retry settled. One read at a
// time, and again while the state is still stale (events kept coming meanwhile).
async function readAgain() {
  if (reading) return;
  reading = true;
  let failures = 0;
  while (mustRead(state)) {
    const known = state.batchSeq;
    let result = null;
    try {
      result = await readBatch();
    } catch {
      // the server is unreachable: try again below
    }
    if (result && result.detail) {
      dispatch({ type: "refreshed", detail: result.detail, at: Date.now() });
      follow();
    } else if (result && [401, 403, 404].includes(result.status)) {
      reading = false;
      return stopForGood(result.status, result.error);
    }
    // An error, or an answer no newer than the last one: wait before asking again.
    if (mustRead(state) && state.batchSeq === known) {
      await sleep(RETRY_DELAYS_MS[Math.min(failures, RETRY_DELAYS_MS.length - 1)]);
      failures += 1;
    }
  }
  reading = false;
}

// The events after the page's cursor were pruned from the log: what the page holds cannot be brought up to
// date. It starts over as on a load: the batch from the API, then a stream from that answer's lastEventId.
function reset(es) {
  es.close();
  if (source === es) source = null;
  dispatch({ type: "reset" });
  start();
}

// A batch that runs again (Retry failed, here or in another tab) is followed on a new stream, once the
// page knows it runs: not between batch.complete and the read after it.
function follow() {
  if (source === null && !mustRead(state) && !state.batch.finished) connect();
}

async function diagnose() {
  try {
    const result = await readBatch();
    if (!result.detail && [401, 403, 404].includes(result.status)) return stopForGood(result.status, result.error);
    if (result.detail) dispatch({ type: "refreshed", detail: result.detail, at: Date.now() });
  } catch {
    // still unreachable
  }
  if (state.batch.finished) {
    dispatch({ type: "connection", value: "closed" });
    return;
  }
  connect();
}

// `body`: the filter of a retry of some failed items ("Retry these", failures.js).
async function act(action, body) {
  if (view.isBusy(action)) return;
  if (action === "cancel" && !(await confirmCancel())) return;
  view.showActionError(null);
  view.setBusy(action, true);
  try {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(`${api}/${action}`, {
      method: "POST",
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!response.ok) {
      view.showActionError(await errorMessage(response));
      return;
    }
    // The stream ended with batch.complete; the retried batch's events come on a new one.
    if (action === "retry-failed" && source === null) connect();
  } catch {
    view.showActionError("Could not reach the server; try again in a moment.");
  } finally {
    view.setBusy(action, false);
  }
}

// Raising the budget of a batch that paused because it spent it: the batch stays paused (Resume is the next
// step), so the page reads it again at once to show the new budget and to drop the form.
async function setBudget(body) {
  guardrails.showError(null);
  guardrails.setBusy(true);
  try {
    const response = await fetch(`${api}/budget`, {
      method: "PUT",
      headers: { Accept: "application/json", "Content-Type": "application/json" },
      credentials: "same-origin",
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      guardrails.showError(await errorMessage(response));
      return;
    }
    const result = await readBatch();
    if (result.detail) dispatch({ type: "refreshed", detail: result.detail, at: Date.now() });
  } catch {
    guardrails.showError("Could not reach the server; try again in a moment.");
  } finally {
    guardrails.setBusy(false);
  }
}

function nextDelay() {
  const delay = RETRY_DELAYS_MS[Math.min(retries, RETRY_DELAYS_MS.length - 1)];
  retries += 1;
  return delay;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

start();
