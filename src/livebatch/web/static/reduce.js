// The progress page's state and its one transition, `reduce(state, action)`: the brief's useBatchProgress.
// Pure: no DOM, no clock, no I/O. page.js puts the times into the actions; render.js draws the result.
//
// Delivery may repeat or reorder events: a reconnect replays after Last-Event-ID, a reload starts from
// the batch API's `lastEventId`, and a test may deliver anything. So every logged event (its SSE id is
// the batch's sequence number) is applied at most once; an item's row, the batch status and the
// snapshot only move forward (an event older than what shaped them is ignored); heartbeats carry no
// id and change nothing. A state is never modified: every change returns a new object.

export const TERMINAL = new Set(["completed", "completed_with_errors", "failed", "cancelled"]);

// Events written to the batch's event log, each with its sequence number as the SSE id.
export const LOGGED_EVENTS = Object.freeze([
  "item.started",
  "item.completed",
  "item.failed",
  "batch.complete",
  "batch.paused",
  "batch.resumed",
  "batch.retried",
]);
export const EVENT_NAMES = Object.freeze([...LOGGED_EVENTS, "batch.progress", "heartbeat"]);

export function initialState() {
  return {
    batch: null, // the batch resource: status, config, course, times, error message
    snapshot: null, // the latest `batch.progress` payload (counts, percentage, ETA, throughput)
    snapshotSeq: -1, // the event id that snapshot is current up to
    snapshotAt: 0, // when it arrived (page clock, ms): the ETA counts down from there
    items: new Map(), // itemIndex -> feed entry (the brief's BatchItemFeedEntry) + the seq that shaped it
    cursor: 0, // every logged event up to this id has been applied
    ahead: [], // ids above the cursor applied already (delivered out of order), ascending
    statusSeq: 0, // the id of the event that set the batch status
    retriedSeq: 0, // the latest `batch.retried`: items that had failed for good before it are pending
    cancelledSeq: 0, // the `batch.complete` that cancelled the batch: items open before it are cancelled
    stoppedSeq: 0, // the `batch.complete` that failed the batch: items waiting for a retry will not get it
    isComplete: false,
    complete: null, // the `batch.complete` payload, once seen
    connection: "connecting", // connecting | open | lost | closed
    autoScroll: true,
    expanded: new Set(), // item indexes whose error detail is open
    announcement: null, // { seq, text }: the latest failure, for the polite live region
  };
}

export function reduce(state, action) {
  switch (action.type) {
    case "loaded":
      return state.batch === null ? loaded(state, action.detail, action.at) : refreshed(state, action.detail, action.at);
    case "refreshed":
      return refreshed(state, action.detail, action.at);
    case "event":
      return onEvent(state, action.name, action.id, action.data, action.at);
    case "connection":
      return state.connection === action.value ? state : { ...state, connection: action.value };
    case "autoscroll":
      return state.autoScroll === action.value ? state : { ...state, autoScroll: action.value };
    case "toggle": {
      const expanded = new Set(state.expanded);
      if (expanded.has(action.index)) expanded.delete(action.index);
      else expanded.add(action.index);
      return { ...state, expanded };
    }
    default:
      return state;
  }
}

/** The page's phase: `connecting` until the batch is known, then the batch's status, where an active
 * batch is `queued` until its first item starts and `running` after (whatever order events came in). */
export function phase(state) {
  if (state.batch === null) return "connecting";
  const { status, startedAt } = state.batch;
  if (status === "queued" || status === "running") return startedAt || state.items.size > 0 ? "running" : "queued";
  return status;
}

/** Whether the feed shows a row for this entry (an item pending again after a retry has none). */
export function isShown(entry) {
  return entry.status !== "pending";
}

/** The feed's rows in index order. */
export function feedEntries(state) {
  return [...state.items.values()].filter(isShown).sort((a, b) => a.itemIndex - b.itemIndex);
}

// --- the batch API ------------------------------------------------------------------------------

function batchOf(detail) {
  return {
    id: detail.id,
    status: detail.status,
    totalItems: detail.total_items,
    config: detail.config,
    course: detail.course,
    startedAt: detail.started_at,
    createdAt: detail.created_at,
    completedAt: detail.completed_at,
    errorMessage: detail.error_message,
  };
}

// The first state of the page: the batch, its snapshot and its feed, all current up to `lastEventId`.
function loaded(state, detail, at) {
  const seq = detail.lastEventId;
  const items = new Map();
  // A failed batch retries nothing until "Retry failed": its rows still waiting for a retry are stopped.
  const failed = detail.status === "failed";
  for (const row of detail.items) items.set(row.itemIndex, failed ? stop({ ...row, seq }) : { ...row, seq });
  return {
    ...state,
    batch: batchOf(detail),
    snapshot: detail.snapshot,
    snapshotSeq: seq,
    snapshotAt: at,
    items,
    cursor: seq,
    ahead: [],
    statusSeq: seq,
    isComplete: TERMINAL.has(detail.status),
    complete: null,
  };
}

// The batch read again (after `batch.complete`, for what its payload lacks: the error message and the
// completion time). The feed is the stream's business; the rest only moves forward.
function refreshed(state, detail, at) {
  const seq = detail.lastEventId;
  if (state.batch === null || seq < state.statusSeq) return state;
  const next = { ...state, batch: batchOf(detail), statusSeq: seq, isComplete: TERMINAL.has(detail.status) };
  if (seq >= state.snapshotSeq) Object.assign(next, { snapshot: detail.snapshot, snapshotSeq: seq, snapshotAt: at });
  return next;
}

// --- the stream ---------------------------------------------------------------------------------

