/**
 * Choosing the next token from the last position's logits, with the
 * semantics of transformers' logits processors, applied in their order:
 * repetition penalty, then (when sampling) temperature, top-k, top-p.
 *
 * The draw is documented so that a seed means the same thing everywhere:
 * the kept tokens' probabilities `exp(l - max)` (with {@linkcode detExp})
 * are summed in increasing token id order into `total`; one number `u` is
 * drawn from the {@linkcode Rng}; the token is the first, in increasing id
 * order, whose running sum exceeds `u * total`.
 * @module
 */
import { detExp } from "./det_exp.ts";
import type { Rng } from "./rng.ts";

/** Sampling parameters (already validated). */
export interface SamplingParams {
  /** > 0: divide logits by it; 0: greedy. */
  temperature: number;
  /** Keep the k most likely tokens (ties at the k-th value kept too); 0 keeps all. */
  topK: number;
  /** Keep the smallest most-likely set whose probability reaches it; 1 keeps all. */
  topP: number;
}

/**
 * transformers' `RepetitionPenaltyLogitsProcessor`: for every distinct token
 * already in the sequence (prompt included), a positive logit is divided by
 * `penalty` and a negative one multiplied by it. Modifies `logits` in place.
 *
 * @example
 * ```ts
 * import { applyRepetitionPenalty } from "./sampling.ts";
 * const logits = new Float64Array([2, -2, 1]);
 * applyRepetitionPenalty(logits, [0, 1, 0], 2); // logits is now [1, -4, 1]
 * ```
 */
export function applyRepetitionPenalty(
  logits: Float64Array,
  previous: Iterable<number>,
  penalty: number,
): void {
  if (penalty === 1) return;
  for (const id of new Set(previous)) {
    if (id < 0 || id >= logits.length) continue;
    const v = logits[id];
    logits[id] = v < 0 ? v * penalty : v / penalty;
  }
}

/**
 * The index of the largest logit; the lowest index among ties (like
 * `torch.argmax`).
 *
 * @example
 * ```ts
 * import { argmax } from "./sampling.ts";
 * argmax(new Float64Array([0.1, 3, 3, -1])); // 1
 * ```
 */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/** Marks tokens outside the top k (by value; ties at the k-th value stay) as -Infinity. */
function keepTopK(logits: Float64Array, k: number): void {
  if (k <= 0 || k >= logits.length) return;
  const sorted = Float64Array.from(logits).sort();
  const threshold = sorted[sorted.length - k];
  for (let i = 0; i < logits.length; i++) if (logits[i] < threshold) logits[i] = -Infinity;
}

/**
 * Marks tokens outside the nucleus as -Infinity: in decreasing probability
 * (ties: lower id first), a token is kept while the probability of the
 * tokens before it is below `p`; the most likely token is always kept.
 */
function keepTopP(logits: Float64Array, p: number, max: number): void {
  if (p >= 1) return;
  const ids: number[] = [];
  const probs = new Float64Array(logits.length);
  let total = 0;
  for (let i = 0; i < logits.length; i++) {
    if (logits[i] === -Infinity) continue;
    probs[i] = detExp(logits[i] - max);
    total += probs[i];
    ids.push(i);
  }
  ids.sort((a, b) => probs[b] - probs[a] || a - b);
  let before = 0;
  for (let n = 0; n < ids.length; n++) {
    if (n > 0 && before >= p * total) logits[ids[n]] = -Infinity;
    before += probs[ids[n]];
  }
}

/** The largest finite-or-not value of an array. */
function maxOf(values: Float64Array): number {
  let max = -Infinity;
  for (const v of values) if (v > max) max = v;
  return max;
}

/**
 * Chooses the next token: argmax when `temperature` is 0, else a seeded
 * draw after temperature, top-k and top-p (see the module docs for the exact
 * draw). Modifies `logits` in place.
 *
 * @example
 * ```ts
 * import { chooseToken } from "./sampling.ts";
 * import { createRng } from "./rng.ts";
 * const rng = createRng(7);
 * chooseToken(new Float64Array([1, 2, 3]), { temperature: 0, topK: 0, topP: 1 }, rng); // 2
 * chooseToken(new Float64Array([1, 2, 3]), { temperature: 0.8, topK: 2, topP: 0.9 }, rng);
 * ```
 */
export function chooseToken(logits: Float64Array, params: SamplingParams, rng: Rng): number {
  if (params.temperature === 0) return argmax(logits);
  if (params.temperature !== 1) {
    for (let i = 0; i < logits.length; i++) logits[i] /= params.temperature;
  }
  keepTopK(logits, params.topK);
  const max = maxOf(logits);
  if (!Number.isFinite(max)) return argmax(logits);
  keepTopP(logits, params.topP, max);
  let total = 0;
  const probs = new Float64Array(logits.length);
  for (let i = 0; i < logits.length; i++) {
    probs[i] = logits[i] === -Infinity ? 0 : detExp(logits[i] - max);
    total += probs[i];
  }
  const target = rng.uniform() * total;
  let running = 0;
  let last = argmax(logits);
  for (let i = 0; i < probs.length; i++) {
    if (probs[i] === 0) continue;
    running += probs[i];
    last = i;
    if (running > target) return i;
  }
  return last;
}
