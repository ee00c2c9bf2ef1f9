// The time remaining the page shows: the server's estimate, smoothed. Pure: values in, values out.
//
// The server's estimate (`estimatedTimeRemainingMs`, items left over the rate of the last 10 completions)
// jumps with every completion: at 4 items at once, 65 s, 74 s, 53 s, 77 s in four seconds of a steady run.
// Shown as is (counted down between snapshots), it went up in a third of the seconds of a steady batch.
// So the page shows a value of its own and moves it once a second (and at each redraw); with dt the time
// since the last move, α = 1 − e^(−dt/τ) and τ = ETA_SMOOTHING_MS:
//
//   trend = trend − dt + (estimate − (trend − dt)) × α    the estimate averaged over about τ, counting down
//   shown = shown − dt + (trend − (shown − dt)) × α       counts down in real time, pulled toward the trend
//   shown = min(shown, shown before)                      unless trend − (shown − dt) is over the band:
//   band  = max(ETA_RISE_MIN_MS, ETA_RISE_SHARE × (shown − dt))
//
// with τ = ETA_DROP_SMOOTHING_MS instead while the estimate is below the countdown by more than the band
// (a first estimate from the prior that was far too long: the page catches up within half a minute).
//
// So in a steady run it only goes down (a noisy estimate above it slows the countdown, or holds it), and a
// slowdown that lasts (a provider that became slow, later items that take longer) raises it, gradually. While
// the batch is paused or the page has lost its connection it is held (`holdEta`): neither counted down nor
// moved, and no jump when the stream comes back.

export const ETA_SMOOTHING_MS = 20_000;
export const ETA_DROP_SMOOTHING_MS = 5_000;
export const ETA_RISE_SHARE = 0.25;
export const ETA_RISE_MIN_MS = 30_000;

/** The remaining time to show at `now`, from the one shown before (`{ ms, trend, at }` or null) and the
 * server's estimate as of now (ms). */
export function smoothEta(shown, estimateMs, now) {
  if (!Number.isFinite(estimateMs) || estimateMs < 0) return null;
  if (!shown) return { ms: estimateMs, trend: estimateMs, at: now };
  const dt = Math.max(0, now - shown.at);
  const counted = Math.max(0, shown.ms - dt);
  const band = Math.max(ETA_RISE_MIN_MS, ETA_RISE_SHARE * counted);
  const tau = estimateMs < counted - band ? ETA_DROP_SMOOTHING_MS : ETA_SMOOTHING_MS;
  const pull = 1 - Math.exp(-dt / tau);
  const trendBefore = Math.max(0, (shown.trend ?? shown.ms) - dt);
  const trend = trendBefore + (estimateMs - trendBefore) * pull;
  const gap = trend - counted;
  let ms = counted + gap * pull;
  if (gap <= band) ms = Math.min(ms, shown.ms);
  return { ms: Math.max(0, ms), trend, at: now };
}

/** The same value, held at `now`: time that passes meanwhile is not counted down. */
export function holdEta(shown, now) {
  return shown ? { ...shown, at: now } : null;
}
