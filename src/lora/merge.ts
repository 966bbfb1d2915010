/**
 * Merged mode's "apply" step: compute the patched weights of a plan with the
 * LoRA kernels. Produces new tensors only; the base model is never mutated.
 * @module
 */
import type { WeightMerger } from "./merger.ts";
import { UnsupportedError } from "../errors.ts";
import type { InitializerUse } from "../onnx/weight_index.ts";
import type { LoraPatch, ReplacePatch } from "./plan.ts";

/** Read access to the weights being merged into. */
export interface BaseWeights {
  /**
   * A fresh float32 copy of the values a node input reads: the base's, or
   * those an earlier adapter already merged, so several adapters add up.
   */
  read(use: InitializerUse): Float32Array;
}

/** Read access to the adapter's tensors as float32. */
export type AdapterTensor = (key: string) => Float32Array;

/** New values for one initializer as read by one node input (rewired to a copy if the initializer is shared). */
export interface MergedWeight extends InitializerUse {
  module: string;
  values: Float32Array;
}

/** Transposes a row-major [rows, cols] matrix. */
function transpose(m: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(m.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = m[r * cols + c];
  return out;
}

/**
 * Computes the merged values of every weight and bias a plan touches.
 * Several patches on one initializer (e.g. LoRA plus a trained bias on
 * different tensors) each get their own entry.
 *
 * @example
 * ```ts
 * import { mergePatches } from "./merge.ts";
 * // const merged = await mergePatches(plan.patches, baseWeights, (k) => file.toFloat32(k), cpuMerger(await loadKernels()), { fanInFanOut: false });
 * ```
 */
export async function mergePatches(
  patches: ReadonlyArray<LoraPatch | ReplacePatch>,
  base: BaseWeights,
  adapter: AdapterTensor,
  merger: WeightMerger,
  options: { fanInFanOut: boolean; weight?: number },
): Promise<MergedWeight[]> {
  const { fanInFanOut } = options;
  const weight = options.weight ?? 1;
  const merged: MergedWeight[] = [];
  const use = (u: InitializerUse) => ({
    initializer: u.initializer,
    readerIndex: u.readerIndex,
    inputIndex: u.inputIndex,
  });
  for (const patch of patches) {
    const { target } = patch;
    if (patch.kind === "lora") {
      if (target.quantized) {
        throw new UnsupportedError(
          `cannot merge into a quantized weight (${target.nodeName}); use mode "dynamic", which adds the adapter beside it`,
          { key: patch.module },
        );
      }
      const w = base.read(use(target));
      const dims = { outFeatures: target.outFeatures, inFeatures: target.inFeatures, rank: patch.rank };
      const magnitude = patch.magnitude ? adapter(patch.magnitude) : undefined;
      await merger.mergeWeight(
        w,
        adapter(patch.a),
        adapter(patch.b),
        dims,
        patch.scale * weight,
        target.layout,
        magnitude,
      );
      merged.push({ module: patch.module, ...use(target), values: w });
      if (patch.bias && target.bias) {
        const bias = base.read(use(target.bias));
        const delta = adapter(patch.bias);
        for (let o = 0; o < bias.length; o++) bias[o] += patch.scale * weight * delta[o];
        merged.push({ module: patch.module, ...use(target.bias), values: bias });
      }
    } else if (patch.param === "weight") {
      let values = adapter(patch.key);
      const torchIsOutIn = target.kind === "linear" && !fanInFanOut;
      if (torchIsOutIn && target.layout === "in_out") values = transpose(values, target.outFeatures, target.inFeatures);
      if (!torchIsOutIn && target.layout === "out_in") {
        values = transpose(values, target.inFeatures, target.outFeatures);
      }
      merged.push({ module: patch.module, ...use(target), values });
    } else if (target.bias) {
      merged.push({ module: patch.module, ...use(target.bias), values: adapter(patch.key) });
    }
  }
  return merged;
}
