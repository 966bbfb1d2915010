/**
 * Rebuilding a batch's KV cache when rows join or leave: every cache tensor
 * is `[rows, heads, length, headDim]`, each row's entries right-aligned
 * (left padding, masked out by `attention_mask` zeros). A joining row is
 * left-padded with zeros to the batch's length, a leaving row is dropped,
 * and columns that are padding in every row are cut off.
 * @module
 */
import { Tensor } from "../deps/ort.ts";

/** Where one row of a rebuilt cache comes from. */
export interface PastRow {
  /** The cache tensor holding the row, `[rows, heads, length, headDim]`. */
  readonly tensor: Tensor;
  /** The row's index in it. */
  readonly row: number;
}

type Floats = Float32Array | Uint16Array;

/**
 * A `[rows.length, heads, length, headDim]` tensor whose row `i` is
 * `rows[i]`'s row, right-aligned: zeros on the left where the source is
 * shorter, its first columns dropped where it is longer (the caller drops
 * only columns its mask marks as padding).
 *
 * @example
 * ```ts
 * import { gatherPast } from "./batch_past.ts";
 * import { Tensor } from "../deps/ort.ts";
 * const a = new Tensor("float32", new Float32Array([1, 2]), [1, 1, 2, 1]);
 * const b = new Tensor("float32", new Float32Array([3, 4, 5]), [1, 1, 3, 1]);
 * gatherPast([{ tensor: a, row: 0 }, { tensor: b, row: 0 }], 3).data; // [0, 1, 2, 3, 4, 5]
 * ```
 */
export function gatherPast(rows: readonly PastRow[], length: number): Tensor {
  const [, heads, , headDim] = rows[0].tensor.dims;
  const type = rows[0].tensor.type;
  const first = rows[0].tensor.data as Floats;
  const out = new (first.constructor as new (n: number) => Floats)(rows.length * heads * length * headDim);
  const outRow = heads * length * headDim;
  rows.forEach(({ tensor, row }, i) => {
    const source = tensor.data as Floats;
    const sourceLength = tensor.dims[2];
    const keep = Math.min(sourceLength, length);
    const sourceRow = heads * sourceLength * headDim;
    for (let h = 0; h < heads; h++) {
      const from = row * sourceRow + (h * sourceLength + sourceLength - keep) * headDim;
      const to = i * outRow + (h * length + length - keep) * headDim;
      out.set(source.subarray(from, from + keep * headDim), to);
    }
  });
  return new Tensor(type as "float32", out as Float32Array, [rows.length, heads, length, headDim]);
}

/**
 * How many leading columns are padding (mask 0) in every row.
 *
 * @example
 * ```ts
 * import { commonPadding } from "./batch_past.ts";
 * commonPadding([[0, 0, 1], [0, 1, 1]]); // 1
 * ```
 */
export function commonPadding(mask: readonly (readonly number[])[]): number {
  let common = Infinity;
  for (const row of mask) {
    const first = row.indexOf(1);
    common = Math.min(common, first < 0 ? row.length : first);
  }
  return common === Infinity ? 0 : common;
}
