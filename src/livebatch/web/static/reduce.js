// The progress page's state and its one transition, `reduce(state, action)`: the brief's useBatchProgress.
// Pure: no DOM, no clock, no I/O. page.js puts the times into the actions; render.js draws the result.
//
// The server keeps the one copy of the batch's rules (batches/status.py): its status and the words for
// it, whether it is over, the controls it allows, and what a pause, a cancel, a failure or "Retry failed"
// did to the rows of its items. So this module folds only item events into rows and keeps the newest
// snapshot; after an event that changed the batch itself (a batch event, or the first item of a queued
// batch) it only records that the batch must be read again, and takes the answer page.js gets as a
// `refreshed` action.
//
// Delivery may repeat or reorder events: a reconnect replays after Last-Event-ID, a reload starts from
// the batch API's `lastEventId`, and a test may deliver anything. So every logged event (its SSE id is
// the batch's sequence number) is applied at most once, and an item's row and the snapshot only move
// forward (an event older than what shaped them is ignored); heartbeats carry no id and change nothing.
// A state is never modified: every change returns a new object.

import { batchNews, failureNews } from "./format.js";

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
// `batch.reset` (not logged): the events after the page's cursor were pruned; page.js reloads the batch.
export const EVENT_NAMES = Object.freeze([...LOGGED_EVENTS, "batch.progress", "heartbeat", "batch.reset"]);
// The batch API's `feed` default: an answer lists at most this many rows, those of the highest indexes.
export const FEED_ROWS = 1000;

export function initialState() {
  return {
    batch: null, // the batch as the API last described it: status, statusLabel, finished, allowedActions, …
    batchSeq: 0, // the `lastEventId` of that answer
    stale: 0, // the newest event that changed the batch in a way only the server knows (see mustRead)
    snapshot: null, // the latest `batch.progress` payload (counts, percentage, ETA, throughput)
    snapshotSeq: -1, // the event id that snapshot is current up to
    snapshotAt: 0, // when it arrived (page clock, ms): the ETA counts down from there
    items: new Map(), // itemIndex -> feed entry (the brief's BatchItemFeedEntry) + the seq that shaped it
    cursor: 0, // every logged event up to this id has been applied
    ahead: [], // ids above the cursor applied already (delivered out of order), ascending
    complete: null, // the newest `batch.complete` payload (with its seq): the stream ended there
    connection: "connecting", // connecting | open | lost | closed
    autoScroll: true,
    filter: "all", // which rows the feed shows: all | failed | running
    expanded: new Set(), // item indexes whose error detail is open
    news: [], // [{ id, text }]: the latest news for the polite live region (a status, a failure), oldest first
  };
}

