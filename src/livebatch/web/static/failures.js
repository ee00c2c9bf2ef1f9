// The progress page's "Failures by cause" panel: the batch API's `failureGroups` (the server groups the failed
// items by kind and by their message with what varies taken out; the page keeps no copy of those rules), each
// with its count and, when the batch allows a retry, "Retry these", which retries that group alone.
//
// The panel takes every answer of the batch API that page.js reads (after batch events) and, while items fail
// for good, reads the batch itself now and then (`?feed=0`: the batch without its feed); it keeps the newest
// answer by `lastEventId`, so a late answer never replaces a newer one. The top half is pure (tested by
// `node --test tests/js/`); `createFailuresPanel` draws, as text only.

export const KIND_LABELS = Object.freeze({
  validation: "Validation",
  truncated: "Truncated", // the kind main's openai provider gains (a token cap reached)
  timeout: "Timeout",
  rate_limited: "Rate limited",
  provider_error: "Provider error",
  auth: "Authentication",
  internal: "Internal error",
});
// At most one read of the batch for the panel in this long, however many items fail meanwhile.
export const READ_EVERY_MS = 1500;

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

/** What the panel shows for an answer of the batch API: its rows, their total, whether they may be retried. */
export function panelOf(detail) {
  const groups = Array.isArray(detail && detail.failureGroups) ? detail.failureGroups : [];
  const actions = Array.isArray(detail && detail.allowedActions) ? detail.allowedActions : [];
  const canRetry = actions.includes("retry-failed");
  const rows = groups.map((group) => ({
    key: String(group.key),
    kind: String(group.errorKind),
    kindLabel: KIND_LABELS[group.errorKind] || String(group.errorKind),
    message: String(group.message),
    example: group.example && group.example !== group.message ? `e.g. ${group.example}` : "",
    count: Number(group.count) || 0,
    countText: plural(Number(group.count) || 0, "item"),
    retryText: `Retry these ${Number(group.count) || 0}`,
    // The accessible name starts with the visible text (WCAG 2.5.3), then says which group it retries.
    retryLabel: `Retry these ${Number(group.count) || 0}: the ${plural(Number(group.count) || 0, "item")} that failed with: ${group.message}`,
  }));
  const total = rows.reduce((sum, row) => sum + row.count, 0);
  return {
    seq: Number(detail && detail.lastEventId) || 0,
    rows,
    canRetry,
    summary: rows.length ? `${plural(total, "failed item")} in ${plural(rows.length, "group")}` : "",
  };
}

/** Whether an answer is at least as new as the panel the page shows (null: none yet). */
export function isNewer(panel, detail) {
  return panel === null || (Number(detail && detail.lastEventId) || 0) >= panel.seq;
}

/** Whether a panel looks different from another (what it shows, not which answer it came from). */
export function samePanel(a, b) {
  return a !== null && b !== null && a.canRetry === b.canRetry && JSON.stringify(a.rows) === JSON.stringify(b.rows);
}

/** The body of `POST .../retry-failed` that retries this group alone. */
export function retryBody(row) {
  return { groups: [row.key] };
}

/** Whether a stream event may have changed the groups: an item failed for good. */
export function changesGroups(name, data) {
  return name === "item.failed" && data !== null && typeof data === "object" && data.willRetry === false;
}

// --- the DOM ------------------------------------------------------------------------------------

/**
 * `section` is the panel's element; `read()` resolves to an answer of the batch API (or null), `retry(body)`
 * to whether the retry was accepted. Returns `offer(detail)` (an answer page.js read) and `onEvent(name, data)`.
 */
export function createFailuresPanel(section, { read, retry }) {
  const list = section.querySelector('[data-field="failure-groups"]');
  const summary = section.querySelector('[data-field="failures-total"]');
  let shown = null;
  let timer = 0;

  section.addEventListener("click", async (event) => {
    const button = event.target instanceof Element ? event.target.closest("[data-retry-group]") : null;
    if (!button || button.disabled || shown === null) return;
    const row = shown.rows.find((r) => r.key === button.dataset.retryGroup);
    if (!row) return;
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    try {
      await retry(retryBody(row));
    } finally {
      button.removeAttribute("aria-busy");
      button.disabled = false;
    }
  });

  function offer(detail) {
    if (!detail || !isNewer(shown, detail)) return;
    const next = panelOf(detail);
    const same = samePanel(shown, next);
    shown = next;
    if (!same) draw(next);
  }

  function draw(panel) {
    section.hidden = panel.rows.length === 0;
    summary.textContent = panel.summary;
    list.replaceChildren(...panel.rows.map((row) => item(row, panel.canRetry)));
  }

  function item(row, canRetry) {
    const li = document.createElement("li");
    li.className = "failure-group";
    li.dataset.kind = row.kind;
    li.dataset.key = row.key;
    const head = document.createElement("div");
    head.className = "failure-head";
    head.append(text("span", "kind", row.kindLabel), text("span", "count", row.countText));
    li.append(head, text("p", "message", row.message));
    if (row.example) li.append(text("p", "example", row.example));
    if (canRetry) {
      const button = text("button", "button small", row.retryText);
      button.type = "button";
      button.dataset.retryGroup = row.key;
      button.setAttribute("aria-label", row.retryLabel);
      li.append(button);
    }
    return li;
  }

  function onEvent(name, data) {
    if (!changesGroups(name, data) || timer) return;
    timer = setTimeout(async () => {
      timer = 0;
      try {
        offer(await read());
      } catch {
        // unreachable for now: the page reads the batch again after its next batch event anyway
      }
    }, READ_EVERY_MS);
  }

  return { offer, onEvent };
}

function text(tag, className, words) {
  const node = document.createElement(tag);
  node.className = className;
  node.textContent = words;
  return node;
}
