/**
 * Merged mode's "apply" step: compute the patched weights of a plan with the
 * LoRA kernels. Produces new tensors only; the base model is never mutated.
 * @module
 */
import type { LoraKernels } from "../kernels/kernels.ts";
import type { WeightLayout } from "../kernels/reference.ts";
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

/** W += s·B@A in W's layout; DoRA rescales rows to m / ||W + s·B@A||. */
function mergeWeight(patch: LoraPatch, w: Float32Array, adapter: AdapterTensor, kernels: LoraKernels, weight: number) {
  const { target, rank } = patch;
  const scale = patch.scale * weight;
  const dims = { outFeatures: target.outFeatures, inFeatures: target.inFeatures, rank };
  const layout: WeightLayout = target.layout;
  const a = adapter(patch.a);
  const b = adapter(patch.b);
  // PEFT's DoRA merge: the norm is taken of the merged weight, per output feature.
  const norms = patch.magnitude ? kernels.doraNorms(w, a, b, dims, scale, layout) : undefined;
  kernels.mergeLora(w, a, b, dims, scale, layout);
  if (norms && patch.magnitude) {
    const m = adapter(patch.magnitude);
    const factors = new Float32Array(m.length);
    for (let o = 0; o < m.length; o++) factors[o] = m[o] / norms[o];
    kernels.scaleOutputs(w, factors, dims, layout);
  }
}

/**
 * Computes the merged values of every weight and bias a plan touches.
 * Several patches on one initializer (e.g. LoRA plus a trained bias on
 * different tensors) each get their own entry.
 *
 * @example
 * ```ts
 * import { mergePatches } from "./merge.ts";
 * // const merged = mergePatches(plan.patches, baseWeights, (k) => file.toFloat32(k), await loadKernels(), { fanInFanOut: false });
 * ```
 */
export function mergePatches(
  patches: ReadonlyArray<LoraPatch | ReplacePatch>,
  base: BaseWeights,
  adapter: AdapterTensor,
  kernels: LoraKernels,
  options: { fanInFanOut: boolean; weight?: number },
): MergedWeight[] {
  const { fanInFanOut } = options;
  const weight = options.weight ?? 1;
  const merged: MergedWeight[] = [];
  const use = (u: InitializerUse) => ({ initializer: u.initializer, readerIndex: u.readerIndex, inputIndex: u.inputIndex });
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
      mergeWeight(patch, w, adapter, kernels, weight);
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
      if (!torchIsOutIn && target.layout === "out_in") values = transpose(values, target.inFeatures, target.outFeatures);
      merged.push({ module: patch.module, ...use(target), values });
    } else if (target.bias) {
      merged.push({ module: patch.module, ...use(target.bias), values: adapter(patch.key) });
    }
  }
  return merged;
}
