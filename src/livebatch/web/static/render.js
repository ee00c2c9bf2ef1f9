// The progress page's DOM: BatchSummaryCard, BatchProgressBar, BatchItemFeed. Only this module touches
// the document. It draws a state from reduce.js and changes only what changed: a feed row is created
// once and updated in place when its entry changes (entries are immutable, so identity says it), which
// keeps a 1000-item feed smooth. A long feed (a reload of a big batch) is inserted a slice per frame,
// newest first, so no frame is long and the rows in view come first: the page's first frame with the
// batch draws the cards alone (it lays the whole page out), the next FIRST_SLICE rows (more than the
// feed's box shows), each later one FEED_SLICE. render() returns true while rows are still to come. Everything from the server or the model is set as text, never markup.
// What the batch's status means (its words, whether it is over, which controls it allows) is the
// server's, as the batch API sent it; only the wording of the notice and the ETA is this page's.

import { phase } from "./reduce.js";
import {
  barText,
  elapsedMs,
  etaText,
  formatClock,
  formatWhen,
  mixLabel,
  questionTypeLabel,
  rateText,
  retryText,
  rowKind,
  rowText,
  shortId,
} from "./format.js";
import { createFeedTools } from "./feedtools.js";

const CONNECTION_TEXT = {
  connecting: "Connecting to live updates…",
  open: "Live",
  lost: "Connection lost, reconnecting…",
};
// When a control is hidden while it has the focus (Pause, once the batch is paused), the focus moves to the
// control that took its place, else to the first one shown, else to the notice that says what happened.
const FOCUS_NEXT = { pause: "resume", resume: "pause", "retry-failed": "pause", cancel: null };
const NEAR_BOTTOM_PX = 24;
export const FIRST_SLICE = 30;
export const FEED_SLICE = 100;

