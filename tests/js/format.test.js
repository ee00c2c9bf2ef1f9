// Words and numbers of the progress page (static/format.js): pure, so tables suffice.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  barText,
  batchNews,
  elapsedMs,
  etaText,
  failureNews,
  formatClock,
  formatDuration,
  formatRate,
  mixLabel,
  rateText,
  remainingMs,
  retryText,
  rowKind,
  rowText,
} from "../../src/livebatch/web/static/format.js";
import * as format from "../../src/livebatch/web/static/format.js";

const snapshot = (over = {}) => ({
  batchId: "b",
  totalItems: 20,
  completedItems: 12,
  failedItems: 1,
  inProgressItems: 5,
  pendingItems: 2,
  percentage: 60,
  estimatedTimeRemainingMs: 120_000,
  throughputRate: 3.6,
  ...over,
});

test("durations of one item: the page's one time format, with a tenth under a minute", () => {
  for (const [ms, text] of [
    [0, "0.0s"],
    [340, "0.3s"],
    [28_000, "28.0s"],
    [59_949, "59.9s"],
    [330_000, "5m 30s"],
    [3_725_000, "1h 02m 05s"],
    [-1, ""],
    [undefined, ""],
  ]) {
    assert.equal(formatDuration(ms), text, String(ms));
  }
});

test("the elapsed and remaining clock", () => {
  for (const [ms, text] of [
    [0, "0s"],
    [45_900, "45s"],
    [330_000, "5m 30s"],
    [3_725_000, "1h 02m 05s"],
    [-5, "0s"],
  ]) {
    assert.equal(formatClock(ms), text, String(ms));
  }
});

test("the server's ETA counts down between snapshots and stops at zero", () => {
  const s = snapshot();
  assert.equal(remainingMs(s, 1_000, 1_000), 120_000);
  assert.equal(remainingMs(s, 1_000, 31_000), 90_000);
  assert.equal(remainingMs(s, 1_000, 500_000), 0);
});

test("the ETA in words, from the value shown (eta.js)", () => {
  const s = snapshot();
  assert.equal(etaText("running", s, 120_000), "about 2m 00s");
  assert.equal(etaText("running", s, 90_400), "about 1m 30s");
  assert.equal(etaText("running", s, 400), "Any moment now");
  assert.equal(etaText("running", s, null), "Estimating…");
  assert.equal(etaText("paused", s, 90_000), "Paused");
  assert.equal(etaText("completed", s, 90_000), "—");
  assert.equal(etaText("running", snapshot({ estimatedTimeRemainingMs: 0, throughputRate: 0 }), 0), "Estimating…");
  assert.equal(etaText("running", snapshot({ pendingItems: 0, inProgressItems: 0 }), 0), "Finishing…");
});

test("the brief's example: 3.6 items/min", () => {
  assert.equal(formatRate(3.6), "3.6 items/min");
  assert.equal(formatRate(0), "—");
  assert.equal(mixLabel({ easy: 30, medium: 50, hard: 20 }), "Easy 30% · Medium 50% · Hard 20%");
  assert.equal(barText(snapshot()), "60%: 12 completed, 5 running, 1 failed, 2 pending of 20");
  assert.equal(barText(snapshot({ retryingItems: 1 })), "60%: 12 completed, 5 running, 1 failed, 2 pending (1 retrying) of 20");
});

test("throughput: the last completions' rate while it runs, the whole run's once it is over", () => {
  const s = snapshot({ throughputRate: 224.8 });
  assert.equal(rateText({ finished: false, runRate: null }, s), "224.8 items/min");
  assert.equal(rateText({ finished: true, runRate: 17.94 }, s), "17.9 items/min overall");
  assert.equal(rateText({ finished: true, runRate: 0 }, s), "—");
  assert.equal(rateText({ finished: true }, s), "224.8 items/min", "a server from before runRate");
  assert.equal(rateText(null, null), "—");
});

