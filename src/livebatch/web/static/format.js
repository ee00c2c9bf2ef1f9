// Words and numbers for the progress page. Pure: values in, strings out (the clock is an argument).
// A batch status in words is the server's (`statusLabel` in the batch API), not this module's.

import { rangeText } from "./figures.js";

const QUESTION_TYPES = Object.freeze({ "single-best-answer": "Single best answer (SBA)" });

export function questionTypeLabel(type) {
  return QUESTION_TYPES[type] || String(type);
}

export function mixLabel(mix) {
  if (!mix) return "";
  return `Easy ${mix.easy}% · Medium ${mix.medium}% · Hard ${mix.hard}%`;
}

/** The duration of one item, in the page's one time format with a tenth under a minute: `0.3s`, `28.0s`,
 * `5m 30s`, `1h 02m 05s`. */
export function formatDuration(ms) {
  if (!Number.isFinite(ms) || ms < 0) return "";
  if (ms < 60_000) return `${(Math.floor(ms / 100) / 10).toFixed(1)}s`;
  return formatClock(ms);
}

/** The page's (and the CLI's) one time format, whole seconds, for elapsed and remaining time: `0s`, `45s`,
 * `5m 30s`, `1h 02m 05s`. */
export function formatClock(ms) {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (h > 0) return `${h}h ${String(m).padStart(2, "0")}m ${String(s).padStart(2, "0")}s`;
  if (m > 0) return `${m}m ${String(s).padStart(2, "0")}s`;
  return `${s}s`;
}

export function formatRate(perMinute) {
  if (!Number.isFinite(perMinute) || perMinute <= 0) return "—";
  return `${perMinute.toFixed(1)} items/min`;
}

/** Time the batch has run, paused time excluded (the server's active clock: `activeMs` up to
 * `runningSince`, ticking from there while it runs); fixed while paused and once it has ended. */
export function elapsedMs(batch, now) {
  if (!batch || !batch.startedAt) return null;
  if (Number.isFinite(batch.activeMs)) {
    const since = batch.runningSince ? Date.parse(batch.runningSince) : NaN;
    return batch.activeMs + (Number.isFinite(since) ? Math.max(0, now - since) : 0);
  }
  // A server from before `activeMs`: wall time from the start.
  const start = Date.parse(batch.startedAt);
  const end = batch.completedAt ? Date.parse(batch.completedAt) : now;
  return Number.isFinite(start) && Number.isFinite(end) ? Math.max(0, end - start) : null;
}

/** The ETA of the latest snapshot, counted down by the time since it arrived. */
export function remainingMs(snapshot, snapshotAt, now) {
  if (!snapshot) return 0;
  return Math.max(0, snapshot.estimatedTimeRemainingMs - Math.max(0, now - snapshotAt));
}

/** The time remaining in words; `shownMs` is the smoothed value to show (eta.js), null when there is none. */
export function etaText(status, snapshot, shownMs) {
  if (status === "paused") return "Paused";
  if (status && !["queued", "running"].includes(status)) return "—";
  if (!snapshot) return "—";
  const left = snapshot.pendingItems + snapshot.inProgressItems;
  if (left === 0) return "Finishing…";
  if (snapshot.estimatedTimeRemainingMs <= 0 || !Number.isFinite(shownMs)) return "Estimating…";
  // A server that sends the range (issue 13): "about 4–6 min", null until it can measure a spread. It is
  // drawn around the smoothed estimate (eta.js), in the proportions the server gives it, so that the range
  // moves as steadily as the single figure would.
  if ("estimatedTimeRemainingRangeMs" in snapshot) {
    const range = snapshot.estimatedTimeRemainingRangeMs;
    if (!range) return "Estimating…";
    const scale = shownMs / snapshot.estimatedTimeRemainingMs;
    return rangeText([range[0] * scale, range[1] * scale]);
  }
  return shownMs >= 1000 ? `about ${formatClock(shownMs)}` : "Any moment now";
}

/** The throughput to show: the rate of the last completions while the batch runs (frozen while paused, by
 * the server), the whole run's once it is over. */
