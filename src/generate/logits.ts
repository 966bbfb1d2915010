/**
 * Reading the next-token scores out of a `logits` output.
 * @module
 */
import type { Tensor } from "../deps/ort.ts";
import { GenerationError } from "../errors.ts";

/** IEEE half-precision bits to a number. */
function halfToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/**
 * The scores of the last position of a `[batch, seq, vocab]` (or
 * `[batch, vocab]`) logits tensor, for batch item `item` (default 0), as a fresh
 * Float64Array the caller may modify. Accepts float32 and float16 logits.
 *
 * @example
 * ```ts
 * import { lastLogits } from "./logits.ts";
 * import { Tensor } from "../deps/ort.ts";
 * const logits = new Tensor("float32", new Float32Array([0, 1, 5, 2]), [1, 2, 2]);
 * lastLogits(logits); // Float64Array [5, 2]
 * ```
 */
export function lastLogits(logits: Tensor, item = 0): Float64Array {
  const dims = logits.dims;
  if (dims.length < 2) {
    throw new GenerationError(`expected [batch, seq, vocab] logits, got dims [${dims}]`, { key: "logits" });
  }
  if (!Number.isInteger(item) || item < 0 || item >= dims[0]) {
    throw new GenerationError(`batch item ${item} is not in the logits' ${dims[0]} rows`, { key: "logits" });
  }
  const vocab = dims[dims.length - 1];
  const rowsPerItem = dims.length === 3 ? dims[1] : 1;
  const start = (item * rowsPerItem + rowsPerItem - 1) * vocab;
  if (logits.type === "float32") {
    return Float64Array.from((logits.data as Float32Array).subarray(start, start + vocab));
  }
  if (logits.type === "float16") {
    const data = logits.data as ArrayLike<number> & { subarray(a: number, b: number): ArrayLike<number> };
    const row = data.subarray(start, start + vocab);
    const out = new Float64Array(vocab);
    const isBits = row instanceof Uint16Array;
    for (let i = 0; i < vocab; i++) out[i] = isBits ? halfToNumber(row[i]) : row[i];
    return out;
  }
  throw new GenerationError(`logits of type ${logits.type} are not supported (float32, float16)`, {
    key: "logits",
  });
}
