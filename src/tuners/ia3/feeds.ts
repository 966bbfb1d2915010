/**
 * Feeds of the scale sites (`onnx/scale_branches.ts`): per row, the product
 * of the scales of the row's active adapters (PEFT's IA³ forward multiplies
 * the `ia3_l` of every active adapter), ones where none scales the module.
 * @module
 */
import { Tensor } from "../../deps/ort.ts";
import { AdapterMismatchError, UnsupportedError } from "../../errors.ts";
import { f32ToF16 } from "../../numeric/float16.ts";
import type { ScalePatch } from "../../lora/plan.ts";
import { type ScaleSite, scaleSiteKey } from "../../onnx/scale_branches.ts";

/**
 * One active adapter's scales by site key ({@linkcode adapterScales}), and its weight.
 *
 * @example
 * ```ts
 * import type { ScaleRowAdapter } from "./feeds.ts";
 * const none: ScaleRowAdapter = { scales: new Map() };
 * ```
 */
export interface ScaleRowAdapter {
  scales: ReadonlyMap<string, Float32Array>;
  /** PEFT's adapter weight; scales run only at 1. */
  weight?: number;
}

/**
 * An adapter's scale vectors by site key, read once at load.
 *
 * @example
 * ```ts
 * import { adapterScales } from "./feeds.ts";
 * adapterScales([], () => new Float32Array()).size; // 0
 * ```
 */
export function adapterScales(
  scales: readonly ScalePatch[],
  tensor: (key: string) => Float32Array,
): Map<string, Float32Array> {
  return new Map(scales.map((s) => [scaleSiteKey(s.target.module, s.input), tensor(s.key)]));
}

/**
 * Feeds of every scale site for a batch whose row `i` runs `rows[i]` (a
 * single row when every row runs the same set: the inputs then broadcast).
 *
 * @throws {UnsupportedError} for a weighted adapter with scales.
 * @throws {AdapterMismatchError} for a scale whose site the graph lacks, or of the wrong length.
 * @example
 * ```ts
 * import { scaleFeeds } from "./feeds.ts";
 * scaleFeeds(new Map(), [[]]); // {}
 * ```
 */
export function scaleFeeds(
  sites: ReadonlyMap<string, ScaleSite>,
  rows: readonly (readonly ScaleRowAdapter[])[],
): Record<string, Tensor> {
  for (const row of rows) {
    for (const a of row) {
      if (a.scales.size > 0 && (a.weight ?? 1) !== 1) {
        throw new UnsupportedError("an adapter that scales channels (IA3) cannot be weighted");
      }
      for (const [key, values] of a.scales) {
        const site = sites.get(key);
        if (!site) throw new AdapterMismatchError("the dynamic graph has no scale site for this module", { key });
        if (values.length !== site.features) {
          throw new AdapterMismatchError(`the scale has ${values.length} values, the module ${site.features}`, { key });
        }
      }
    }
  }
  const feeds: Record<string, Tensor> = {};
  for (const [key, site] of sites) {
    const N = site.features;
    const data = new Float32Array(rows.length * N).fill(1);
    rows.forEach((row, i) => {
      for (const a of row) {
        const s = a.scales.get(key);
        if (s) { for (let o = 0; o < N; o++) data[i * N + o] *= s[o]; }
      }
    });
    const dims = [rows.length, 1, N];
    feeds[site.scale] = site.elementType === "float16"
      ? new Tensor("float16", f32ToF16(data), dims)
      : new Tensor("float32", data, dims);
  }
  return feeds;
}