export function rateText(batch, snapshot) {
  if (batch && batch.finished && Number.isFinite(batch.runRate)) {
    return batch.runRate > 0 ? `${formatRate(batch.runRate)} overall` : "—";
  }
  return formatRate(snapshot ? snapshot.throughputRate : 0);
}

export function shortId(id) {
  return typeof id === "string" ? id.slice(0, 8) : "";
}

/** What kind of row an entry is: its status, except a failed attempt that will be tried again, which is
 * `retrying` (the item has not failed, and the failed count does not count it). */
export function rowKind(entry) {
  return entry.status === "failed" && entry.willRetry ? "retrying" : entry.status;
}

/** What a feed row says about its item. */
export function rowText(entry) {
  switch (rowKind(entry)) {
    case "started":
      return { state: "Running…", icon: "◔", detail: "" };
    case "completed":
      return { state: "Completed", icon: "✓", detail: formatDuration(entry.durationMs) };
    case "retrying":
      return { state: "Retrying", icon: "↻", detail: entry.errorMessage || "" };
    case "failed":
      return { state: "Failed", icon: "✕", detail: entry.errorMessage || "" };
    case "queued":
      return { state: "Queued for retry", icon: "○", detail: "" };
    case "cancelled":
      return { state: "Cancelled", icon: "–", detail: "" };
    default:
      return { state: String(entry.status), icon: "", detail: "" };
  }
}

/** What the live region says of a failure: only of one for good (one that will be retried is no news). */
export function failureNews(failure) {
  if (failure.willRetry) return null;
  return `Item #${failure.itemIndex + 1} failed (no retries left): ${failure.errorMessage}`;
}

/** What the live region says when the batch's status changed (its words are the server's `statusLabel`). */
export function batchNews(before, batch, snapshot) {
  const done = snapshot ? snapshot.completedItems : 0;
  const failed = snapshot ? snapshot.failedItems : 0;
  const total = batch.totalItems;
  switch (batch.status) {
    case "paused":
      return `Batch paused: ${done} of ${total} items generated.`;
    case "running":
      if (before === "paused") return "Batch resumed.";
      return before === "queued" ? null : "Batch running again: the failed items are retried.";
    case "completed":
      return `Batch completed: all ${total} items generated.`;
    case "completed_with_errors":
      return `Batch completed with errors: ${done} of ${total} items generated, ${failed} failed.`;
    case "failed":
      return `Batch failed: ${batch.errorMessage || "no item could be generated."}`;
    case "cancelled":
      return `Batch cancelled: ${done} of ${total} items had been generated.`;
    default:
      return `Batch ${batch.statusLabel}.`;
  }
}

// Making a formatter costs more than a whole redraw of the progress page (Intl loads its data on first use;
// `toLocaleString` makes one per call): it is made once, at the first call (page.js makes that call in a
// task of its own, before the first draw).
let whenFormat = null;

/** A moment, in the reader's time zone: the one format of every page (`Feb 19, 2026, 12:00 PM`). */
export function formatWhen(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  whenFormat ??= new Intl.DateTimeFormat([], { dateStyle: "medium", timeStyle: "short" });
  return whenFormat.format(date);
}

/** The retry information of a failed row. */
export function retryText(entry) {
  const n = entry.retryCount;
  const attempts = !Number.isFinite(n) ? "its attempts" : n === 1 ? "1 attempt" : `${n} attempts`;
  if (entry.status === "queued") return "";
  if (entry.willRetry) return `After ${attempts}; it will be tried again.`;
  if (entry.stopped) return `After ${attempts}; the batch failed before it was tried again. "Retry failed" queues it again.`;
  return `Failed after ${attempts}; no retries left. "Retry failed" queues it again once the batch has ended.`;
}

/** Text for the progress bar's aria-valuetext. */
export function barText(snapshot) {
  if (!snapshot) return "No progress yet";
  const retrying = snapshot.retryingItems > 0 ? ` (${snapshot.retryingItems} retrying)` : "";
  return (
    `${snapshot.percentage}%: ${snapshot.completedItems} completed, ${snapshot.inProgressItems} running, ` +
    `${snapshot.failedItems} failed, ${snapshot.pendingItems} pending${retrying} of ${snapshot.totalItems}`
  );
}
