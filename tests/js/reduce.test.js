// The progress page's reducer against event sequences recorded from a real server
// (tests/web/record_events.py), delivered in order, twice, shuffled, and across a reload.
// Run with `node --test tests/js/` (Node 20, no packages).

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";

import { feedEntries, initialState, phase, reduce } from "../../src/livebatch/web/static/reduce.js";

const fixture = (name) => JSON.parse(readFileSync(new URL(`./fixtures/${name}.json`, import.meta.url), "utf8"));
const errors = fixture("errors-and-retry");
const pauses = fixture("pause-resume-cancel");

// An SSE message as page.js hands it to the reducer.
const toAction = (message, at = 0) => ({
  type: "event",
  name: message.event,
  id: message.event === "heartbeat" ? "" : message.id,
  data: JSON.parse(message.data),
  at,
});
const loadedFrom = (detail, at = 0) => reduce(initialState(), { type: "loaded", detail, at });
const play = (state, messages) => messages.reduce((s, m, i) => reduce(s, toAction(m, i)), state);

// What a user sees of a row (the fields the API and the events both carry).
function visible(row) {
  const keep = { itemIndex: row.itemIndex, status: row.status };
  if (row.status === "completed") Object.assign(keep, { generationId: row.generationId, durationMs: row.durationMs });
  if (row.status === "failed") {
    Object.assign(keep, { errorMessage: row.errorMessage, retryCount: row.retryCount, willRetry: row.willRetry });
  }
  return keep;
}
const feedOf = (state) => feedEntries(state).map(visible);
const apiFeed = (detail) => [...detail.items].sort((a, b) => a.itemIndex - b.itemIndex).map(visible);
const counts = (snapshot) => {
  const { completedItems, failedItems, inProgressItems, pendingItems, percentage, totalItems } = snapshot;
  return { completedItems, failedItems, inProgressItems, pendingItems, percentage, totalItems };
};

function assertMatchesApi(state, detail) {
  assert.equal(phase(state), detail.status);
  assert.equal(state.isComplete, ["completed", "completed_with_errors", "failed", "cancelled"].includes(detail.status));
  assert.deepEqual(counts(state.snapshot), counts(detail.snapshot));
  assert.deepEqual(feedOf(state), apiFeed(detail));
  assert.equal(state.cursor, detail.lastEventId);
  assert.deepEqual(state.ahead, []);
}