export function createView(root, handlers) {
  const batchId = root.dataset.batchId;
  const itemsUrl = `/faculty/generate/batch/${encodeURIComponent(batchId)}/items`;
  const field = (name) => root.querySelector(`[data-field="${name}"]`);
  const el = {
    connecting: root.querySelector("#connecting"),
    connection: root.querySelector("#connection"),
    connectionText: field("connection"),
    sections: [...root.querySelectorAll("#summary, #progress, #feed")],
    status: field("status"),
    course: field("course"),
    target: field("target"),
    type: field("type"),
    mix: field("mix"),
    started: field("started"),
    elapsed: field("elapsed"),
    throughput: field("throughput"),
    eta: field("eta"),
    notice: field("notice"),
    itemsLink: field("items-link"),
    actionError: field("action-error"),
    buttons: Object.fromEntries([...root.querySelectorAll("[data-action]")].map((b) => [b.dataset.action, b])),
    percentage: field("percentage"),
    bar: root.querySelector('[role="progressbar"]'),
    segments: Object.fromEntries([...root.querySelectorAll("[data-segment]")].map((s) => [s.dataset.segment, s])),
    counts: Object.fromEntries([...root.querySelectorAll("[data-count]")].map((c) => [c.dataset.count, c])),
    feedScroll: root.querySelector("#feed-scroll"),
    feedList: root.querySelector("#feed-list"),
    feedEmpty: field("feed-empty"),
    autoScroll: root.querySelector("#autoscroll"),
    announcer: root.querySelector("#announcer"),
  };

  const tools = createFeedTools(root, {
    onFilter: handlers.onFilter,
    onJump: (index) => {
      handlers.onAutoScroll(false); // the user looks at a failure: new rows must not pull the view away
      handlers.onExpand(index);
    },
  });
  const rows = new Map(); // itemIndex -> { li, parts, entry, expanded }
  let drawnItems = null;
  let drawnExpanded = null;
  let announcedId = 0;
  let lastTop = 0;
  let following = true;

  root.addEventListener("click", (event) => {
    const target = event.target instanceof Element ? event.target : null;
    const action = target && target.closest("[data-action]");
    if (action) return handlers.onAction(action.dataset.action);
    const expand = target && target.closest("button.expand");
    if (expand) return handlers.onToggle(Number(expand.closest("li").dataset.index));
    if (target && target.closest("#autoscroll")) return handlers.onAutoScroll(!following);
  });
  // Scrolling up (wheel, keys, scrollbar) stops following; our own scrolls only ever go down.
  el.feedScroll.addEventListener(
    "scroll",
    () => {
      const top = el.feedScroll.scrollTop;
      if (following && top < lastTop - 1 && !nearBottom()) handlers.onAutoScroll(false);
      lastTop = top;
    },
    { passive: true },
  );

  function nearBottom() {
    const s = el.feedScroll;
    return s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_BOTTOM_PX;
  }

  function render(state, now, eta) {
    root.dataset.phase = phase(state);
    root.dataset.connection = state.connection;
    el.connecting.hidden = state.batch !== null;
    if (state.batch === null) return false;
    const first = el.sections[0].hidden;
    for (const section of el.sections) section.hidden = false;
    renderConnection(state);
    renderSummary(state, now, eta);
    renderBar(state.snapshot);
    renderAnnouncement(state);
    if (first) {
      // The page's first layout with the batch in it, alone in its frame: the feed's rows come from the
      // next frame on, into a box as high as the cards above it leave room for.
      show(el.feedEmpty, state.items.size === 0);
      tools.fit();
      return true;
    }
    return renderFeed(state);
  }

  /** Elapsed time and the time remaining (`eta`: eta.js's value to show), every second. */
  function tick(state, now, eta) {
    if (state.batch === null) return;
    const elapsed = elapsedMs(state.batch, now);
    text(el.elapsed, elapsed === null ? "Not started" : formatClock(elapsed));
    text(el.eta, etaText(state.batch.status, state.snapshot, eta ? eta.ms : null));
  }

  function renderConnection(state) {
    const words = CONNECTION_TEXT[state.connection];
    el.connection.hidden = !words || (state.batch.finished && state.connection !== "lost");
    if (words) text(el.connectionText, words);
  }

  function renderSummary(state, now, eta) {
    const { batch, snapshot } = state;
    text(el.status, batch.statusLabel);
    setAttr(el.status, "data-status", batch.status);
    renderCourse(batch.course || {});
    text(el.target, `${batch.totalItems} items`);
    text(el.type, questionTypeLabel(batch.config && batch.config.questionType));
    text(el.mix, mixLabel(batch.config && batch.config.difficultyDistribution));
    text(el.started, batch.startedAt ? formatWhen(batch.startedAt) : "Not yet");
    text(el.throughput, rateText(batch, snapshot));
    tick(state, now, eta);

    const focused = document.activeElement;
    for (const [action, button] of Object.entries(el.buttons)) show(button, batch.allowedActions.includes(action));
    show(el.itemsLink, batch.finished && Boolean(snapshot && snapshot.completedItems > 0));
    renderNotice(batch, snapshot);
    keepFocus(focused);
  }

  // "Title (CODE)", the code kept on one line: a course code breaks at its hyphen otherwise (CVP-⏎301).
  function renderCourse(course) {
    const words = course.code ? `${course.title} (${course.code})` : course.title || "";
    if (el.course.textContent === words) return;
    if (!course.code) return text(el.course, words);
    el.course.replaceChildren(`${course.title} (`, span("code", course.code), ")");
  }

  function keepFocus(focused) {
    const action = focused instanceof HTMLElement ? focused.dataset.action : undefined;
    if (!action || el.buttons[action] !== focused || !focused.hidden) return;
    const visible = (name) => name && el.buttons[name] && !el.buttons[name].hidden;
    const next = visible(FOCUS_NEXT[action])
      ? el.buttons[FOCUS_NEXT[action]]
      : Object.values(el.buttons).find((button) => !button.hidden);
    if (next) return next.focus();
    el.notice.tabIndex = -1;
    el.notice.focus();
  }

  function renderNotice(batch, snapshot) {
    const { status } = batch;
    const total = batch.totalItems;
    const done = snapshot ? snapshot.completedItems : 0;
    const failed = snapshot ? snapshot.failedItems : 0;
    let words = "";
    let tone = "";
    if (status === "failed") {
      words = `${batch.errorMessage || "The batch failed."} Fix the cause, then retry the failed items.`;
      tone = "error";
    } else if (status === "completed_with_errors") {
      words = `${done} of ${total} items generated; ${failed} failed. Open a failed row to see why, or retry them.`;
      tone = "error";
    } else if (status === "completed") {
      words = `All ${total} items generated.`;
      tone = "success";
    } else if (status === "cancelled") {
      words = `Cancelled. ${done} of ${total} items had been generated.`;
    } else if (status === "paused") {
      words = "Paused: no new item starts until you resume. Items already running finish.";
    }
    show(el.notice, words !== "");
    text(el.notice, words);
    el.notice.className = tone ? `notice ${tone}` : "notice";
  }

  function renderBar(snapshot) {
    const s = snapshot || { totalItems: 0, completedItems: 0, inProgressItems: 0, failedItems: 0, pendingItems: 0, percentage: 0 };
    const total = Math.max(1, s.totalItems);
    const widths = {
      completed: s.completedItems,
      "in-progress": s.inProgressItems,
      failed: s.failedItems,
      pending: s.pendingItems,
    };
    for (const [name, count] of Object.entries(widths)) {
      const width = `${(count * 100) / total}%`;
      if (el.segments[name].style.width !== width) el.segments[name].style.width = width;
      text(el.counts[name], String(count));
    }
    // A part of the pending ones: items whose attempt failed and that will be tried again (the server's figure).
    const retrying = s.retryingItems || 0;
    text(el.counts.retrying, String(retrying));
    show(el.counts.retrying.closest("li"), retrying > 0);
    text(el.percentage, String(s.percentage));
    setAttr(el.bar, "aria-valuenow", String(s.percentage));
    setAttr(el.bar, "aria-valuetext", barText(snapshot));
  }

  function renderFeed(state) {
    const resumed = state.autoScroll && !following; // pressed again: jump to the newest row at once
    following = state.autoScroll;
    tools.follow(following);
    setAttr(el.autoScroll, "aria-pressed", String(state.autoScroll));
    text(el.autoScroll.querySelector(".icon"), state.autoScroll ? "‖" : "▶");
    tools.render(state.filter);
    if (state.items === drawnItems && state.expanded === drawnExpanded) {
      if (resumed) scrollToNewest();
      return false;
    }
    let touched = resumed;
    for (const [index, row] of rows) {
      if (!state.items.has(index)) {
        row.li.remove();
        rows.delete(index);
      }
    }
    const fresh = [];
    const kinds = {};
    for (const [index, entry] of state.items) {
      const kind = rowKind(entry);
      kinds[kind] = (kinds[kind] || 0) + 1;
      const expanded = state.expanded.has(index);
      const row = rows.get(index);
      if (row === undefined) {
        fresh.push(entry);
      } else if (row.entry !== entry || row.expanded !== expanded) {
        fill(row, entry, expanded);
        touched = true;
      }
    }
    const slice = rows.size === 0 ? FIRST_SLICE : FEED_SLICE;
    const more = fresh.length > slice;
    if (fresh.length) {
      fresh.sort((a, b) => a.itemIndex - b.itemIndex);
      insertRows(more ? fresh.slice(-slice) : fresh, state.expanded);
      touched = true;
    }
    // With rows still to come, the next call diffs again (and inserts the next older slice).
    drawnItems = more ? null : state.items;
    drawnExpanded = state.expanded;
    show(el.feedEmpty, rows.size === 0);
    tools.counted(kinds);
    if (touched && following) scrollToNewest();
    lastTop = el.feedScroll.scrollTop;
    return more;
  }

  // New rows (in index order) go to their place by item index, merged into the list in one pass; they
  // nearly always belong at the end, or, for the older slices of a long feed, at the start.
  function insertRows(entries, expanded) {
    const list = el.feedList;
    const last = list.lastElementChild;
    // Rows past the last one (a feed that grows) are appended without walking the list.
    let next = last === null || Number(last.dataset.index) < entries[0].itemIndex ? null : list.firstElementChild;
    const run = document.createDocumentFragment(); // consecutive new rows that go before `next`
    for (const entry of entries) {
      while (next !== null && Number(next.dataset.index) < entry.itemIndex) {
        if (run.firstChild) list.insertBefore(run, next); // empties the fragment
        next = next.nextElementSibling;
      }
      const row = createRow(entry, expanded.has(entry.itemIndex));
      rows.set(entry.itemIndex, row);
      run.appendChild(row.li);
    }
    list.insertBefore(run, next);
  }

  function createRow(entry, expanded) {
    const li = document.createElement("li");
    li.dataset.index = String(entry.itemIndex);
    const index = span("index", `#${entry.itemIndex + 1}`);
    const state = span("state");
    const icon = span("icon");
    icon.setAttribute("aria-hidden", "true");
    const stateText = span("state-text");
    state.append(icon, stateText);
    const detail = span("detail");
    const end = span("end");
    const link = document.createElement("a");
    link.className = "gen";
    // Its name is its text ("Generated item #3: 433f076a"), the arrow only drawn: no aria-label that would
    // differ from what a speech-input user reads on screen.
    const linkName = span("sr-only");
    const arrow = span("", "→ ");
    arrow.setAttribute("aria-hidden", "true");
    const linkId = span("");
    link.append(linkName, arrow, linkId);
    const expand = document.createElement("button");
    expand.type = "button";
    expand.className = "expand";
    expand.setAttribute("aria-controls", `error-${entry.itemIndex}`);
    expand.setAttribute("aria-label", `Details of item #${entry.itemIndex + 1}`);
    const chevron = span("chevron", "▾");
    chevron.setAttribute("aria-hidden", "true");
    expand.append("Details ", chevron);
    end.append(link, expand);
    const error = document.createElement("div");
    error.className = "error-detail";
    error.id = `error-${entry.itemIndex}`;
    const message = document.createElement("p");
    message.className = "message";
    const retry = document.createElement("p");
    retry.className = "retry";
    error.append(message, retry);
    li.append(index, state, detail, end, error);
    const parts = { icon, stateText, detail, link, linkName, linkId, expand, error, message, retry };
    const row = { li, parts, entry: null, expanded: null };
    fill(row, entry, expanded);
    return row;
  }

  function fill(row, entry, expanded) {
    const { li, parts } = row;
    const words = rowText(entry);
    // Alternate by item index, not :nth-child: a row inserted mid-list would restyle every row after it.
    // The class is the row's kind (a failed attempt that will be retried is `retrying`, not `failed`).
    const kind = rowKind(entry);
    li.className = entry.itemIndex % 2 ? `row even ${kind}` : `row ${kind}`;
    li.dataset.status = entry.status;
    text(parts.icon, words.icon);
    text(parts.stateText, words.state);
    text(parts.detail, words.detail);
    const completed = entry.status === "completed" && Boolean(entry.generationId);
    show(parts.link, completed);
    if (completed) {
      const href = `${itemsUrl}?cursor=${entry.itemIndex - 1}#item-${entry.itemIndex}`;
      setAttr(parts.link, "href", href);
      text(parts.linkName, `Generated item #${entry.itemIndex + 1}: `);
      text(parts.linkId, shortId(entry.generationId));
    }
    const failed = entry.status === "failed"; // for good or not: it has an error to read
    show(parts.expand, failed);
    const open = failed && expanded;
    setAttr(parts.expand, "aria-expanded", String(open));
    show(parts.error, open);
    if (failed) {
      text(parts.message, `Error: ${entry.errorMessage || "unknown"}`);
      text(parts.retry, retryText(entry));
    }
    row.entry = entry;
    row.expanded = expanded;
  }

  // Whether the user follows the newest row; the feed tools scroll to it when its height changes.
  tools.onFit(() => {
    if (following) scrollToNewest();
  });

  function scrollToNewest() {
    const s = el.feedScroll;
    const bottom = s.scrollHeight - s.clientHeight;
    if (bottom - s.scrollTop > 1) s.scrollTop = bottom;
  }

  // The news not said yet, at once (several failures may come within one frame).
  function renderAnnouncement(state) {
    const fresh = state.news.filter((piece) => piece.id > announcedId);
    if (fresh.length === 0) return;
    announcedId = fresh[fresh.length - 1].id;
    text(el.announcer, fresh.map((piece) => piece.text).join(" "));
  }

  return {
    render,
    tick,
    // Busy, not disabled: a disabled button loses the focus, and the focus must stay on the control.
    setBusy(action, busy) {
      const button = el.buttons[action];
      if (!button) return;
      setAttr(button, "aria-disabled", String(busy));
      setAttr(button, "aria-busy", String(busy));
    },
    isBusy(action) {
      const button = el.buttons[action];
      return Boolean(button) && button.getAttribute("aria-busy") === "true";
    },
    showActionError(message) {
      show(el.actionError, Boolean(message));
      text(el.actionError, message || "");
    },
    showProblem(message) {
      el.connecting.hidden = false;
      el.connecting.replaceChildren(span("", message));
      el.connecting.classList.add("problem");
    },
  };
}

function span(className, words) {
  const node = document.createElement("span");
  if (className) node.className = className;
  if (words !== undefined) node.textContent = words;
  return node;
}

function text(node, words) {
  if (node && node.textContent !== words) node.textContent = words;
}

function setAttr(node, name, value) {
  if (node.getAttribute(name) !== value) node.setAttribute(name, value);
}

function show(node, visible) {
  if (node && node.hidden === visible) node.hidden = !visible;
}
