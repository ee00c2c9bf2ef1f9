// Words for what issue 13 adds to the progress page (static/figures.js, and the ETA in static/format.js):
// pure, so tables suffice.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  budgetText,
  costText,
  money,
  pauseText,
  raisedBudget,
  rangeText,
  tokensText,
} from "../../src/livebatch/web/static/figures.js";
import { etaText } from "../../src/livebatch/web/static/format.js";
import { initialState, reduce } from "../../src/livebatch/web/static/reduce.js";

const MIN = 60_000;

test("the ETA range in the unit that reads best", () => {
  for (const [range, text] of [
    [[4 * MIN, 6 * MIN], "about 4–6 min"],
    [[4.2 * MIN, 5.1 * MIN], "about 4–6 min"], // the low bound down, the high one up
    [[87_474, 149_028], "about 1–3 min"], // the brief's 7 items left at 3.6/min
    [[20_000, 40_000], "about 20–40 s"],
    [[40_000, 130_000], "about 40 s–3 min"],
    [[45 * MIN, 130 * MIN], "about 45 min–3 h"],
    [[60 * MIN, 180 * MIN], "about 1–3 h"],
    [[4 * MIN, 4 * MIN], "about 4 min"],
    [[300, 2_000], "under 2 s"],
    [[0, 0], "Any moment now"],
    [[0, 90_000], "under 2 min"],
  ]) {
    assert.equal(rangeText(range), text, JSON.stringify(range));
  }
});

test("the ETA range counts down between snapshots", () => {
  assert.equal(rangeText([4 * MIN, 6 * MIN], 2 * MIN), "about 2–4 min");
  assert.equal(rangeText([4 * MIN, 6 * MIN], 5 * MIN), "under 1 min");
  assert.equal(rangeText([4 * MIN, 6 * MIN], 6 * MIN), "Any moment now");
});

test("the page's time remaining: a range once the server sends one, estimating until it can", () => {
  // The page shows the smoothed estimate (eta.js); here it has counted down by the time since the snapshot.
  const snapshot = (over) => ({ pendingItems: 5, inProgressItems: 2, estimatedTimeRemainingMs: 300_000, ...over });
  const at = 1_000_000;
  for (const [status, over, now, text] of [
    ["running", { estimatedTimeRemainingRangeMs: [4 * MIN, 6 * MIN] }, at, "about 4–6 min"],
    ["running", { estimatedTimeRemainingRangeMs: [4 * MIN, 6 * MIN] }, at + MIN, "about 3–5 min"],
    ["running", { estimatedTimeRemainingRangeMs: null }, at, "Estimating…"], // no completion yet
    ["queued", { estimatedTimeRemainingRangeMs: null }, at, "Estimating…"],
    ["running", {}, at, "about 5m 00s"], // a server from before the range: the point estimate, as before
    ["paused", { estimatedTimeRemainingRangeMs: [4 * MIN, 6 * MIN] }, at, "Paused"],
    ["running", { pendingItems: 0, inProgressItems: 0, estimatedTimeRemainingRangeMs: [0, 0] }, at, "Finishing…"],
    ["completed", { estimatedTimeRemainingRangeMs: [0, 0] }, at, "—"],
  ]) {
    const shownMs = 300_000 - (now - at);
    assert.equal(etaText(status, snapshot(over), shownMs), text, `${status} ${JSON.stringify(over)}`);
  }
});

test("tokens and cost, and an unknown cost never shown as zero", () => {
  const used = { promptTokens: 9_000, completionTokens: 3_345, cost: 0.000459, currency: "USD" };
  assert.equal(tokensText(used), "12,345 tokens");
  assert.equal(costText(used), "$0.000459");
  assert.equal(costText({ ...used, cost: 12.345 }), "$12.35");
  assert.equal(costText({ ...used, cost: 0 }), "$0.00");
  assert.equal(costText({ ...used, cost: 0.12, currency: "EUR" }), "€0.12");
  assert.equal(costText({ ...used, cost: null }), "Unknown (no price for the model)");
  assert.match(money(1.5, "XXQ"), /^XXQ\s1\.50$/); // a code without a symbol is shown as the code
  // A server that sends none of it: nothing to show.
  assert.equal(tokensText({ totalItems: 3 }), "");
  assert.equal(costText({ totalItems: 3 }), "");
  assert.equal(tokensText(null), "");
});

