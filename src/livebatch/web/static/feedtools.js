// The item feed's tools (DOM only, like render.js): which rows it shows (all, failed, running), "Next
// failure", and a height that keeps the newest row on the first screen.
//
// The filter is the state's (`filter`, set through handlers.onFilter) and costs one attribute on the list:
// a CSS rule hides the other rows, so no row is redrawn or even visited, whatever the feed's length. Rows
// carry their kind as a class (render.js): a failed row is `failed` (for good) or `retrying` (an attempt
// failed, another comes); both have an error to read, so the failed filter and "Next failure" show both.

const FAILURES = "li.failed, li.retrying";
const NONE_TEXT = { failed: "No item has failed.", running: "No item is running." };
const MIN_FEED_REM = 10; // below this (4 rows), the feed is too small to read: it gets a screenful of its own instead
const MAX_FEED_REM = 40;

export function createFeedTools(root, handlers) {
  const list = root.querySelector("#feed-list");
  const scroller = root.querySelector("#feed-scroll");
  const buttons = [...root.querySelectorAll("button[data-filter]")];
  const next = root.querySelector("#next-failure");
  const none = root.querySelector('[data-field="feed-none"]');
  let filter = "all";
  let kinds = {};
  let lastJump = -1;
  let fitted = () => {};
  let holding = false; // the reader is not following the newest row
  let deferred = false; // a fit waits for them to follow again

  for (const button of buttons) button.addEventListener("click", () => handlers.onFilter(button.dataset.filter));
  next.addEventListener("click", jump);

  function render(value) {
    filter = value;
    if (list.dataset.filter !== value) list.dataset.filter = value;
    for (const button of buttons) {
      const pressed = String(button.dataset.filter === value);
      if (button.getAttribute("aria-pressed") !== pressed) button.setAttribute("aria-pressed", pressed);
    }
    showNone();
  }

  /** The number of rows of each kind, after each change of the rows. */
  function counted(byKind) {
    kinds = byKind;
    const failures = (kinds.failed || 0) + (kinds.retrying || 0);
    if (next.disabled !== (failures === 0)) next.disabled = failures === 0;
    showNone();
  }

  function showNone() {
    const shown = filter === "failed" ? (kinds.failed || 0) + (kinds.retrying || 0) : kinds.started || 0;
    const empty = filter !== "all" && shown === 0 && list.childElementCount > 0;
    if (none.hidden === empty) none.hidden = !empty;
    if (empty && none.textContent !== NONE_TEXT[filter]) none.textContent = NONE_TEXT[filter];
  }

  // The next failed row after the last one jumped to (from the top again after the last), scrolled into
  // the feed's view, opened, and focused on its Details button. Following the newest row stops.
  function jump() {
    if (filter === "running") {
      render("all"); // at once: the row must be laid out to scroll to it; the state follows
      handlers.onFilter("all");
    }
    const failures = [...list.querySelectorAll(FAILURES)];
    if (failures.length === 0) return;
    const target = failures.find((li) => Number(li.dataset.index) > lastJump) || failures[0];
    lastJump = Number(target.dataset.index);
    handlers.onJump(lastJump);
    const gap = 8;
    scroller.scrollTop += target.getBoundingClientRect().top - scroller.getBoundingClientRect().top - gap;
    scroller.scrollIntoView({ block: "nearest" });
    const details = target.querySelector("button.expand");
    if (details) details.focus({ preventScroll: true });
  }

  // The feed's box ends within the first screen when there is room for a useful feed there (a desktop
  // window: the newest row is in view without scrolling the page); otherwise (a phone) it is one screen high
  // at most, so that once scrolled to, the feed and its newest row fit.
  function fit() {
    if (holding) {
      // The reader scrolled away from the newest row: a box that grew now would shift the rows they are
      // reading (the browser clamps the scroll position). It takes its height once they follow again.
      deferred = true;
      return;
    }
    if (scroller.getClientRects().length === 0) return; // not shown yet: nothing to measure
    const rem = parseFloat(getComputedStyle(document.documentElement).fontSize) || 16;
    const top = scroller.getBoundingClientRect().top + window.scrollY;
    const room = window.innerHeight - top - 1.5 * rem;
    const height = room >= MIN_FEED_REM * rem ? Math.min(room, MAX_FEED_REM * rem) : Math.min(26 * rem, window.innerHeight - 7 * rem);
    const value = `${Math.round(Math.max(10 * rem, height))}px`;
    if (scroller.style.maxHeight === value) return;
    scroller.style.maxHeight = value;
    fitted();
  }

  // The cards above the feed change height (a notice appears, the connection line shows); so does the window.
  const resized = new ResizeObserver(() => fit());
  for (const node of root.querySelectorAll("#summary, #progress, #connection")) resized.observe(node);
  window.addEventListener("resize", fit, { passive: true });

  return {
    render,
    counted,
    fit,
    onFit(listener) {
      fitted = listener;
    },
    follow(on) {
      holding = !on;
      if (on && deferred) {
        deferred = false;
        fit();
      }
    },
  };
}
