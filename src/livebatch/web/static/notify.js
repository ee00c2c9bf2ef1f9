// Opt-in browser notifications: when the batch this page watches ends, or pauses itself (a guardrail pause, whose
// `batch.paused` carries a `reason`), a system notification names the course and gives the counts. Asked for by
// a button, never on load; the choice is kept in this browser (localStorage) for every batch page. A pause by
// a person (`reason: "user"`, or no reason from an older server) notifies nobody. The top half is pure (tested by `node --test tests/js/`).

export const STORAGE_KEY = "livebatch.notifications";

const ENDINGS = Object.freeze({
  completed: "batch completed",
  completed_with_errors: "batch completed with errors",
  failed: "batch failed",
  cancelled: "batch cancelled",
});
const REASONS = Object.freeze({
  budget_reached: "Paused itself: its budget is reached.",
  error_rate: "Paused itself: too many items are failing.",
});

/** The notification for a stream event (`id`: its SSE id), or null when the event is not one to notify. The tag
 * is the same in every tab watching the batch, so the browser shows one notification, not one per tab. */
export function notificationFor(name, data, batch, snapshot, id) {
  if (data === null || typeof data !== "object") return null;
  const course = (batch && batch.course && batch.course.title) || "Your batch";
  const batchId = data.batchId || (batch && batch.id) || "";
  if (name === "batch.complete") {
    const ending = ENDINGS[data.status] || `batch ${data.status}`;
    return {
      title: `${course}: ${ending}`,
      body: counts(data.completedItems, data.totalItems, data.failedItems),
      tag: `livebatch-${batchId}-${id}`,
    };
  }
  if (name === "batch.paused" && typeof data.reason === "string" && data.reason && data.reason !== "user") {
    const why = REASONS[data.reason] || `Paused itself (${data.reason}).`;
    const s = snapshot || {};
    return {
      title: `${course}: batch paused`,
      body: `${why} ${counts(s.completedItems, s.totalItems ?? (batch && batch.totalItems), s.failedItems)}`,
      tag: `livebatch-${batchId}-${id}`,
    };
  }
  return null;
}

function counts(completed, total, failed) {
  const done = `${Number(completed) || 0} of ${Number(total) || 0} items generated`;
  return Number(failed) > 0 ? `${done}, ${Number(failed)} failed.` : `${done}.`;
}

/** What the button shows: `support` (the Notification API exists), the browser's permission, the opt-in. */
export function buttonState(support, permission, optedIn) {
  if (!support) return { hidden: true, disabled: true, pressed: false, text: "", note: "" };
  if (permission === "denied") {
    return {
      hidden: false,
      disabled: true,
      pressed: false,
      text: "Notifications blocked",
      note: "Allow notifications for this site in the browser's settings to use them.",
    };
  }
  const on = permission === "granted" && optedIn;
  return {
    hidden: false,
    disabled: false,
    pressed: on,
    text: on ? "Notifications on" : "Notify me when a batch ends",
    note: on ? "You will be notified when a batch you watch ends or pauses itself." : "",
  };
}

// --- the browser ----------------------------------------------------------------------------------

/** `container` holds the button and its note; returns `onEvent(name, data, id, state)` for page.js. */
export function createNotifier(container, win = window) {
  const api = win.Notification;
  const button = container.querySelector("button");
  const note = container.querySelector('[data-field="notify-note"]');
  const notified = new Set();
  let optedIn = read() === "on";

  function read() {
    try {
      return win.localStorage.getItem(STORAGE_KEY);
    } catch {
      return null; // storage refused (a private window): the choice lasts as long as the page
    }
  }

  function keep(value) {
    try {
      win.localStorage.setItem(STORAGE_KEY, value);
    } catch {
      // see read()
    }
  }

  function draw() {
    const state = buttonState(Boolean(api), api ? api.permission : "denied", optedIn);
    container.hidden = state.hidden;
    if (state.hidden) return;
    button.textContent = state.text;
    button.disabled = state.disabled;
    button.setAttribute("aria-pressed", String(state.pressed));
    note.textContent = state.note;
    note.hidden = !state.note;
  }

  button.addEventListener("click", async () => {
    if (!api) return;
    if (api.permission === "granted") {
      optedIn = !optedIn;
    } else {
      // Only ever here, on the user's click: never on load.
      const answer = await api.requestPermission();
      optedIn = answer === "granted";
    }
    keep(optedIn ? "on" : "off");
    draw();
  });

  function onEvent(name, data, id, state) {
    if (!api || !optedIn || api.permission !== "granted") return;
    const key = `${name}:${id}`;
    if (notified.has(key)) return; // a replayed event notifies once
    const message = notificationFor(name, data, state.batch, state.snapshot, id);
    if (message === null) return;
    notified.add(key);
    try {
      new api(message.title, { body: message.body, tag: message.tag });
    } catch {
      // a browser that only notifies from a service worker: nothing to show here
    }
  }

  draw();
  return { onEvent };
}
