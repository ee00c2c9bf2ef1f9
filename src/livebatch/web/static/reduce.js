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

/** The page's phase: `connecting` until the batch is known, then the batch's status. */
export function phase(state) {
  return state.batch === null ? "connecting" : state.batch.status;
}

/** Feed entries in index order. */
export function feedEntries(state) {
  return [...state.items.values()].sort((a, b) => a.itemIndex - b.itemIndex);
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
  for (const row of detail.items) items.set(row.itemIndex, { ...row, seq });
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
      next.items = putItem(state.items, seq, {
        itemId: data.itemId,
        itemIndex: data.itemIndex,
        status: "started",
        timestamp: data.startedAt,
      });
      // A queued batch starts running with its first item; no batch event says so.
      if (next.batch && next.batch.status === "queued" && seq > state.statusSeq) {
        next.batch = { ...next.batch, status: "running", startedAt: next.batch.startedAt || data.startedAt };
        next.statusSeq = seq;
      }
      return next;
    case "item.completed":
      next.items = putItem(state.items, seq, {
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
      next.items = putItem(state.items, seq, {
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
      return seq > state.statusSeq ? withStatus(next, seq, next.batch && next.batch.startedAt ? "running" : "queued") : next;
    case "batch.retried": {
      if (seq < state.statusSeq) return next;
      const retried = withStatus(next, seq, "running");
      retried.isComplete = false;
      retried.complete = null;
      retried.batch = retried.batch && { ...retried.batch, completedAt: null, errorMessage: null };
      // Items that had failed for good are pending again: their rows return when they start.
      retried.items = dropWhere(state.items, (row) => row.status === "failed" && !row.willRetry && row.seq < seq);
      return retried;
    }
    case "batch.complete": {
      if (seq < state.statusSeq) return next;
      const done = withStatus(next, seq, data.status);
      done.isComplete = true;
      done.complete = data;
      if (data.status === "cancelled") {
        done.items = mapWhere(state.items, (row) => row.status === "started" && row.seq < seq, (row) => ({
          ...row,
          status: "cancelled",
          seq,
        }));
      }
      return done;
    }
    default:
      return next; // a logged event of a kind this page does not know: counted as seen, nothing else
  }
}

function withStatus(state, seq, status) {
  return { ...state, statusSeq: seq, batch: state.batch && { ...state.batch, status } };
}

// The items with this entry in place, unless a newer event already shaped the item's row.
function putItem(items, seq, entry) {
  const current = items.get(entry.itemIndex);
  if (current && current.seq > seq) return items;
  const next = new Map(items);
  next.set(entry.itemIndex, { ...entry, seq });
  return next;
}

function dropWhere(items, predicate) {
  let next = items;
  for (const [index, row] of items) {
    if (!predicate(row)) continue;
    if (next === items) next = new Map(items);
    next.delete(index);
  }
  return next;
}

function mapWhere(items, predicate, change) {
  let next = items;
  for (const [index, row] of items) {
    if (!predicate(row)) continue;
    if (next === items) next = new Map(items);
    next.set(index, change(row));
  }
  return next;
}
