// Words and numbers of the progress page (static/format.js): pure, so tables suffice.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  barText,
  elapsedMs,
  etaText,
  formatClock,
  formatDuration,
  formatRate,
  mixLabel,
  remainingMs,
  retryText,
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

test("durations of one item", () => {
  for (const [ms, text] of [
    [0, "0 ms"],
    [340, "340 ms"],
    [28_000, "28.0 s"],
    [59_949, "59.9 s"],
    [330_000, "5m 30s"],
    [3_725_000, "1h 02m"],
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

test("the ETA counts down between snapshots and stops at zero", () => {
  const s = snapshot();
  assert.equal(etaText("running", s, 1_000, 1_000), "about 2m 00s");
  assert.equal(etaText("running", s, 1_000, 31_000), "about 1m 30s");
  assert.equal(remainingMs(s, 1_000, 500_000), 0);
  assert.equal(etaText("running", s, 1_000, 500_000), "Any moment now");
  assert.equal(etaText("paused", s, 1_000, 31_000), "Paused");
  assert.equal(etaText("completed", s, 1_000, 31_000), "—");
  assert.equal(etaText("running", snapshot({ estimatedTimeRemainingMs: 0, throughputRate: 0 }), 0, 0), "Estimating…");
  assert.equal(etaText("running", snapshot({ pendingItems: 0, inProgressItems: 0 }), 0, 0), "Finishing…");
});

test("the brief's example: 3.6 items/min", () => {
  assert.equal(formatRate(3.6), "3.6 items/min");
  assert.equal(formatRate(0), "—");
  assert.equal(mixLabel({ easy: 30, medium: 50, hard: 20 }), "Easy 30% · Medium 50% · Hard 20%");
  assert.equal(barText(snapshot()), "60%: 12 completed, 5 running, 1 failed, 2 pending of 20");
});

test("elapsed time ticks while running and stops at the end", () => {
  const running = { startedAt: "2026-02-19T12:00:00.000Z", completedAt: null };
  const now = Date.parse("2026-02-19T12:05:30.000Z");
  assert.equal(elapsedMs(running, now), 330_000);
  assert.equal(elapsedMs({ ...running, completedAt: "2026-02-19T12:01:00.000Z" }, now), 60_000);
  assert.equal(elapsedMs({ startedAt: null }, now), null);
});

test("what a feed row says", () => {
  assert.deepEqual(rowText({ status: "completed", durationMs: 28_000 }), { state: "Completed", icon: "✓", detail: "28.0 s" });
  assert.equal(rowText({ status: "failed", willRetry: true, errorMessage: "LLM timeout" }).state, "Failed, will retry");
  assert.equal(rowText({ status: "failed", willRetry: false, errorMessage: "LLM timeout" }).detail, "LLM timeout");
  assert.match(retryText({ retryCount: 1, willRetry: true }), /^After 1 attempt; it will be tried again/);
  assert.match(retryText({ retryCount: 3, willRetry: false }), /^Failed after 3 attempts; no retries left/);
  assert.match(retryText({ retryCount: 1, willRetry: false, stopped: true }), /^After 1 attempt; the batch failed before/);
});

test("a batch status in words is the server's `statusLabel`: this module keeps no copy", () => {
  assert.deepEqual(Object.keys(format).filter((name) => /status/i.test(name)), []);
});