export function reduce(state, action) {
  switch (action.type) {
    case "loaded":
    case "refreshed":
      return refreshed(state, action.detail, action.at, action.feed ?? FEED_ROWS);
    case "reset":
      // The log the page was following was pruned: forget the batch, keep what the person chose.
      return { ...initialState(), autoScroll: state.autoScroll, expanded: state.expanded };
    case "event":
      return onEvent(state, action.name, action.id, action.data, action.at);
    case "connection":
      return state.connection === action.value ? state : { ...state, connection: action.value };
    case "autoscroll":
      return state.autoScroll === action.value ? state : { ...state, autoScroll: action.value };
    case "filter":
      return state.filter === action.value ? state : { ...state, filter: action.value };
    case "expand":
      return state.expanded.has(action.index) ? state : { ...state, expanded: new Set(state.expanded).add(action.index) };
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

/** Whether the batch must be read again: an event changed it after the answer the state holds. */
export function mustRead(state) {
  return state.batch !== null && state.stale > state.batchSeq;
}

/** The page's phase: `connecting` until the batch is known, then the batch's status as the server said. */
export function phase(state) {
  return state.batch === null ? "connecting" : state.batch.status;
}

/** The feed's rows in index order. */
export function feedEntries(state) {
  return [...state.items.values()].sort((a, b) => a.itemIndex - b.itemIndex);
}

// --- the batch API ------------------------------------------------------------------------------

function batchOf(detail) {
  return {
    id: detail.id,
    status: detail.status,
    statusLabel: detail.statusLabel,
    finished: detail.finished,
    allowedActions: detail.allowedActions,
    totalItems: detail.total_items,
    config: detail.config,
    course: detail.course,
    startedAt: detail.started_at,
    createdAt: detail.created_at,
    completedAt: detail.completed_at,
    errorMessage: detail.error_message,
    pauseReason: detail.pauseReason ?? null, // issue 13: why it is paused (user, budget_reached, error_rate)
    guards: detail.guards ?? null, // what its budget and error-rate guards see
    activeMs: detail.activeMs, // time run without pauses, up to runningSince (elapsed time on the page)
    runningSince: detail.runningSince,
    runRate: detail.runRate, // the whole run's items/min, once it is over
  };
}

// The batch as the API describes it, current up to its `lastEventId` (the first state of the page, or a
// read after a batch event): the batch and the snapshot unless the state holds newer ones, the rows it
// lists in place of older ones, and every event up to it counted as applied (what they did is in it).
function refreshed(state, detail, at, feed) {
  const seq = detail.lastEventId;
  const items = rowsAfter(state.items, detail.items, seq, feed);
  const takesBatch = state.batch === null || seq >= state.batchSeq;
  const takesSnapshot = seq >= state.snapshotSeq;
  if (items === state.items && !takesBatch && !takesSnapshot && seq <= state.cursor) return state;
  const next = { ...state, items, ...skipTo(state.cursor, state.ahead, seq) };
  if (takesBatch) {
    Object.assign(next, { batch: batchOf(detail), batchSeq: seq });
    // A change of status is news for the live region (a pause, the end); the first answer is not.
    const before = state.batch && state.batch.status;
    const news = before && before !== detail.status ? batchNews(before, next.batch, detail.snapshot) : null;
    if (news) next.news = told(state.news, news);
  }
  if (takesSnapshot) Object.assign(next, { snapshot: detail.snapshot, snapshotSeq: seq, snapshotAt: at });
  return next;
}

// The feed after an answer current up to `seq`: its rows replace those no newer than it (an item "Retry
// failed" queued again is listed as `queued`), and a row no newer than it that it no longer lists goes,
// but only within the indexes it covers (it lists the `feed` highest). A row equal to the state's keeps the
// state's object, and an answer that changes nothing keeps the Map, so render.js redraws only what changed.
function rowsAfter(items, rows, seq, feed) {
  const lowest = rows.length < feed ? -Infinity : rows.reduce((low, row) => Math.min(low, row.itemIndex), Infinity);
  const listed = new Set(rows.map((row) => row.itemIndex));
  let next = items;
  const edit = () => (next === items ? (next = new Map(items)) : next);
  for (const [index, row] of items) {
    if (row.seq <= seq && index >= lowest && !listed.has(index)) edit().delete(index);
  }
  for (const row of rows) {
    const held = items.get(row.itemIndex);
    if (held !== undefined && (held.seq > seq || sameRow(held, row))) continue;
    edit().set(row.itemIndex, { ...row, seq });
  }
  return next;
}

// Shallow equality of a held row and an answer's row, apart from the seq (a field left undefined by an
// event and one the API leaves out are the same).
function sameRow(held, given) {
  for (const key in given) if (held[key] !== given[key]) return false;
  for (const key in held) if (key !== "seq" && !(key in given) && held[key] !== undefined) return false;
  return true;
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

// Marks `seq` applied.
function advance(cursor, ahead, seq) {
  if (seq === cursor + 1) return closeGaps(seq, ahead);
  return { cursor, ahead: [...ahead, seq].sort((a, b) => a - b) };
}

// Marks every id up to `seq` applied.
function skipTo(cursor, ahead, seq) {
  if (seq <= cursor) return { cursor, ahead };
  return closeGaps(seq, ahead.filter((id) => id > seq));
}

// The cursor moves over every id now contiguous with it.
function closeGaps(cursor, ahead) {
  let next = cursor;
  let taken = 0;
  while (taken < ahead.length && ahead[taken] === next + 1) next = ahead[taken++];
  return { cursor: next, ahead: taken ? ahead.slice(taken) : ahead };
}

function onEvent(state, name, id, data, at) {
  // batch.reset has an id but is no logged event: page.js reloads the batch on it (then dispatches "reset").
  if (name === "heartbeat" || name === "batch.reset" || data === null || typeof data !== "object") return state;
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
      // A queued batch starts running with its first item, which no batch event says: the server does.
      if (state.batch !== null && state.batch.status === "queued") next.stale = Math.max(state.stale, seq);
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
      const news = next.items !== state.items ? failureNews(data) : null;
      if (news) next.news = told(state.news, news);
      return next;
    }
    case "batch.complete":
      // The server ends the stream here (page.js closes it); how the batch ended is read from the API.
      if (state.complete === null || state.complete.seq < seq) next.complete = { ...data, seq };
      next.stale = Math.max(state.stale, seq);
      return next;
    case "batch.paused":
    case "batch.resumed":
    case "batch.retried":
      next.stale = Math.max(state.stale, seq);
      return next;
    default:
      return next; // a logged event of a kind this page does not know: counted as seen, nothing else
  }
}

// The news with one more piece: the last few are kept, each with the next id (render.js says each once).
const NEWS_KEPT = 5;
function told(news, text) {
  const id = news.length ? news[news.length - 1].id + 1 : 1;
  return [...news.slice(1 - NEWS_KEPT), { id, text }];
}

// The items with this event's entry in place, unless a newer event already shaped the item's row.
function putItem(items, seq, entry) {
  const current = items.get(entry.itemIndex);
  if (current && current.seq > seq) return items;
  const next = new Map(items);
  next.set(entry.itemIndex, { ...entry, seq });
  return next;
}