// A seeded shuffle, so a failure names a reproducible order.
function shuffled(list, seed) {
  const out = [...list];
  let x = seed >>> 0 || 1;
  for (let i = out.length - 1; i > 0; i--) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const j = (x >>> 0) % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

// Everything the state holds, as plain data (Maps and Sets included), to prove nothing is mutated.
const plain = (value) =>
  JSON.stringify(value, (_, v) => (v instanceof Map ? [...v.entries()] : v instanceof Set ? [...v] : v));

describe("recorded batch with retries and failures", () => {
  test("ends in the state the batch API reports", () => {
    const state = play(loadedFrom(errors.start), errors.events);
    assertMatchesApi(state, errors.ended);
    assert.equal(state.complete.status, "completed_with_errors");
    const failed = feedEntries(state).filter((row) => row.status === "failed");
    assert.ok(failed.length > 0 && failed.every((row) => row.errorMessage && row.willRetry === false));
  });

  test("shows each intermediate snapshot and feed row as it arrives", () => {
    let state = loadedFrom(errors.start);
    const percentages = [];
    const statuses = new Set();
    for (const message of errors.events) {
      state = reduce(state, toAction(message));
      percentages.push(state.snapshot.percentage);
      for (const row of state.items.values()) statuses.add(row.status);
    }
    assert.deepEqual([...percentages].sort((a, b) => a - b), percentages, "the bar never goes back");
    assert.ok(percentages[0] < percentages.at(-1));
    assert.deepEqual([...statuses].sort(), ["completed", "failed", "started"]);
  });

  test("a reload mid-batch: the API's state, then the stream from its lastEventId, ends the same", () => {
    const middle = loadedFrom(errors.middle);
    assert.ok(errors.middle.lastEventId > 0 && errors.middle.lastEventId < errors.ended.lastEventId);
    assert.deepEqual(counts(middle.snapshot), counts(errors.middle.snapshot), "counts at once, from the API");
    const after = errors.events.filter((m) => m.event !== "batch.progress" && Number(m.id) > errors.middle.lastEventId);
    const resumed = [{ event: "batch.progress", id: String(errors.middle.lastEventId), data: JSON.stringify(errors.middle.snapshot) }, ...after];
    const fromAfter = play(middle, resumed.concat(errors.events.filter((m) => m.event === "batch.progress").slice(-1)));
    assertMatchesApi(fromAfter, errors.ended);
  });

  test("events the page already has (a replay from an older id) change nothing", () => {
    const middle = loadedFrom(errors.middle);
    const replayed = errors.events.filter((m) => m.event !== "batch.progress" && m.event !== "heartbeat");
    const early = replayed.filter((m) => Number(m.id) <= errors.middle.lastEventId);
    assert.ok(early.length > 0);
    for (const message of early) assert.equal(reduce(middle, toAction(message)), middle, message.id);
    assertMatchesApi(play(middle, errors.events), errors.ended);
  });

  test("duplicate delivery: every event twice, then the whole stream again", () => {
    const doubled = errors.events.flatMap((m) => [m, m]);
    const state = play(play(loadedFrom(errors.start), doubled), errors.events);
    assertMatchesApi(state, errors.ended);
    const once = play(loadedFrom(errors.start), errors.events);
    for (const message of errors.events.filter((m) => m.event !== "batch.progress")) {
      assert.equal(reduce(once, toAction(message)), once, `${message.event} ${message.id} applied twice`);
    }
  });

  test("out-of-order delivery: any order of the same events ends in the same state", () => {
    const last = errors.events.filter((m) => m.event === "batch.progress").at(-1);
    for (let seed = 1; seed <= 60; seed++) {
      const order = shuffled(errors.events, seed);
      const state = play(loadedFrom(errors.start), order);
      // A late, older snapshot never replaces a newer one: the newest wins whatever the order.
      assert.deepEqual(state.snapshot, JSON.parse(last.data), `seed ${seed}`);
      assertMatchesApi(state, errors.ended);
    }
  });

  test("neighbours swapped and repeated, as a flaky proxy might deliver them", () => {
    const swapped = [];
    for (let i = 0; i < errors.events.length; i += 2) {
      const pair = errors.events.slice(i, i + 2).reverse();
      swapped.push(...pair, pair[0]);
    }
    assertMatchesApi(play(loadedFrom(errors.start), swapped), errors.ended);
  });

  test("an item's late older event does not undo its newer one", () => {
    const completed = errors.events.find((m) => m.event === "item.completed");
    const index = JSON.parse(completed.data).itemIndex;
    const started = errors.events.find((m) => m.event === "item.started" && JSON.parse(m.data).itemIndex === index);
    const state = play(loadedFrom(errors.start), [completed, started]);
    assert.equal(state.items.get(index).status, "completed");
    assert.equal(state.cursor, 0, "the cursor waits for the events in between");
    assert.deepEqual(state.ahead, [Number(started.id), Number(completed.id)].sort((a, b) => a - b));
  });

  test("Retry failed: the stream reopened after the end runs the batch again", () => {
    const ended = play(loadedFrom(errors.start), errors.events);
    assert.equal(ended.isComplete, true);
    const retried = errors.afterRetry.findIndex((m) => m.event === "batch.retried");
    const running = play(ended, errors.afterRetry.slice(0, retried + 1));
    assert.equal(phase(running), "running");
    assert.equal(running.isComplete, false);
    assert.equal(running.complete, null);
    assert.ok(feedEntries(running).every((row) => row.status !== "failed" || row.willRetry), "failed rows wait to restart");
    assertMatchesApi(play(ended, errors.afterRetry), errors.final);
  });

  test("Retry failed, out of order: both streams in any order end as the API after the retry", () => {
    const both = [...errors.events, ...errors.afterRetry];
    for (let seed = 1; seed <= 60; seed++) {
      assertMatchesApi(play(loadedFrom(errors.start), shuffled(both, seed)), errors.final);
    }
  });

  test("a failed-for-good item's late events after batch.retried leave it pending, not running", () => {
    const ended = play(loadedFrom(errors.start), errors.events);
    const failed = feedEntries(ended).find((row) => row.status === "failed" && !row.willRetry);
    const retried = errors.afterRetry.find((m) => m.event === "batch.retried");
    const own = errors.events.filter((m) => m.event.startsWith("item.") && JSON.parse(m.data).itemIndex === failed.itemIndex);
    const state = play(loadedFrom(errors.start), [retried, ...own.reverse()]);
    assert.equal(state.items.get(failed.itemIndex).status, "pending");
    assert.ok(!feedEntries(state).some((row) => row.itemIndex === failed.itemIndex), "no row until it restarts");
  });

  test("a failure is announced once, politely", () => {
    const failure = errors.events.find((m) => m.event === "item.failed");
    const state = play(loadedFrom(errors.start), [failure]);
    const data = JSON.parse(failure.data);
    assert.match(state.announcement.text, new RegExp(`^Item #${data.itemIndex + 1} failed`));
    assert.ok(state.announcement.text.includes(data.errorMessage));
    assert.equal(reduce(state, toAction(failure)).announcement, state.announcement);
  });
});

describe("recorded pause, resume and cancel", () => {
  test("the phase follows the controls, and the end matches the API", () => {
    let state = loadedFrom(pauses.start);
    const phases = [phase(state)];
    for (const message of pauses.events) {
      state = reduce(state, toAction(message));
      if (phases.at(-1) !== phase(state)) phases.push(phase(state));
    }
    assert.deepEqual(phases.filter((p) => p !== "queued"), ["running", "paused", "running", "cancelled"]);
    assertMatchesApi(state, pauses.final);
    assert.ok(feedEntries(state).some((row) => row.status === "cancelled"), "items running at the cancel");
  });

  test("a late batch.paused does not override the later batch.resumed", () => {
    const pausedAt = pauses.events.findIndex((m) => m.event === "batch.paused");
    const resumed = pauses.events.find((m) => m.event === "batch.resumed");
    const before = play(loadedFrom(pauses.start), pauses.events.slice(0, pausedAt));
    const state = play(before, [resumed, pauses.events[pausedAt]]);
    assert.equal(phase(state), "running");
  });

  test("out of order and doubled, it still ends cancelled with the API's feed", () => {
    for (let seed = 1; seed <= 30; seed++) {
      const order = shuffled(pauses.events.flatMap((m) => [m, m]), seed);
      assertMatchesApi(play(loadedFrom(pauses.start), order), pauses.final);
    }
  });
});

describe("heartbeats and odd input", () => {
  const base = loadedFrom(errors.start);

  test("a heartbeat is not progress, whatever id EventSource repeats on it", () => {
    const heartbeat = errors.events.find((m) => m.event === "heartbeat");
    assert.ok(heartbeat, "the recording has heartbeats");
    const withId = { type: "event", name: "heartbeat", id: "7", data: JSON.parse(heartbeat.data), at: 1 };
    assert.equal(reduce(base, withId), base);
    assert.equal(reduce(base, toAction(heartbeat)), base);
    // The event that really has id 7 still applies afterwards.
    const seventh = errors.events.find((m) => m.id === "7" && m.event !== "batch.progress");
    assert.notEqual(reduce(reduce(base, withId), toAction(seventh)), base);
  });

  test("a stale snapshot is ignored; one with the same id replaces it", () => {
    const progress = errors.events.filter((m) => m.event === "batch.progress");
    const newer = progress.at(-1);
    const older = progress[1];
    const state = play(base, [newer, older]);
    assert.deepEqual(state.snapshot, JSON.parse(newer.data));
    assert.notEqual(reduce(state, toAction(newer, 99)), state, "same id: taken (a fresh snapshotAt for the ETA)");
  });

  test("events without a usable id, or with a broken payload, are dropped", () => {
    const started = errors.events.find((m) => m.event === "item.started");
    for (const id of ["", "prog-1", "-3", "1.5", "0", undefined]) {
      assert.equal(reduce(base, { ...toAction(started), id }), base, String(id));
    }
    assert.equal(reduce(base, { ...toAction(started), data: null }), base);
    assert.equal(reduce(base, { type: "nonsense" }), base);
  });

  test("an unknown logged event advances the cursor and nothing else", () => {
    const state = reduce(base, { type: "event", name: "batch.renamed", id: "1", data: {}, at: 0 });
    assert.equal(state.cursor, 1);
    assert.equal(state.items, base.items);
  });

  test("a queued batch starts running with its first item", () => {
    const queued = loadedFrom({ ...errors.start, status: "queued", started_at: null, items: [], lastEventId: 0 });
    assert.equal(phase(queued), "queued");
    const started = errors.events.find((m) => m.event === "item.started");
    const running = reduce(queued, toAction(started));
    assert.equal(phase(running), "running");
    assert.equal(running.batch.startedAt, JSON.parse(started.data).startedAt);
    // Paused before it started, then resumed: queued again until an item starts.
    const resumed = { type: "event", name: "batch.resumed", id: "2", data: {}, at: 0 };
    const paused = { type: "event", name: "batch.paused", id: "1", data: {}, at: 0 };
    assert.equal(phase(reduce(reduce(queued, paused), resumed)), "queued");
  });

  test("before the batch API answers, the page is connecting", () => {
    assert.equal(phase(initialState()), "connecting");
    assert.equal(initialState().connection, "connecting");
  });
});

describe("purity", () => {
  test("reduce never changes the state it is given", () => {
    const messages = [...errors.events, ...errors.afterRetry, ...shuffled(errors.events, 7)];
    let state = loadedFrom(errors.start);
    for (const [i, message] of messages.entries()) {
      const before = plain(state);
      const next = reduce(state, toAction(message, i));
      assert.equal(plain(state), before, `${message.event} ${message.id} mutated its input`);
      state = next;
    }
  });

  test("UI actions: auto-scroll and expanded rows live in the state too", () => {
    const state = loadedFrom(errors.start);
    const off = reduce(state, { type: "autoscroll", value: false });
    assert.equal(off.autoScroll, false);
    assert.equal(state.autoScroll, true);
    assert.equal(reduce(off, { type: "autoscroll", value: false }), off);
    const open = reduce(state, { type: "toggle", index: 3 });
    assert.ok(open.expanded.has(3) && !state.expanded.has(3));
    assert.ok(!reduce(open, { type: "toggle", index: 3 }).expanded.has(3));
    assert.equal(reduce(state, { type: "connection", value: "lost" }).connection, "lost");
  });

  test("the batch read again after the end adds what batch.complete lacks, and never goes back", () => {
    const ended = play(loadedFrom(errors.start), errors.events);
    const refreshed = reduce(ended, { type: "refreshed", detail: errors.ended, at: 5 });
    assert.equal(refreshed.batch.completedAt, errors.ended.completed_at);
    assert.equal(reduce(refreshed, { type: "refreshed", detail: errors.middle, at: 6 }), refreshed);
    assert.equal(refreshed.items, ended.items, "the feed is the stream's");
  });

  test("a batch that fails outright stops the items waiting for a retry, until Retry failed", () => {
    // A rejected API key: item 0 failed an attempt (will retry), then item 1's 401 failed the batch.
    const batch = { id: "b", status: "running", total_items: 2, config: {}, course: {}, started_at: "t" };
    const start = { ...batch, snapshot: null, items: [], lastEventId: 0 };
    const failedAttempt = { itemId: "i0", itemIndex: 0, errorMessage: "LLM timeout", retryCount: 1, willRetry: true };
    const keyRejected = { itemId: "i1", itemIndex: 1, errorMessage: "Bad key", retryCount: 1, willRetry: false };
    const complete = { batchId: "b", status: "failed", totalItems: 2, completedItems: 0, failedItems: 1, totalDurationMs: 9 };
    const events = [
      ["1", "item.started", { itemId: "i0", itemIndex: 0, startedAt: "t" }],
      ["2", "item.started", { itemId: "i1", itemIndex: 1, startedAt: "t" }],
      ["3", "item.failed", failedAttempt],
      ["4", "item.failed", keyRejected],
      ["5", "batch.complete", complete],
    ];
    const action = ([id, name, data]) => ({ type: "event", name, id, data, at: 0 });
    const row0 = (state) => state.items.get(0);
    for (const order of [events, [...events].reverse()]) {
      const state = order.reduce((s, e) => reduce(s, action(e)), loadedFrom(start));
      assert.equal(phase(state), "failed");
      assert.deepEqual([row0(state).willRetry, row0(state).stopped], [false, true], "nothing will retry it");
      const retried = reduce(state, action(["6", "batch.retried", { batchId: "b", retriedItems: 2, retriedAt: "t" }]));
      assert.deepEqual(feedEntries(retried), [], "Retry failed queues both again");
    }
    // Loaded from the API after the end: the row the API keeps (willRetry from the last attempt) is stopped too.
    const detail = { ...start, status: "failed", lastEventId: 5, items: [{ ...failedAttempt, status: "failed" }] };
    assert.deepEqual([row0(loadedFrom(detail)).willRetry, row0(loadedFrom(detail)).stopped], [false, true]);
  });
});