test("elapsed time is the time run without pauses: it ticks while running, stands while paused and at the end", () => {
  const now = Date.parse("2026-02-19T12:05:30.000Z");
  const started = "2026-02-19T12:00:00.000Z";
  // Ran 20 s, was paused for minutes, runs again since 12:05:00.
  const running = { startedAt: started, activeMs: 20_000, runningSince: "2026-02-19T12:05:00.000Z" };
  assert.equal(elapsedMs(running, now), 50_000);
  assert.equal(elapsedMs(running, now + 5_000), 55_000);
  const paused = { startedAt: started, activeMs: 20_000, runningSince: null };
  assert.equal(elapsedMs(paused, now), 20_000);
  assert.equal(elapsedMs(paused, now + 600_000), 20_000, "paused time is not counted");
  assert.equal(elapsedMs({ startedAt: null, activeMs: 0 }, now), null);
  // A server from before activeMs: wall time from the start to the end.
  const old = { startedAt: started, completedAt: null };
  assert.equal(elapsedMs(old, now), 330_000);
  assert.equal(elapsedMs({ ...old, completedAt: "2026-02-19T12:01:00.000Z" }, now), 60_000);
});

test("what a feed row says", () => {
  assert.deepEqual(rowText({ status: "completed", durationMs: 28_000 }), { state: "Completed", icon: "✓", detail: "28.0s" });
  // A failed attempt that will be retried is not a failure: the failed count does not count it either.
  const attempt = { status: "failed", willRetry: true, errorMessage: "LLM timeout" };
  assert.equal(rowKind(attempt), "retrying");
  assert.deepEqual(rowText(attempt), { state: "Retrying", icon: "↻", detail: "LLM timeout" });
  assert.equal(rowKind({ status: "failed", willRetry: false }), "failed");
  assert.equal(rowKind({ status: "failed", willRetry: false, stopped: true }), "failed");
  assert.equal(rowText({ status: "queued", retried: true }).state, "Queued for retry");
  assert.equal(rowText({ status: "started" }).state, "Running…");
  assert.equal(rowText({ status: "failed", willRetry: false, errorMessage: "LLM timeout" }).detail, "LLM timeout");
  assert.match(retryText({ retryCount: 1, willRetry: true }), /^After 1 attempt; it will be tried again/);
  assert.match(retryText({ retryCount: 3, willRetry: false }), /^Failed after 3 attempts; no retries left/);
  assert.match(retryText({ retryCount: 1, willRetry: false, stopped: true }), /^After 1 attempt; the batch failed before/);
});

test("a batch status in words is the server's `statusLabel`: this module keeps no copy", () => {
  assert.deepEqual(Object.keys(format).filter((name) => /status/i.test(name)), []);
});

test("the live region hears of failures for good, not of attempts that will be retried", () => {
  assert.equal(failureNews({ itemIndex: 2, errorMessage: "LLM timeout", willRetry: true }), null);
  assert.equal(
    failureNews({ itemIndex: 2, errorMessage: "LLM timeout", willRetry: false }),
    "Item #3 failed (no retries left): LLM timeout",
  );
});

test("the live region hears of a pause, a resume, the end and a cancel", () => {
  const s = snapshot({ completedItems: 18, failedItems: 2 });
  const batch = (status, over = {}) => ({ status, statusLabel: status, totalItems: 20, errorMessage: null, ...over });
  assert.equal(batchNews("running", batch("paused"), s), "Batch paused: 18 of 20 items generated.");
  assert.equal(batchNews("paused", batch("running"), s), "Batch resumed.");
  assert.equal(batchNews("queued", batch("running"), s), null, "a batch starting is no news");
  assert.equal(batchNews("completed_with_errors", batch("running"), s), "Batch running again: the failed items are retried.");
  assert.equal(batchNews("running", batch("completed"), s), "Batch completed: all 20 items generated.");
  assert.equal(
    batchNews("running", batch("completed_with_errors"), s),
    "Batch completed with errors: 18 of 20 items generated, 2 failed.",
  );
  assert.equal(batchNews("running", batch("cancelled"), s), "Batch cancelled: 18 of 20 items had been generated.");
  assert.equal(batchNews("running", batch("failed", { errorMessage: "Bad key" }), s), "Batch failed: Bad key");
});