test("a budget in words", () => {
  assert.equal(budgetText({ cost: 0.05, tokens: null }, "USD"), "$0.05");
  assert.equal(budgetText({ cost: null, tokens: 20_000 }, "USD"), "20,000 tokens");
  assert.equal(budgetText({ cost: 5, tokens: 1_000 }, "EUR"), "€5.00 or 1,000 tokens");
  assert.equal(budgetText(null, "USD"), "");
});

const paused = (over) => ({
  status: "paused",
  pauseReason: "user",
  config: { budget: null },
  guards: { budgetReached: true, recentAttempts: 0, recentFailures: 0, errorWindow: 20 },
  ...over,
});
const spent = { promptTokens: 800, completionTokens: 400, cost: 0.0012, currency: "USD" };

test("why a batch paused itself, and how to go on", () => {
  assert.equal(
    pauseText(paused({ pauseReason: "budget_reached", config: { budget: { cost: 0.001, tokens: null } } }), spent),
    "Paused by its budget: 1,200 tokens, $0.0012 spent of $0.001. Raise the budget, then resume; or cancel the batch.",
  );
  assert.equal(
    pauseText(paused({ pauseReason: "budget_reached", config: { budget: { cost: null, tokens: 1_000 } } }), {
      ...spent,
      cost: null,
    }),
    "Paused by its budget: 1,200 tokens spent of 1,000 tokens. Raise the budget, then resume; or cancel the batch.",
  );
  assert.equal(
    pauseText(paused({ pauseReason: "error_rate", guards: { recentFailures: 11, errorWindow: 20 } }), spent),
    "Paused by its error-rate guard: 11 of the last 20 attempts failed. Open a failed row to see why; " +
      "once the cause is fixed (or has passed, like a rate limit), resume.",
  );
  assert.equal(
    pauseText(
      paused({
        pauseReason: "budget_reached",
        config: { budget: { cost: 0.01, tokens: null } },
        guards: { budgetReached: false },
      }),
      spent,
    ),
    "Paused by its budget, since raised to $0.01: resume to go on.",
  );
  assert.equal(pauseText(paused({}), spent), ""); // by hand: the page's own notice says it
  assert.equal(pauseText({ ...paused({ pauseReason: "error_rate" }), status: "running" }, spent), "");
  assert.equal(pauseText(null, spent), "");
});

test("the form offers twice the budget, at least twice what was spent", () => {
  assert.deepEqual(raisedBudget({ cost: 0.05, tokens: null }, spent), { cost: 0.1, tokens: null });
  assert.deepEqual(raisedBudget({ cost: 0.001, tokens: null }, spent), { cost: 0.0024, tokens: null });
  assert.deepEqual(raisedBudget({ cost: null, tokens: 1_000 }, spent), { cost: null, tokens: 2_400 });
  assert.deepEqual(raisedBudget({ cost: 12.3, tokens: 5_000 }, spent), { cost: 24.6, tokens: 10_000 });
  assert.equal(raisedBudget(null, spent), null);
});

test("a reset forgets the batch and keeps what the person chose", () => {
  let state = reduce(initialState(), { type: "autoscroll", value: false });
  state = reduce(state, { type: "toggle", index: 3 });
  state = { ...state, batch: { status: "running" }, cursor: 40, batchSeq: 40 };
  const reset = reduce(state, { type: "reset" });
  assert.equal(reset.batch, null);
  assert.equal(reset.cursor, 0);
  assert.equal(reset.autoScroll, false);
  assert.deepEqual([...reset.expanded], [3]);
  // The event itself is not one of the log's: delivered to the reducer, it changes nothing.
  const event = { type: "event", name: "batch.reset", id: "41", data: { lastEventId: 41 }, at: 0 };
  assert.equal(reduce(state, event), state);
});
