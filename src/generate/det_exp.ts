/**
 * A deterministic `exp`: built from IEEE-754 additions, multiplications and
 * `Math.round` only, which every engine computes identically. `Math.exp` is
 * allowed to differ in the last bit between engines (V8 and JavaScriptCore
 * do), which could change a sampled token; softmax uses this one instead.
 * @module
 */

const LN2_HI = 6.93147180369123816490e-01; // ln 2, high bits (exact product with small k)
const LN2_LO = 1.90821492927058770002e-10; // ln 2 - LN2_HI
const INV_LN2 = 1.44269504088896338700e+00;

/** 1/n! for n = 0..13, the Taylor coefficients of e^r. */
const FACTORIAL_INVERSES: readonly number[] = (() => {
  const out = [1];
  let f = 1;
  for (let n = 1; n <= 13; n++) {
    f *= n;
    out.push(1 / f);
  }
  return out;
})();

/** 2^n for every integer n in [-1022, 1023], built from the bits once (index n + 1022). */
const POW2: Float64Array = (() => {
  const table = new Float64Array(2046);
  const view = new DataView(new ArrayBuffer(8));
  for (let n = -1022; n <= 1023; n++) {
    view.setUint32(0, (n + 1023) * 2 ** 20);
    table[n + 1022] = view.getFloat64(0);
  }
  return table;
})();

/** 2^n for an integer n in [-1022, 1023]. */
function pow2(n: number): number {
  return POW2[n + 1022];
}

/**
 * e^x, to within a few ulps, identical on every engine.
 *
 * @example
 * ```ts
 * import { detExp } from "./det_exp.ts";
 * detExp(0);         // 1
 * detExp(-Infinity); // 0
 * ```
 */
export function detExp(x: number): number {
  if (Number.isNaN(x)) return NaN;
  if (x > 709.78) return Infinity;
  if (x < -745.2) return 0;
  // x = k ln2 + r with |r| <= ln2 / 2, then e^x = 2^k e^r.
  const k = Math.round(x * INV_LN2);
  const r = (x - k * LN2_HI) - k * LN2_LO;
  // Taylor series of e^r to r^14/14!; the remainder is below 2^-60 for |r| <= 0.35.
  let p = 1 / 87178291200;
  for (let n = 13; n >= 1; n--) p = p * r + FACTORIAL_INVERSES[n];
  p = p * r + 1;
  if (k > 1023) return p * pow2(1023) * pow2(k - 1023);
  if (k < -1022) return p * pow2(k + 600) * pow2(-600);
  return p * pow2(k);
}
