// The progress page's reducer against event sequences recorded from a real server
// (tests/web/record_events.py), played as page.js plays them: every message through reduce(), and
// whenever the state says the batch must be read again, the batch API's answer the recorder read right
// after that event. Delivered in order, twice, shuffled, with late answers, and across a reload.
// Run with `node --test tests/js/` (Node 20, no packages).

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";

import { FEED_ROWS, feedEntries, initialState, mustRead, phase, reduce } from "../../src/livebatch/web/static/reduce.js";

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
const refreshed = (state, detail, at = 0) => reduce(state, { type: "refreshed", detail, at });

// The batch API's answer to a read after event `seq`: the one the recorder read right after it; for an
// order the recording never saw, the first one it read later (by then the server had that event too).
function answerAfter(recording, seq) {
  const found = recording.refreshes.find((r) => r.after >= seq);
  return found ? found.detail : recording.final;
}

// After a message, the page reads the batch if the state asks for it (here the answer comes at once).
const read = (recording, state, at = 0) => (mustRead(state) ? refreshed(state, answerAfter(recording, state.stale), at) : state);
const play = (recording, state, messages) => messages.reduce((s, m, i) => read(recording, reduce(s, toAction(m, i)), i), state);

// As page.js does it when the answer takes a while: one read in flight, answered `lag` messages later,
// and another one then if the state is still stale.
function playLate(recording, state, messages, lag) {
  let pending = null; // { answer, due }
  messages.forEach((message, i) => {
    state = reduce(state, toAction(message, i));
    if (pending && pending.due <= i) {
      state = refreshed(state, pending.answer, i);
      pending = null;
    }
    if (!pending && mustRead(state)) pending = { answer: answerAfter(recording, state.stale), due: i + lag };
  });
  while (pending) {
    state = refreshed(state, pending.answer);
    pending = mustRead(state) ? { answer: answerAfter(recording, state.stale) } : null;
  }
  return state;
}

