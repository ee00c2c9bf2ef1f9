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

/** `340 ms`, `28.0 s`, `5m 30s`, `1h 02m`. */
export function formatDuration(ms) {
  if (!Number.isFinite(ms) || ms < 0) return "";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const seconds = Math.floor(ms / 1000);
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return h > 0 ? `${h}h ${String(m).padStart(2, "0")}m` : `${m}m ${String(s).padStart(2, "0")}s`;
}

/** Whole-second clock for elapsed and remaining time: `0s`, `45s`, `5m 30s`, `1h 02m 05s`. */
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

/** Elapsed time since the batch started: ticking while it runs, fixed once it has ended. */
export function elapsedMs(batch, now) {
  if (!batch || !batch.startedAt) return null;
  const start = Date.parse(batch.startedAt);
  const end = batch.completedAt ? Date.parse(batch.completedAt) : now;
  return Number.isFinite(start) && Number.isFinite(end) ? Math.max(0, end - start) : null;
}

/** The ETA of the latest snapshot, counted down by the time since it arrived. */
export function remainingMs(snapshot, snapshotAt, now) {
  if (!snapshot) return 0;
  return Math.max(0, snapshot.estimatedTimeRemainingMs - Math.max(0, now - snapshotAt));
}

export function etaText(status, snapshot, snapshotAt, now) {
  if (status === "paused") return "Paused";
  if (status && !["queued", "running"].includes(status)) return "—";
  if (!snapshot) return "—";
  const left = snapshot.pendingItems + snapshot.inProgressItems;
  if (left === 0) return "Finishing…";
  if (snapshot.estimatedTimeRemainingMs <= 0) return "Estimating…";
  // A server that sends the range (issue 13): "about 4–6 min", and null until it can measure a spread.
  if ("estimatedTimeRemainingRangeMs" in snapshot) {
    const range = snapshot.estimatedTimeRemainingRangeMs;
    return range ? rangeText(range, Math.max(0, now - snapshotAt)) : "Estimating…";
  }
  const ms = remainingMs(snapshot, snapshotAt, now);
  return ms > 0 ? `about ${formatClock(ms)}` : "Any moment now";
}

export function shortId(id) {
  return typeof id === "string" ? id.slice(0, 8) : "";
}

/** What a feed row says about its item. */
export function rowText(entry) {
  switch (entry.status) {
    case "started":
      return { state: "Running…", icon: "◔", detail: "" };
    case "completed":
      return { state: "Completed", icon: "✓", detail: formatDuration(entry.durationMs) };
    case "failed":
      return {
        state: entry.willRetry ? "Failed, will retry" : "Failed",
        icon: "✕",
        detail: entry.errorMessage || "",
      };
    case "cancelled":
      return { state: "Cancelled", icon: "–", detail: "" };
    default:
      return { state: String(entry.status), icon: "", detail: "" };
  }
}

/** The retry information of a failed row. */
export function retryText(entry) {
  const n = entry.retryCount;
  const attempts = !Number.isFinite(n) ? "its attempts" : n === 1 ? "1 attempt" : `${n} attempts`;
  if (entry.willRetry) return `After ${attempts}; it will be tried again.`;
  if (entry.stopped) return `After ${attempts}; the batch failed before it was tried again. "Retry failed" queues it again.`;
  return `Failed after ${attempts}; no retries left. "Retry failed" queues it again once the batch has ended.`;
}

/** Text for the progress bar's aria-valuetext. */
export function barText(snapshot) {
  if (!snapshot) return "No progress yet";
  return (
    `${snapshot.percentage}%: ${snapshot.completedItems} completed, ${snapshot.inProgressItems} running, ` +
    `${snapshot.failedItems} failed, ${snapshot.pendingItems} pending of ${snapshot.totalItems}`
  );
}
