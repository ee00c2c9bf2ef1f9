// Words for what issue 13 adds to the progress page: the ETA as a range, what the batch used and what it
// cost, and why it paused itself. Pure: values in, strings out (the clock and the locale are arguments).
// A field the server does not send (an older server) gives "" or null, and the page shows what it did before.

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

const unit = (ms) => (ms < MINUTE ? ["s", SECOND] : ms < HOUR ? ["min", MINUTE] : ["h", HOUR]);

/** The range's bounds in one unit: `20–40 s`, `4–6 min`, `1–3 h`; mixed when they straddle one: `40 s–2 min`. */
function span(lowMs, highMs) {
  const [lowUnit, lowSize] = unit(lowMs);
  const [highUnit, highSize] = unit(highMs);
  const low = Math.max(lowUnit === "s" ? 1 : 0, Math.floor(lowMs / lowSize));
  const high = Math.max(1, Math.ceil(highMs / highSize));
  if (lowUnit === highUnit) return low >= high ? `${high} ${highUnit}` : `${low}–${high} ${highUnit}`;
  return `${low} ${lowUnit}–${high} ${highUnit}`;
}

/**
 * The ETA's range as the page shows it, counted down by `elapsedMs` since its snapshot arrived:
 * `about 4–6 min`; "Any moment now" once even its upper bound has passed.
 */
export function rangeText(range, elapsedMs = 0) {
  const low = Math.max(0, range[0] - elapsedMs);
  const high = range[1] - elapsedMs;
  if (high <= 0) return "Any moment now";
  if (low < SECOND) {
    // The low bound has passed: only the high one still says something.
    const [name, size] = unit(high);
    return `under ${Math.max(1, Math.ceil(high / size))} ${name}`;
  }
  return `about ${span(low, high)}`;
}

/** `12,345 tokens`, or "" from a server that does not count them. */
export function tokensText(snapshot, locale = "en") {
  if (!snapshot || typeof snapshot.promptTokens !== "number") return "";
  const total = snapshot.promptTokens + snapshot.completionTokens;
  return `${total.toLocaleString(locale)} ${total === 1 ? "token" : "tokens"}`;
}

/** A cost in its currency: `$0.000459`, `$12.35`, `€0.12`. */
export function money(amount, currency, locale = "en") {
  const digits = amount >= 1 || amount === 0 ? { minimumFractionDigits: 2, maximumFractionDigits: 2 } : { maximumSignificantDigits: 3 };
  try {
    return new Intl.NumberFormat(locale, { style: "currency", currency, ...digits }).format(amount);
  } catch {
    return `${amount} ${currency}`; // a currency code Intl does not know
  }
}

/** The batch's cost so far; "Unknown" when some attempt's model has no price (never $0.00); "" when not sent. */
export function costText(snapshot, locale = "en") {
  if (!snapshot || !("cost" in snapshot)) return "";
  if (snapshot.cost === null) return "Unknown (no price for the model)";
  return money(snapshot.cost, snapshot.currency || "USD", locale);
}

/** A budget in words: `$0.05`, `20,000 tokens`, or both. */
export function budgetText(budget, currency, locale = "en") {
  if (!budget) return "";
  const caps = [];
  if (typeof budget.cost === "number") caps.push(money(budget.cost, currency || "USD", locale));
  if (typeof budget.tokens === "number") caps.push(`${budget.tokens.toLocaleString(locale)} tokens`);
  return caps.join(" or ");
}

/**
 * Why a batch paused itself, and how to go on; "" for a pause by hand (the page's notice says it) or a batch
 * that is not paused. `batch` is the page's (reduce.js `batchOf`), `snapshot` the latest progress.
 */
export function pauseText(batch, snapshot, locale = "en") {
  if (!batch || batch.status !== "paused") return "";
  if (batch.pauseReason === "budget_reached") {
    const budget = budgetText(batch.config && batch.config.budget, snapshot && snapshot.currency, locale);
    if (batch.guards && batch.guards.budgetReached === false) {
      return `Paused by its budget, since raised to ${budget || "no cap"}: resume to go on.`;
    }
    const spent = [tokensText(snapshot, locale), snapshot && snapshot.cost !== null ? costText(snapshot, locale) : ""]
      .filter(Boolean)
      .join(", ");
    return (
      `Paused by its budget: ${spent || "it"} spent of ${budget || "its budget"}. ` +
      "Raise the budget, then resume; or cancel the batch."
    );
  }
  if (batch.pauseReason === "error_rate") {
    const guards = batch.guards || {};
    const failed = typeof guards.recentFailures === "number" ? guards.recentFailures : "most";
    const window = guards.errorWindow || 20;
    return (
      `Paused by its error-rate guard: ${failed} of the last ${window} attempts failed. ` +
      "Open a failed row to see why; once the cause is fixed (or has passed, like a rate limit), resume."
    );
  }
  return "";
}

/** The budget the form offers to raise to: twice each cap that is set (what was spent, at least). */
export function raisedBudget(budget, snapshot) {
  if (!budget) return null;
  const tokens = snapshot ? snapshot.promptTokens + snapshot.completionTokens : 0;
  const cost = snapshot && typeof snapshot.cost === "number" ? snapshot.cost : 0;
  return {
    cost: typeof budget.cost === "number" ? roundUp(Math.max(budget.cost, cost) * 2) : null,
    tokens: typeof budget.tokens === "number" ? Math.max(budget.tokens, tokens) * 2 : null,
  };
}

function roundUp(amount) {
  const scale = 10 ** Math.max(0, 2 - Math.floor(Math.log10(amount)));
  return Math.ceil(amount * scale) / scale;
}