// What a user sees of a row (the fields the API and the events both carry).
function visible(row) {
  const keep = { itemIndex: row.itemIndex, status: row.status };
  if (row.status === "completed") Object.assign(keep, { generationId: row.generationId, durationMs: row.durationMs });
  if (row.status === "failed") {
    Object.assign(keep, {
      errorMessage: row.errorMessage,
      retryCount: row.retryCount,
      willRetry: row.willRetry,
      stopped: Boolean(row.stopped),
    });
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
  assert.equal(state.batch.statusLabel, detail.statusLabel);
  assert.equal(state.batch.finished, detail.finished);
  assert.deepEqual(state.batch.allowedActions, detail.allowedActions);
  assert.deepEqual(counts(state.snapshot), counts(detail.snapshot));
  assert.deepEqual(feedOf(state), apiFeed(detail));
  assert.equal(state.cursor, detail.lastEventId);
  assert.deepEqual(state.ahead, []);
  assert.equal(mustRead(state), false);
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

const logged = (messages) => messages.filter((m) => m.event !== "batch.progress" && m.event !== "heartbeat");
const named = (messages, name) => messages.filter((m) => m.event === name);
const dataOf = (message) => JSON.parse(message.data);

describe("recorded batch with retries and failures", () => {
  const complete = named(errors.events, "batch.complete")[0];

  test("ends in the state the batch API reports", () => {
    const state = play(errors, loadedFrom(errors.start), errors.events);
    assertMatchesApi(state, errors.ended);
    assert.deepEqual(state.batch.allowedActions, ["retry-failed"]);
    assert.equal(state.complete.status, "completed_with_errors");
    const failed = feedEntries(state).filter((row) => row.status === "failed");
    assert.ok(failed.length > 0 && failed.every((row) => row.errorMessage && row.willRetry === false));
  });

  test("shows each intermediate snapshot, status and feed row as it arrives", () => {
    let state = loadedFrom(errors.start);
    const percentages = [];
    const statuses = new Set();
    const phases = [phase(state)];
    for (const [i, message] of errors.events.entries()) {
      state = read(errors, reduce(state, toAction(message, i)), i);
      percentages.push(state.snapshot.percentage);
      for (const row of state.items.values()) statuses.add(row.status);
      if (phases.at(-1) !== phase(state)) phases.push(phase(state));
    }
    assert.deepEqual([...percentages].sort((a, b) => a - b), percentages, "the bar never goes back");
    assert.ok(percentages[0] < percentages.at(-1));
    assert.deepEqual([...statuses].sort(), ["completed", "failed", "started"]);
    assert.deepEqual(phases, ["queued", "running", "completed_with_errors"]);
  });

  test("a reload mid-batch: the API's state, then the stream from its lastEventId, ends the same", () => {
    const middle = loadedFrom(errors.middle);
    assert.ok(errors.middle.lastEventId > 0 && errors.middle.lastEventId < errors.ended.lastEventId);
    assert.deepEqual(counts(middle.snapshot), counts(errors.middle.snapshot), "counts at once, from the API");
    assert.equal(phase(middle), "running");
    const after = errors.events.filter((m) => m.event !== "batch.progress" && Number(m.id) > errors.middle.lastEventId);
    const first = { event: "batch.progress", id: String(errors.middle.lastEventId), data: JSON.stringify(errors.middle.snapshot) };
    const resumed = [first, ...after, named(errors.events, "batch.progress").at(-1)];
    assertMatchesApi(play(errors, middle, resumed), errors.ended);
  });

  test("events the page already has (a replay from an older id) change nothing", () => {
    const middle = loadedFrom(errors.middle);
    const early = logged(errors.events).filter((m) => Number(m.id) <= errors.middle.lastEventId);
    assert.ok(early.length > 0);
    for (const message of early) assert.equal(reduce(middle, toAction(message)), middle, message.id);
    assertMatchesApi(play(errors, middle, errors.events), errors.ended);
  });

  test("duplicate delivery: every event twice, then the whole stream again", () => {
    const doubled = errors.events.flatMap((m) => [m, m]);
    const state = play(errors, play(errors, loadedFrom(errors.start), doubled), errors.events);
    assertMatchesApi(state, errors.ended);
    const once = play(errors, loadedFrom(errors.start), errors.events);
    for (const message of logged(errors.events)) {
      assert.equal(reduce(once, toAction(message)), once, `${message.event} ${message.id} applied twice`);
    }
  });

  test("out-of-order delivery: any order of the same events ends in the same state", () => {
    // The answer read after batch.complete is newer than every snapshot of the stream: it wins, whatever the
    // order, and a late, older snapshot never replaces it.
    const newest = answerAfter(errors, Number(complete.id));
    assert.ok(named(errors.events, "batch.progress").every((m) => Number(m.id) <= newest.lastEventId));
    for (let seed = 1; seed <= 60; seed++) {
      const state = play(errors, loadedFrom(errors.start), shuffled(errors.events, seed));
      assert.deepEqual(state.snapshot, newest.snapshot, `seed ${seed}`);
      assertMatchesApi(state, errors.ended);
    }
  });

  test("neighbours swapped and repeated, as a flaky proxy might deliver them", () => {
    const swapped = [];
    for (let i = 0; i < errors.events.length; i += 2) {
      const pair = errors.events.slice(i, i + 2).reverse();
      swapped.push(...pair, pair[0]);
    }
    assertMatchesApi(play(errors, loadedFrom(errors.start), swapped), errors.ended);
  });

  test("answers that come back after newer events keep those events, in order or not", () => {
    for (const lag of [1, 2, 3, 5, 8]) {
      assertMatchesApi(playLate(errors, loadedFrom(errors.start), errors.events, lag), errors.ended);
      for (let seed = 1; seed <= 10; seed++) {
        const order = shuffled(errors.events, seed);
        assertMatchesApi(playLate(errors, loadedFrom(errors.start), order, lag), errors.ended);
      }
    }
  });

  test("an item's late older event does not undo its newer one", () => {
    // An item that started and completed after the reload, with an event of another item before it.
    const after = logged(errors.events).filter((m) => Number(m.id) > errors.middle.lastEventId + 1);
    const startedOf = (m) => after.find((s) => s.event === "item.started" && dataOf(s).itemIndex === dataOf(m).itemIndex);
    const completed = after.find((m) => m.event === "item.completed" && startedOf(m));
    const index = dataOf(completed).itemIndex;
    const started = startedOf(completed);
    const state = play(errors, loadedFrom(errors.middle), [completed, started]);
    assert.equal(state.items.get(index).status, "completed");
    assert.equal(state.cursor, errors.middle.lastEventId, "the cursor waits for the events in between");
    assert.deepEqual(state.ahead, [Number(started.id), Number(completed.id)].sort((a, b) => a - b));
  });

  test("Retry failed: the stream reopened after the end runs the batch again", () => {
    const ended = play(errors, loadedFrom(errors.start), errors.events);
    assert.equal(ended.batch.finished, true);
    const retried = errors.afterRetry.findIndex((m) => m.event === "batch.retried");
    const running = play(errors, ended, errors.afterRetry.slice(0, retried + 1));
    assert.equal(phase(running), "running");
    assert.equal(running.batch.finished, false, "page.js opens a stream for it");
    assert.deepEqual(running.batch.allowedActions, ["pause", "cancel"]);
    assert.ok(feedEntries(running).every((row) => row.status !== "failed" || row.willRetry), "no failed row is final");
    assertMatchesApi(play(errors, ended, errors.afterRetry), errors.final);
  });

  test("Retry failed, out of order: both streams in any order end as the API after the retry", () => {
    const both = [...errors.events, ...errors.afterRetry];
    for (let seed = 1; seed <= 60; seed++) {
      assertMatchesApi(play(errors, loadedFrom(errors.start), shuffled(both, seed)), errors.final);
    }
  });

  test("a failed-for-good item's late events after batch.retried do not bring its failure back", () => {
    const ended = play(errors, loadedFrom(errors.start), errors.events);
    const failed = feedEntries(ended).find((row) => row.status === "failed" && !row.willRetry);
    const retried = named(errors.afterRetry, "batch.retried")[0];
    const own = logged(errors.events).filter((m) => m.event.startsWith("item.") && dataOf(m).itemIndex === failed.itemIndex);
    const state = play(errors, loadedFrom(errors.start), [retried, ...own.reverse()]);
    const answer = answerAfter(errors, Number(retried.id)).items.filter((row) => row.itemIndex === failed.itemIndex);
    assert.deepEqual(
      feedOf(state).filter((row) => row.itemIndex === failed.itemIndex),
      answer.map(visible),
      "the row the API had after the retry (none while the item is pending)",
    );
  });

  test("a failure for good is announced once, politely; an attempt that will be retried is not", () => {
    const failures = named(errors.events, "item.failed");
    const attempt = failures.find((m) => dataOf(m).willRetry);
    assert.deepEqual(play(errors, loadedFrom(errors.start), [attempt]).news, []);
    const failure = failures.find((m) => !dataOf(m).willRetry);
    const state = play(errors, loadedFrom(errors.start), [failure]);
    const data = dataOf(failure);
    assert.equal(state.news.length, 1);
    assert.match(state.news[0].text, new RegExp(`^Item #${data.itemIndex + 1} failed \\(no retries left\\)`));
    assert.ok(state.news[0].text.includes(data.errorMessage));
    assert.equal(reduce(state, toAction(failure)).news, state.news);
  });

  test("the end is announced when the batch read after batch.complete says so", () => {
    const state = play(errors, loadedFrom(errors.start), errors.events);
    assert.match(state.news.at(-1).text, /^Batch completed with errors: \d+ of \d+ items generated, \d+ failed\.$/);
  });
});

describe("recorded pause, resume and cancel", () => {
  test("the phase and the controls follow the server, and the end matches the API", () => {
    let state = loadedFrom(pauses.start);
    const seen = [[phase(state), state.batch.allowedActions]];
    const heard = [];
    for (const [i, message] of pauses.events.entries()) {
      state = read(pauses, reduce(state, toAction(message, i)), i);
      if (seen.at(-1)[0] !== phase(state)) seen.push([phase(state), state.batch.allowedActions]);
      for (const piece of state.news) if (!heard.some((h) => h.id === piece.id)) heard.push(piece);
    }
    // The live region hears of the pause, the resume and the cancel (not of the start).
    assert.deepEqual(
      heard.map((piece) => piece.text.split(":")[0].replace(/\.$/, "")),
      ["Batch paused", "Batch resumed", "Batch cancelled"],
    );
    assert.deepEqual(seen, [
      ["queued", ["pause", "cancel"]],
      ["running", ["pause", "cancel"]],
      ["paused", ["resume", "cancel"]],
      ["running", ["pause", "cancel"]],
      ["cancelled", []],
    ]);
    assertMatchesApi(state, pauses.final);
    assert.ok(feedEntries(state).some((row) => row.status === "cancelled"), "items running at the cancel");
  });

  test("a queued batch runs from its first item on, as the server says when read again", () => {
    const queued = loadedFrom(pauses.start);
    assert.equal(phase(queued), "queued");
    const [first, second] = named(pauses.events, "item.started");
    const started = reduce(queued, toAction(first));
    assert.equal(phase(started), "queued", "not before the server says so");
    assert.equal(started.items.get(dataOf(first).itemIndex).status, "started");
    assert.ok(mustRead(started));
    const running = read(pauses, started);
    assert.equal(phase(running), "running");
    assert.equal(running.batch.startedAt, answerAfter(pauses, Number(first.id)).started_at);
    assert.equal(mustRead(reduce(running, toAction(second))), false, "only the first item asks");
  });

  test("a late batch.paused does not override the later batch.resumed", () => {
    const pausedAt = pauses.events.findIndex((m) => m.event === "batch.paused");
    const resumed = named(pauses.events, "batch.resumed")[0];
    const before = play(pauses, loadedFrom(pauses.start), pauses.events.slice(0, pausedAt));
    const state = play(pauses, before, [resumed, pauses.events[pausedAt]]);
    assert.equal(phase(state), "running");
  });

  test("out of order and doubled, it still ends cancelled with the API's feed", () => {
    for (let seed = 1; seed <= 30; seed++) {
      const order = shuffled(pauses.events.flatMap((m) => [m, m]), seed);
      assertMatchesApi(play(pauses, loadedFrom(pauses.start), order), pauses.final);
      assertMatchesApi(playLate(pauses, loadedFrom(pauses.start), order, 3), pauses.final);
    }
  });
});

describe("batch events ask for the batch, and nothing else", () => {
  const base = loadedFrom(errors.middle);
  const event = (name, id, data = {}) => ({ type: "event", name, id, data, at: 0 });

  test("a batch event changes no status and no row: it only marks the batch to be read", () => {
    for (const name of ["batch.paused", "batch.resumed", "batch.retried", "batch.complete"]) {
      const seq = errors.middle.lastEventId + 1;
      const state = reduce(base, event(name, String(seq), { status: "cancelled" }));
      assert.equal(state.batch, base.batch, name);
      assert.equal(state.items, base.items, name);
      assert.equal(state.cursor, seq, name);
      assert.ok(mustRead(state) && state.stale === seq, name);
    }
  });

  test("batch.complete keeps its payload for the page (the stream ends there); an older one does not replace it", () => {
    const seq = errors.middle.lastEventId;
    const newer = reduce(base, event("batch.complete", String(seq + 2), { status: "failed" }));
    assert.deepEqual(newer.complete, { status: "failed", seq: seq + 2 });
    const both = reduce(newer, event("batch.complete", String(seq + 1), { status: "cancelled" }));
    assert.deepEqual(both.complete, newer.complete);
    assert.equal(both.stale, seq + 2);
  });
});

describe("reading the batch again", () => {
  const batch = {
    id: "b",
    status: "running",
    statusLabel: "Running",
    finished: false,
    allowedActions: ["pause", "cancel"],
    total_items: 2,
    config: {},
    course: {},
    started_at: "t",
    snapshot: null,
  };
  const start = { ...batch, items: [], lastEventId: 0 };
  const event = ([id, name, data]) => ({ type: "event", name, id, data, at: 0 });
  const failedAttempt = { itemId: "i0", itemIndex: 0, errorMessage: "LLM timeout", retryCount: 1, willRetry: true };
  const keyRejected = { itemId: "i1", itemIndex: 1, errorMessage: "Bad key", retryCount: 1, willRetry: false };

  test("the rows are the server's after a batch event: stopped when the batch failed, gone when retried", () => {
    // A rejected API key: item 0 failed an attempt (will retry), then item 1's 401 failed the batch.
    const events = [
      ["1", "item.started", { itemId: "i0", itemIndex: 0, startedAt: "t" }],
      ["2", "item.started", { itemId: "i1", itemIndex: 1, startedAt: "t" }],
      ["3", "item.failed", failedAttempt],
      ["4", "item.failed", keyRejected],
      ["5", "batch.complete", { batchId: "b", status: "failed", totalItems: 2, completedItems: 0, failedItems: 1 }],
    ];
    const over = { ...batch, status: "failed", statusLabel: "Failed", finished: true, allowedActions: ["retry-failed"] };
    const failed = {
      ...over,
      lastEventId: 5,
      items: [
        { ...failedAttempt, status: "failed", willRetry: false, stopped: true, timestamp: "t" },
        { ...keyRejected, status: "failed", timestamp: "t" },
      ],
    };
    for (const order of [events, [...events].reverse()]) {
      const ended = order.reduce((s, e) => reduce(s, event(e)), loadedFrom(start));
      assert.equal(phase(ended), "running", "until the batch is read again");
      assert.ok(mustRead(ended));
      const state = refreshed(ended, failed);
      assert.equal(phase(state), "failed");
      assert.deepEqual([state.items.get(0).willRetry, state.items.get(0).stopped], [false, true], "nothing will retry it");
      const retried = reduce(state, event(["6", "batch.retried", { batchId: "b", retriedItems: 2, retriedAt: "t" }]));
      const pending = refreshed(retried, { ...batch, lastEventId: 6, items: [] });
      assert.deepEqual(feedEntries(pending), [], "an answer that lists no row: no row");
      assert.equal(pending.batch.finished, false);
      // The server lists the items "Retry failed" queued again, not started yet: their rows stay, queued.
      const queued = (row) => ({ itemId: row.itemId, itemIndex: row.itemIndex, status: "queued", retried: true, timestamp: "t" });
      const listed = refreshed(retried, { ...batch, lastEventId: 6, items: failed.items.map(queued) });
      assert.deepEqual(
        feedEntries(listed).map((row) => [row.itemIndex, row.status, row.retried]),
        [[0, "queued", true], [1, "queued", true]],
      );
      const running = reduce(listed, event(["7", "item.started", { itemId: "i1", itemIndex: 1, startedAt: "t" }]));
      assert.deepEqual(feedEntries(running).map((row) => row.status), ["queued", "started"]);
    }
  });

  test("rows that did not change keep their objects; an answer that changes none keeps the feed", () => {
    const started = ["1", "item.started", { itemId: "i0", itemIndex: 0, startedAt: "t0" }];
    const done = ["2", "item.completed", { itemId: "i1", itemIndex: 1, generationId: "g1", durationMs: 5, completedAt: "t1" }];
    const state = [started, done].reduce((s, e) => reduce(s, event(e)), loadedFrom(start));
    const same = {
      ...batch,
      lastEventId: 2,
      items: [
        { itemId: "i0", itemIndex: 0, status: "started", timestamp: "t0" },
        { itemId: "i1", itemIndex: 1, status: "completed", generationId: "g1", durationMs: 5, timestamp: "t1" },
      ],
    };
    assert.equal(refreshed(state, same).items, state.items);
    const cancelled = { ...same, items: [{ itemId: "i0", itemIndex: 0, status: "cancelled", timestamp: "t0" }, same.items[1]] };
    const next = refreshed(state, cancelled);
    assert.notEqual(next.items, state.items);
    assert.equal(next.items.get(0).status, "cancelled");
    assert.equal(next.items.get(1), state.items.get(1), "the unchanged row is the same object");
  });

  test("an answer lists the highest indexes only: rows below them stay, rows within them go when unlisted", () => {
    const many = (from, to) =>
      Array.from({ length: to - from }, (_, i) => ({ itemId: `i${from + i}`, itemIndex: from + i, status: "completed", timestamp: "t" }));
    const loaded = loadedFrom({ ...start, total_items: FEED_ROWS + 10, lastEventId: 9, items: many(0, FEED_ROWS + 10) });
    assert.equal(loaded.items.size, FEED_ROWS + 10);
    // Items 5 and 500 are pending again: the answer covers indexes 9 and up, so only 500's row goes.
    const rows = many(9, FEED_ROWS + 10).filter((row) => row.itemIndex !== 500);
    const answer = { ...start, total_items: FEED_ROWS + 10, lastEventId: 10, items: rows };
    assert.equal(answer.items.length, FEED_ROWS);
    const state = refreshed(loaded, answer);
    assert.ok(state.items.has(5) && !state.items.has(500));
    assert.equal(state.items.size, FEED_ROWS + 9);
    // With fewer rows than the API's limit, the answer covers every index.
    const all = refreshed(loaded, { ...answer, items: rows.slice(0, 10) });
    assert.deepEqual([...all.items.keys()].sort((a, b) => a - b), rows.slice(0, 10).map((row) => row.itemIndex));
  });

  test("an answer keeps events newer than it, and counts every id up to it as applied", () => {
    const completed = { itemId: "i1", itemIndex: 1, generationId: "g", durationMs: 1, completedAt: "t" };
    const state = [
      ["1", "item.started", { itemId: "i0", itemIndex: 0, startedAt: "t" }],
      ["6", "item.started", { itemId: "i0", itemIndex: 0, startedAt: "t" }],
      ["4", "item.completed", completed],
    ].reduce((s, e) => reduce(s, event(e)), loadedFrom(start));
    assert.deepEqual([state.cursor, state.ahead], [1, [4, 6]]);
    // Read after event 5 (a pause, say), answered after event 6 arrived: item 0 had failed an attempt then.
    const answer = {
      ...batch,
      lastEventId: 5,
      items: [
        { ...failedAttempt, status: "failed", timestamp: "t" },
        { itemId: "i1", itemIndex: 1, status: "completed", generationId: "g", durationMs: 1, timestamp: "t" },
      ],
    };
    const next = refreshed(state, answer);
    assert.equal(next.items.get(0).status, "started", "event 6 is newer than the answer's row");
    assert.equal(next.items.get(1), state.items.get(1), "the answer's row equals the one event 4 made");
    assert.deepEqual([next.cursor, next.ahead], [6, []]);
    assert.equal(reduce(next, event(["2", "item.failed", failedAttempt])), next, "events up to the answer are in it");
  });

  test("an answer older than the batch the state holds changes neither the batch nor the snapshot", () => {
    const ended = play(errors, loadedFrom(errors.start), errors.events);
    const again = refreshed(ended, errors.ended, 5);
    assert.equal(again.batch.completedAt, errors.ended.completed_at);
    const older = refreshed(again, errors.middle, 6);
    assert.equal(older, again, "nothing in it is news");
  });
});

describe("heartbeats and odd input", () => {
  const base = loadedFrom(errors.start);

  test("a heartbeat is not progress, whatever id EventSource repeats on it", () => {
    const heartbeat = named(errors.events, "heartbeat")[0] ?? named(pauses.events, "heartbeat")[0];
    assert.ok(heartbeat, "the recording has heartbeats");
    const withId = { type: "event", name: "heartbeat", id: "7", data: dataOf(heartbeat), at: 1 };
    assert.equal(reduce(base, withId), base);
    assert.equal(reduce(base, toAction(heartbeat)), base);
    // The event that really has id 7 still applies afterwards.
    const seventh = errors.events.find((m) => m.id === "7" && m.event !== "batch.progress");
    assert.notEqual(reduce(reduce(base, withId), toAction(seventh)), base);
  });

  test("a stale snapshot is ignored; one with the same id replaces it", () => {
    const progress = named(errors.events, "batch.progress");
    const newer = progress.at(-1);
    const older = progress[1];
    const state = play(errors, base, [newer, older]);
    assert.deepEqual(state.snapshot, dataOf(newer));
    assert.notEqual(reduce(state, toAction(newer, 99)), state, "same id: taken (a fresh snapshotAt for the ETA)");
  });

  test("events without a usable id, or with a broken payload, are dropped", () => {
    const started = named(errors.events, "item.started")[0];
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
    assert.equal(mustRead(state), false);
  });

  test("before the batch API answers, the page is connecting", () => {
    assert.equal(phase(initialState()), "connecting");
    assert.equal(initialState().connection, "connecting");
    assert.equal(mustRead(initialState()), false);
  });
});

describe("purity", () => {
  test("reduce never changes the state it is given", () => {
    const messages = [...errors.events, ...errors.afterRetry, ...shuffled(errors.events, 7)];
    let state = loadedFrom(errors.start);
    for (const [i, message] of messages.entries()) {
      for (const step of [(s) => reduce(s, toAction(message, i)), (s) => read(errors, s, i)]) {
        const before = plain(state);
        const next = step(state);
        assert.equal(plain(state), before, `${message.event} ${message.id} (or the read after it) mutated its input`);
        state = next;
      }
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
    const failed = reduce(state, { type: "filter", value: "failed" });
    assert.equal(failed.filter, "failed");
    assert.equal(state.filter, "all");
    assert.equal(reduce(failed, { type: "filter", value: "failed" }), failed);
    const expanded = reduce(state, { type: "expand", index: 4 });
    assert.ok(expanded.expanded.has(4) && !state.expanded.has(4));
    assert.equal(reduce(expanded, { type: "expand", index: 4 }), expanded, "opening an open row changes nothing");
  });
});
