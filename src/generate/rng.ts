/**
 * The seeded random number generator used for sampling: xoshiro128**
 * (Blackman & Vigna), its 128-bit state filled from the 32-bit seed by
 * splitmix32. Only 32-bit integer operations are used, so a seed gives the
 * same sequence on every JavaScript engine.
 *
 * Each sampled token draws exactly one number: `next() / 2**32`, in [0, 1).
 * @module
 */

/** Largest accepted seed plus one: seeds are unsigned 32-bit integers. */
export const SEED_LIMIT = 2 ** 32;

/** A source of uniform numbers in [0, 1), with its own state. */
export interface Rng {
  /** The next uniform number in [0, 1) (a multiple of 2^-32). */
  uniform(): number;
  /** The next raw 32-bit output, as an unsigned integer. */
  nextUint32(): number;
}

/** splitmix32: one step of a 32-bit Weyl sequence, then an avalanche mix. */
function splitmix32(state: { x: number }): number {
  state.x = (state.x + 0x9e3779b9) | 0;
  let z = state.x;
  z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
  z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
  return (z ^ (z >>> 15)) >>> 0;
}

/** Rotates a 32-bit integer left. */
function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/**
 * Creates the generator for a seed (an integer in [0, 2^32)).
 *
 * @example
 * ```ts
 * import { createRng } from "./rng.ts";
 * const rng = createRng(42);
 * const a = rng.uniform(); // always the same number for seed 42
 * ```
 */
export function createRng(seed: number): Rng {
  const init = { x: seed >>> 0 };
  const s = new Uint32Array(4);
  for (let i = 0; i < 4; i++) s[i] = splitmix32(init);
  if ((s[0] | s[1] | s[2] | s[3]) === 0) s[0] = 1; // xoshiro's one forbidden state
  const nextUint32 = (): number => {
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  };
  return { nextUint32, uniform: () => nextUint32() / SEED_LIMIT };
}

/**
 * A fresh seed from the platform's cryptographic generator, for sampling
 * when the caller gives no seed.
 *
 * @example
 * ```ts
 * import { createRng, randomSeed } from "./rng.ts";
 * const rng = createRng(randomSeed());
 * ```
 */
export function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}
