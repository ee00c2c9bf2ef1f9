// The time remaining the page shows (static/eta.js): the server's estimate smoothed, so that in a steady
// run it only goes down, while a real slowdown still shows.

import assert from "node:assert/strict";
import { test } from "node:test";

import { ETA_RISE_MIN_MS, ETA_SMOOTHING_MS, holdEta, smoothEta } from "../../src/livebatch/web/static/eta.js";

// One value a second, as page.js moves it: the shown values for these estimates (ms), from t = 0.
function play(estimates, start = null) {
  let shown = start;
  return estimates.map((estimate, second) => {
    shown = smoothEta(shown, estimate, second * 1000);
    return shown.ms;
  });
}

const rises = (values) => values.filter((value, i) => i > 0 && value > values[i - 1] + 1e-9).length;

// A seeded xorshift: the same "random" run every time.
function noise(seed) {
  let x = seed;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

test("the first estimate is shown as it is", () => {
  assert.deepEqual(smoothEta(null, 65_000, 5), { ms: 65_000, trend: 65_000, at: 5 });
  assert.equal(smoothEta(null, null, 5), null, "no estimate, nothing to show");
  assert.equal(smoothEta({ ms: 1, at: 0 }, Number.NaN, 5), null);
});

test("an estimate that agrees with the countdown is followed exactly", () => {
  const truth = Array.from({ length: 60 }, (_, second) => 120_000 - second * 1000);
  assert.deepEqual(play(truth), truth);
});

test("the issue's samples: 65 s, 74 s, 53 s, 77 s a second apart never make it go up", () => {
  const shown = play([65_000, 74_000, 53_000, 77_000]);
  assert.equal(rises(shown), 0, shown.join(", "));
  assert.ok(shown.at(-1) > 60_000 && shown.at(-1) < 65_000, "it counts down, about a second a second");
});

test("a steady run with a noisy estimate (±25%, 118 one-second samples) never goes up and stays close", () => {
  const random = noise(2026);
  const truth = Array.from({ length: 118 }, (_, second) => 150_000 - second * 1000);
  const estimates = truth.map((ms) => ms * (0.75 + random() * 0.5));
  const shown = play(estimates);
  assert.ok(rises(estimates) > 40, `the estimate itself rose ${rises(estimates)} times`);
  assert.equal(rises(shown), 0);
  for (const [second, ms] of shown.entries()) {
    assert.ok(Math.abs(ms - truth[second]) <= 0.3 * truth[second] + 2000, `t=${second}: ${ms} for ${truth[second]}`);
  }
});

test("a slowdown that lasts raises it, gradually, to the new estimate", () => {
  // 60 s left, then the provider is three times slower: 180 s, counting down from there.
  const estimates = [60_000, ...Array.from({ length: 120 }, (_, second) => 180_000 - second * 1000)];
  const shown = play(estimates);
  assert.ok(shown[10] > shown[0], "within seconds it goes up");
  assert.ok(shown[10] < 80_000, "not in one jump");
  for (const second of [100, 110, 120]) {
    const error = Math.abs(shown[second] - estimates[second]);
    assert.ok(error < 0.1 * estimates[second], `${shown[second]} vs ${estimates[second]} at ${second} s`);
  }
});

test("within the band an estimate above the countdown slows it down instead of raising it", () => {
  const shown = play([60_000, 60_000 + ETA_RISE_MIN_MS - 1000, 60_000 + ETA_RISE_MIN_MS - 2000]);
  assert.ok(shown[1] <= shown[0] && shown[2] <= shown[1]);
  assert.ok(shown[0] - shown[2] < 2000, "slower than the clock");
});

test("a lower estimate brings it down gradually, at the pace of the smoothing", () => {
  // 120 s shown, then the estimate says 30 s (and counts down from there): it was too pessimistic.
  const estimates = [120_000, ...Array.from({ length: 40 }, (_, second) => 30_000 - second * 500)];
  const shown = play(estimates);
  assert.equal(rises(shown), 0);
  assert.ok(shown[1] > 110_000, "no jump down either");
  assert.ok(shown[20] < 90_000 && shown[40] < 40_000, `${shown[20]} after 20 s, ${shown[40]} after 40 s`);
});

test("a first estimate far too long (the prior) comes down within half a minute once items complete", () => {
  // 7m 30s from the prior (15 rounds of 30 s), then the rate says about 20 s.
  const estimates = [450_000, ...Array.from({ length: 40 }, (_, second) => 20_000 - second * 300)];
  const shown = play(estimates);
  assert.equal(rises(shown), 0);
  assert.ok(shown[1] > 400_000, "not in one jump");
  assert.ok(shown[30] < 30_000, `${shown[30]} after 30 s (the estimate: ${estimates[30]})`);
  assert.ok(shown[40] < 2 * estimates[40], `${shown[40]} after 40 s (the estimate: ${estimates[40]})`);
});

test("held while paused or disconnected: no time is counted down, and it goes on from there", () => {
  const before = smoothEta(null, 90_000, 0);
  const held = holdEta(before, 26_000); // a hung server for 26 s
  assert.deepEqual(held, { ms: 90_000, trend: 90_000, at: 26_000 });
  assert.equal(holdEta(null, 5), null);
  const after = smoothEta(held, 89_000, 27_000);
  assert.ok(after.ms <= 90_000 && after.ms >= 88_000, `${after.ms}`);
  // Back with an estimate far above it (13m 38s): it climbs towards it rather than jumping there.
  const climbed = smoothEta(held, 818_000, 27_000);
  assert.ok(climbed.ms > 90_000 && climbed.ms < 150_000, `${climbed.ms}`);
});

test("it never goes below zero", () => {
  assert.equal(smoothEta({ ms: 500, at: 0 }, 0, 5_000).ms, 0);
});
