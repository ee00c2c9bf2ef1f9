// Opt-in notifications' pure half (static/notify.js): which events notify, with which words, and the button's
// states. Run with `node --test tests/js/`.

import assert from "node:assert/strict";
import { test } from "node:test";

import { buttonState, notificationFor } from "../../src/livebatch/web/static/notify.js";

const batch = { id: "b-1", totalItems: 20, course: { title: "Cardiovascular Pathology" } };
const snapshot = { totalItems: 20, completedItems: 12, failedItems: 1 };
const complete = (status, completed, failed) => ({
  batchId: "b-1",
  status,
  totalItems: 20,
  completedItems: completed,
  failedItems: failed,
  totalDurationMs: 330000,
});

test("the end of a batch notifies with the course and the counts", () => {
  const cases = [
    [complete("completed_with_errors", 18, 2), "Cardiovascular Pathology: batch completed with errors", "18 of 20 items generated, 2 failed."],
    [complete("completed", 20, 0), "Cardiovascular Pathology: batch completed", "20 of 20 items generated."],
    [complete("failed", 0, 20), "Cardiovascular Pathology: batch failed", "0 of 20 items generated, 20 failed."],
    [complete("cancelled", 4, 0), "Cardiovascular Pathology: batch cancelled", "4 of 20 items generated."],
  ];
  for (const [data, title, body] of cases) {
    assert.deepEqual(notificationFor("batch.complete", data, batch, snapshot, "57"), { title, body, tag: "livebatch-b-1-57" });
  }
});

test("a pause notifies only when the batch paused itself, saying why", () => {
  const at = "2026-02-19T12:05:00.000Z";
  const budget = notificationFor("batch.paused", { batchId: "b-1", pausedAt: at, reason: "budget_reached" }, batch, snapshot, "31");
  assert.deepEqual(budget, {
    title: "Cardiovascular Pathology: batch paused",
    body: "Paused itself: its budget is reached. 12 of 20 items generated, 1 failed.",
    tag: "livebatch-b-1-31",
  });
  const rate = notificationFor("batch.paused", { batchId: "b-1", pausedAt: at, reason: "error_rate" }, batch, snapshot);
  assert.match(rate.body, /^Paused itself: too many items are failing\./);
  const other = notificationFor("batch.paused", { batchId: "b-1", pausedAt: at, reason: "maintenance" }, batch, snapshot);
  assert.match(other.body, /^Paused itself \(maintenance\)\./);
  // A pause by a person (`user`, or no reason from an older server), and every other event, notify nobody.
  assert.equal(notificationFor("batch.paused", { batchId: "b-1", pausedAt: at, reason: "user" }, batch, snapshot), null);
  assert.equal(notificationFor("batch.paused", { batchId: "b-1", pausedAt: at }, batch, snapshot), null);
  for (const name of ["item.failed", "item.completed", "batch.resumed", "batch.retried", "batch.progress", "heartbeat"]) {
    assert.equal(notificationFor(name, { batchId: "b-1", reason: "budget_reached", status: "completed" }, batch, snapshot), null);
  }
  assert.equal(notificationFor("batch.complete", null, batch, snapshot), null);
});

test("without the batch yet, the words still make sense", () => {
  const message = notificationFor("batch.complete", complete("completed", 20, 0), null, null);
  assert.equal(message.title, "Your batch: batch completed");
});

test("the button: hidden without the API, blocked when denied, pressed once granted and chosen", () => {
  assert.equal(buttonState(false, "default", true).hidden, true);
  const denied = buttonState(true, "denied", true);
  assert.deepEqual([denied.hidden, denied.disabled, denied.pressed, denied.text], [false, true, false, "Notifications blocked"]);
  assert.match(denied.note, /browser's settings/);
  assert.deepEqual(
    [buttonState(true, "default", false), buttonState(true, "default", true), buttonState(true, "granted", false)].map((s) => [s.pressed, s.text]),
    [
      [false, "Notify me when a batch ends"],
      [false, "Notify me when a batch ends"], // chosen in another tab, but this browser has not granted it yet
      [false, "Notify me when a batch ends"],
    ],
  );
  const on = buttonState(true, "granted", true);
  assert.deepEqual([on.pressed, on.disabled, on.text], [true, false, "Notifications on"]);
});
