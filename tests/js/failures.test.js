// The "Failures by cause" panel's pure half (static/failures.js): what it shows for an answer of the batch API,
// which answers it takes, and the body of "Retry these". Run with `node --test tests/js/`.

import assert from "node:assert/strict";
import { test } from "node:test";

import { changesGroups, isNewer, panelOf, retryBody, samePanel } from "../../src/livebatch/web/static/failures.js";

const GROUPS = [
  {
    key: "validation-0a1b2c3d4e",
    errorKind: "validation",
    message: "Validation failed: options … are identical",
    example: "Validation failed: options B and D are identical",
    count: 3,
  },
  {
    key: "timeout-9f8e7d6c5b",
    errorKind: "timeout",
    message: "LLM provider timeout after …",
    example: "LLM provider timeout after …",
    count: 1,
  },
];
const detail = (over = {}) => ({
  lastEventId: 40,
  allowedActions: ["retry-failed"],
  failureGroups: GROUPS,
  ...over,
});

test("each group is a row with its kind in words, its count and an example when it differs", () => {
  const panel = panelOf(detail());
  assert.equal(panel.seq, 40);
  assert.equal(panel.canRetry, true);
  assert.equal(panel.summary, "4 failed items in 2 groups");
  assert.deepEqual(
    panel.rows.map((r) => [r.kindLabel, r.message, r.countText, r.example, r.retryText]),
    [
      ["Validation", "Validation failed: options … are identical", "3 items", "e.g. Validation failed: options B and D are identical", "Retry these 3"],
      ["Timeout", "LLM provider timeout after …", "1 item", "", "Retry these 1"],
    ],
  );
  assert.match(panel.rows[1].retryLabel, /^Retry these 1: the 1 item that failed with: LLM provider timeout/);
});

test("the panel is empty without groups, and offers no retry where the batch allows none", () => {
  for (const answer of [detail({ failureGroups: [] }), detail({ failureGroups: undefined }), {}]) {
    const panel = panelOf(answer);
    assert.deepEqual([panel.rows, panel.summary], [[], ""]);
  }
  assert.equal(panelOf(detail({ allowedActions: ["pause", "cancel"] })).canRetry, false);
  assert.equal(panelOf(detail({ allowedActions: undefined })).canRetry, false);
  // An unknown kind is shown as it is, not dropped.
  const odd = panelOf(detail({ failureGroups: [{ ...GROUPS[0], errorKind: "cosmic_ray" }] }));
  assert.equal(odd.rows[0].kindLabel, "cosmic_ray");
});

test("only an answer at least as new as the one shown is taken", () => {
  const shown = panelOf(detail());
  assert.equal(isNewer(null, detail()), true);
  assert.equal(isNewer(shown, detail({ lastEventId: 41 })), true);
  assert.equal(isNewer(shown, detail({ lastEventId: 40 })), true);
  assert.equal(isNewer(shown, detail({ lastEventId: 39 })), false);
});

test("a panel that shows the same is the same, whatever answer it came from", () => {
  assert.equal(samePanel(panelOf(detail()), panelOf(detail({ lastEventId: 55 }))), true);
  assert.equal(samePanel(panelOf(detail()), panelOf(detail({ allowedActions: [] }))), false);
  assert.equal(samePanel(panelOf(detail()), panelOf(detail({ failureGroups: GROUPS.slice(1) }))), false);
  assert.equal(samePanel(null, panelOf(detail())), false);
});

test("Retry these sends the group's key, and only a final failure may change the groups", () => {
  assert.deepEqual(retryBody(panelOf(detail()).rows[0]), { groups: ["validation-0a1b2c3d4e"] });
  assert.equal(changesGroups("item.failed", { willRetry: false }), true);
  assert.equal(changesGroups("item.failed", { willRetry: true }), false);
  assert.equal(changesGroups("item.completed", { willRetry: false }), false);
  assert.equal(changesGroups("item.failed", null), false);
});