function toSeq(id) {
  if (typeof id === "number") return Number.isSafeInteger(id) && id > 0 ? id : null;
  if (typeof id !== "string" || !/^\d{1,15}$/.test(id)) return null;
  const seq = Number(id);
  return seq > 0 ? seq : null;
}

function seen(state, seq) {
  return seq <= state.cursor || state.ahead.includes(seq);
}

// Marks `seq` applied: the cursor moves over every id now contiguous with it.
function advance(cursor, ahead, seq) {
  if (seq !== cursor + 1) {
    const later = [...ahead, seq].sort((a, b) => a - b);
    return { cursor, ahead: later };
  }
  let next = seq;
  let rest = ahead;
  while (rest.length && rest[0] === next + 1) {
    next = rest[0];
    rest = rest.slice(1);
  }
  return { cursor: next, ahead: rest };
}

function onEvent(state, name, id, data, at) {
  if (name === "heartbeat" || data === null || typeof data !== "object") return state;
  if (name === "batch.progress") {
    // A snapshot's id repeats the last event it includes: equal ids are fine, older ones are stale.
    const seq = id === "" || id === "0" || id === 0 || id === undefined ? 0 : toSeq(id);
    if (seq === null || seq < state.snapshotSeq) return state;
    return { ...state, snapshot: data, snapshotSeq: seq, snapshotAt: at };
  }
  const seq = toSeq(id);
  if (seq === null || seen(state, seq)) return state;
  const next = { ...state, ...advance(state.cursor, state.ahead, seq) };
  switch (name) {
    case "item.started":
      next.items = putItem(state, seq, {
        itemId: data.itemId,
        itemIndex: data.itemIndex,
        status: "started",
        timestamp: data.startedAt,
      });
      // A queued batch starts with its first item; no batch event says so (see `phase`).
      if (next.batch && !next.batch.startedAt) next.batch = { ...next.batch, startedAt: data.startedAt };
      return next;
    case "item.completed":
      next.items = putItem(state, seq, {
        itemId: data.itemId,
        itemIndex: data.itemIndex,
        status: "completed",
        generationId: data.generationId,
        durationMs: data.durationMs,
        timestamp: data.completedAt,
      });
      return next;
    case "item.failed": {
      const before = state.items.get(data.itemIndex);
      next.items = putItem(state, seq, {
        itemId: data.itemId,
        itemIndex: data.itemIndex,
        status: "failed",
        errorMessage: data.errorMessage,
        errorKind: data.errorKind,
        retryCount: data.retryCount,
        willRetry: data.willRetry,
        timestamp: before ? before.timestamp : undefined,
      });
      if (next.items !== state.items) {
        const outcome = data.willRetry ? "will retry" : "no retries left";
        next.announcement = { seq, text: `Item #${data.itemIndex + 1} failed (${outcome}): ${data.errorMessage}` };
      }
      return next;
    }
    case "batch.paused":
      return seq > state.statusSeq ? withStatus(next, seq, "paused") : next;
    case "batch.resumed":
      return seq > state.statusSeq ? withStatus(next, seq, "running") : next;
    case "batch.retried": {
      next.retriedSeq = Math.max(state.retriedSeq, seq);
      next.items = settleAll(next);
      if (seq < state.statusSeq) return next;
      const retried = withStatus(next, seq, "running");
      retried.isComplete = false;
      retried.complete = null;
      retried.batch = retried.batch && { ...retried.batch, completedAt: null, errorMessage: null };
      return retried;
    }
    case "batch.complete": {
      if (data.status === "cancelled") {
        next.cancelledSeq = Math.max(state.cancelledSeq, seq);
        next.items = settleAll(next);
      } else if (data.status === "failed") {
        next.stoppedSeq = Math.max(state.stoppedSeq, seq);
        next.items = settleAll(next);
      }
      if (seq < state.statusSeq) return next;
      const done = withStatus(next, seq, data.status);
      done.isComplete = true;
      done.complete = data;
      return done;
    }
    default:
      return next; // a logged event of a kind this page does not know: counted as seen, nothing else
  }
}

function withStatus(state, seq, status) {
  return { ...state, statusSeq: seq, batch: state.batch && { ...state.batch, status } };
}

// The items with this event's entry in place, unless a newer event already shaped the item's row.
function putItem(state, seq, entry) {
  const current = state.items.get(entry.itemIndex);
  if (current && current.seq > seq) return state.items;
  const items = new Map(state.items);
  items.set(entry.itemIndex, settle(state, { ...entry, seq }));
  return items;
}

// What a later batch event decided for a row shaped by an earlier one, whatever order they came in:
// an item waiting for a retry when its batch failed (the provider refused the key, say) is stopped; an
// item that had failed for good before "Retry failed" is pending again (no row shown until it
// restarts); and a running item, or one waiting for a retry, was cancelled with its batch. The row
// keeps the seq of its own event, so the item's newer events still replace it.
function settle(state, given) {
  const row = given.seq < state.stoppedSeq ? stop(given) : given;
  if (row.status === "failed" && !row.willRetry && row.seq < state.retriedSeq) {
    return { itemId: row.itemId, itemIndex: row.itemIndex, status: "pending", seq: row.seq };
  }
  const open = row.status === "started" || (row.status === "failed" && row.willRetry);
  if (open && row.seq < state.cancelledSeq) {
    return { itemId: row.itemId, itemIndex: row.itemIndex, status: "cancelled", timestamp: row.timestamp, seq: row.seq };
  }
  return row;
}

function stop(row) {
  return row.status === "failed" && row.willRetry ? { ...row, willRetry: false, stopped: true } : row;
}

function settleAll(state) {
  let items = state.items;
  for (const [index, row] of state.items) {
    const settled = settle(state, row);
    if (settled === row) continue;
    if (items === state.items) items = new Map(state.items);
    items.set(index, settled);
  }
  return items;
}
