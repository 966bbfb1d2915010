/**
 * Merged mode's "apply" step: the merged values of every weight a plan
 * touches, computed with a {@linkcode WeightMerger} (the CPU kernels, or WGSL
 * on a WebGPU device). Produces new tensors only; the base is never mutated.
 * @module
 */
import { UnsupportedError } from "../errors.ts";
import type { LoraKernels } from "../kernels/kernels.ts";
import type { LoraDims, WeightLayout } from "../kernels/types.ts";
import type { InitializerUse } from "../onnx/weight_index.ts";
import type { WeightTarget } from "../onnx/weight_target.ts";
import { f16BitsToF32, f32ToF16Bits } from "../numeric/mod.ts";
import type { LoraPatch, ReplacePatch, TokensPatch } from "./plan.ts";
import type { AdapterTensorReader, BaseWeightReader } from "./readers.ts";
import { doraNormsReference } from "../kernels/reference.ts";

/** Merges `W += s·B@A` (then DoRA's rescale when `magnitude` is given) in place. */
export interface WeightMerger {
  /** Which kernels do the work (`"wasm-simd"`, `"js"` or `"webgpu"`). */
  readonly backend: string;
  mergeWeight(
    w: Float32Array,
    a: Float32Array,
    b: Float32Array,
    dims: LoraDims,
    scale: number,
    layout: WeightLayout,
    magnitude?: Float32Array,
  ): Promise<void>;
}

/**
 * A merger on the CPU kernels. DoRA follows PEFT's merge: the norm is taken
 * of the merged weight, per output feature, and each output is scaled by
 * `m / norm`.
 *
 * @example
 * ```ts
 * import { cpuMerger } from "./merge.ts";
 * import { loadKernels } from "../kernels/kernels.ts";
 * const merger = cpuMerger(await loadKernels());
 * const w = new Float32Array([1, 2, 3, 4, 5, 6]);
 * await merger.mergeWeight(w, new Float32Array([1, 1, 1]), new Float32Array([1, -1]), { outFeatures: 2, inFeatures: 3, rank: 1 }, 1, "out_in");
 * ```
 */
export function cpuMerger(kernels: LoraKernels): WeightMerger {
  return {
    backend: kernels.backend,
    mergeWeight(w, a, b, dims, scale, layout, magnitude) {
      const norms = magnitude ? kernels.doraNorms(w, a, b, dims, scale, layout) : undefined;
      kernels.mergeLora(w, a, b, dims, scale, layout);
      if (norms && magnitude) {
        const factors = new Float32Array(magnitude.length);
        for (let o = 0; o < magnitude.length; o++) factors[o] = magnitude[o] / norms[o];
        kernels.scaleOutputs(w, factors, dims, layout);
      }
      return Promise.resolve();
    },
  };
}

/** New values for one initializer as read by one node input (rewired to a copy if the initializer is shared). */
export interface MergedWeight extends InitializerUse {
  module: string;
  values: Float32Array;
  /** The values are for every reader of the initializer (a 3-D expert stack, `WeightTarget.experts`). */
  allReaders?: boolean;
  /** Set when the values are the float weight of this quantized target, to be re-quantized in its format. */
  quantized?: WeightTarget;
}

/**
 * A bias for a layer that has none in the export (`lora_B.bias` on a
 * bias-less Linear, a trained bias where the exporter dropped a zero one),
 * added to node `nodeName` (or `readerIndex`).
 */
export interface NewBias {
  module: string;
  readerIndex: number;
  /** The node computing the layer (the weight's reader may be a Transpose or Cast before it). */
  nodeName?: string;
  /** The layer's float weight initializer, or a quantized one's scales (the bias is stored in its element type). */
  like: string;
  values: Float32Array;
  /** The values replace the layer's bias (a trained bias) rather than add to it (`lora_B.bias`). */
  replaces?: boolean;
}

/** Transposes a row-major [rows, cols] matrix. */
function transpose(m: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(m.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = m[r * cols + c];
  return out;
}

/**
 * A full weight as PyTorch stores it (Linear `[out, in]`; Conv1D /
 * `fan_in_fan_out` and Embedding `[in, out]`) in the layout of the ONNX target.
 *
 * @example
 * ```ts
 * import { torchWeightToTarget } from "./merge.ts";
 * // torchWeightToTarget(adapter.weights.toFloat32(key), target, config.fanInFanOut)
 * ```
 */
export function torchWeightToTarget(
  values: Float32Array,
  target: WeightTarget,
  fanInFanOut: boolean,
): Float32Array {
  const torchIsOutIn = target.kind === "linear" && !fanInFanOut;
  if (torchIsOutIn && target.layout === "in_out") return transpose(values, target.outFeatures, target.inFeatures);
  if (!torchIsOutIn && target.layout === "out_in") return transpose(values, target.inFeatures, target.outFeatures);
  return values;
}

/**
 * Whether a saved full weight (PEFT saves an embedding LoRA's
 * `base_layer.weight`) holds the base's own values, at the precision the
 * base stores them in: bit-equal in float32, or equal once rounded to
 * float16 when every base value is a float16 value (an fp16 export).
 *
 * @example
 * ```ts
 * import { sameWeightValues } from "./merge.ts";
 * sameWeightValues(new Float32Array([0.1]), new Float32Array([0.1])); // true
 * ```
 */
export function sameWeightValues(saved: Float32Array, base: Float32Array): boolean {
  if (saved.length !== base.length) return false;
  if (saved.every((v, i) => v === base[i])) return true;
  const f16 = (x: number) => f16BitsToF32(f32ToF16Bits(x));
  if (!base.every((v) => f16(v) === v)) return false;
  return saved.every((v, i) => f16(v) === base[i]);
}

/** TrainableTokensLayer's `index_copy`: row `indices[j]` (an embedding input, or a tied head's output) becomes `rows[j]`. */
function replaceTokenRows(w: Float32Array, patch: TokensPatch, rows: Float32Array): Float32Array {
  const { target, indices, tokensAreOutputs } = patch;
  const dim = tokensAreOutputs ? target.inFeatures : target.outFeatures;
  const [inF, outF] = [target.inFeatures, target.outFeatures];
  indices.forEach((token, j) => {
    for (let f = 0; f < dim; f++) {
      const [i, o] = tokensAreOutputs ? [f, token] : [token, f];
      w[target.layout === "in_out" ? i * outF + o : o * inF + i] = rows[j * dim + f];
    }
  });
  return w;
}

/**
 * PEFT's `ParamWrapper.get_delta_weight` for a 3-D expert stack, added to
 * `w` (`[experts, out, in]`, or `[experts, in, out]` for "in_out"): expert
 * `e` gets `s · B_e @ A_e` with `A_e = a[e·r : (e+1)·r]` (`a` read as
 * `(E, r, in)`) and `B_e[o, k] = b[o, k·E + e]` (`b` read as `(out, r, E)`).
 */
async function mergeExperts(
  w: Float32Array,
  patch: LoraPatch,
  a: Float32Array,
  b: Float32Array,
  merger: WeightMerger,
  scale: number,
): Promise<void> {
  const { experts, inFeatures: inF, outFeatures: outF, layout } = patch.target;
  const E = experts!;
  const r = patch.rank / E;
  const size = inF * outF;
  const be = new Float32Array(outF * r);
  for (let e = 0; e < E; e++) {
    for (let o = 0; o < outF; o++) for (let k = 0; k < r; k++) be[o * r + k] = b[o * patch.rank + k * E + e];
    // A copy per expert: mergers may work on their own copy of the weight they are given.
    const we = w.slice(e * size, (e + 1) * size);
    await merger.mergeWeight(
      we,
      a.subarray(e * r * inF, (e + 1) * r * inF),
      be,
      {
        outFeatures: outF,
        inFeatures: inF,
        rank: r,
      },
      scale,
      layout,
    );
    w.set(we, e * size);
  }
}

/**
 * Computes the merged values of every weight and bias a plan touches.
 * Several patches on one initializer (e.g. LoRA plus a trained bias on
 * different tensors) each get their own entry. A quantized target is read
 * through `base` with the whole target (to be dequantized) and its entry
 * marked `quantized`, for the caller to re-quantize (PEFT's merge into
 * bitsandbytes layers: dequantize, add, quantize again).
 *
 * @example
 * ```ts
 * import { loadBaseModel } from "../model/base_model.ts";
 * import { readAdapter } from "../model/adapter.ts";
 * const base = await loadBaseModel("tests/fixtures/llama-tiny");
 * const adapter = await readAdapter(base.weights, "tests/fixtures/llama-tiny-lora-qv", "qv");
 * import { loadKernels } from "../kernels/kernels.ts";
 * import { cpuMerger, mergePatches } from "./merge.ts";
 * const merged = await mergePatches(
 *   adapter.plan.patches,
 *   (use) => base.readWeight(use.initializer),
 *   (key) => adapter.weights.toFloat32(key),
 *   cpuMerger(await loadKernels()),
 *   { fanInFanOut: adapter.config.fanInFanOut },
 * );
 * ```
 */
export async function mergePatches(
  patches: ReadonlyArray<LoraPatch | ReplacePatch>,
  base: BaseWeightReader<InitializerUse | WeightTarget>,
  adapter: AdapterTensorReader,
  merger: WeightMerger,
  options: { fanInFanOut: boolean; weight?: number; tokens?: readonly TokensPatch[]; newBiases?: NewBias[] },
): Promise<MergedWeight[]> {
  const { fanInFanOut } = options;
  const weight = options.weight ?? 1;
  const merged: MergedWeight[] = [];
  const use = (u: InitializerUse) => ({
    initializer: u.initializer,
    readerIndex: u.readerIndex,
    inputIndex: u.inputIndex,
  });
  // A quantized target is read dequantized, and its merged values re-quantized (see MergedWeight.quantized).
  const quantizedOf = (u: InitializerUse | WeightTarget) =>
    "quantized" in u && u.quantized ? u as WeightTarget : undefined;
  // A later patch on the same weight (the LoRA after its module's saved base weight) builds on the earlier one.
  const done = new Map<string, Float32Array>();
  const key = (u: InitializerUse) => `${u.initializer}\u0000${u.readerIndex}\u0000${u.inputIndex}`;
  const read = (u: InitializerUse | WeightTarget) => done.get(key(u))?.slice() ?? base(quantizedOf(u) ?? use(u));
  const emit = (module: string, u: InitializerUse | WeightTarget, values: Float32Array) => {
    const quantized = quantizedOf(u);
    const allReaders = "experts" in u && u.experts !== undefined;
    merged.push({
      module,
      ...use(u),
      values,
      ...(quantized ? { quantized } : {}),
      ...(allReaders ? { allReaders } : {}),
    });
    done.set(key(u), values);
  };
  for (const patch of patches) {
    const { target } = patch;
    if (patch.kind === "lora" && target.experts !== undefined) {
      const w = read(target);
      await mergeExperts(w, patch, adapter(patch.a), adapter(patch.b), merger, patch.scale * weight);
      emit(patch.module, target, w);
    } else if (patch.kind === "lora") {
      const w = read(target);
      const dims = { outFeatures: target.outFeatures, inFeatures: target.inFeatures, rank: patch.rank };
      // A magnitude the adapter lacks is PEFT's init: the base rows' norms (scale 0 leaves W as it is).
      const magnitude = patch.magnitudeFromBase
        ? doraNormsReference(w, adapter(patch.a), adapter(patch.b), dims, 0, target.layout)
        : patch.magnitude
        ? adapter(patch.magnitude)
        : undefined;
      await merger.mergeWeight(
        w,
        adapter(patch.a),
        adapter(patch.b),
        dims,
        patch.scale * weight,
        target.layout,
        magnitude,
      );
      emit(patch.module, target, w);
      if (patch.bias) {
        const bias = target.bias ? read(target.bias) : new Float32Array(target.outFeatures);
        const delta = adapter(patch.bias);
        for (let o = 0; o < bias.length; o++) bias[o] += patch.scale * weight * delta[o];
        if (target.bias) emit(patch.module, target.bias, bias);
        else if (!options.newBiases || target.inSubgraph) {
          throw new UnsupportedError(
            `lora_B.bias cannot be merged here: the base module (${target.nodeName}) has no bias to add it to`,
            { key: patch.module },
          );
        } else {
          // A quantized projection's float output is its last node's (the bias goes in its scales' type).
          const q = target.quantized;
          options.newBiases.push({
            module: patch.module,
            readerIndex: q ? q.outputIndex : target.readerIndex,
            // A quantized projection's bias goes after its last node (outputIndex), not on the named MatMul.
            nodeName: q ? undefined : target.nodeName,
            like: q ? q.scales : target.initializer,
            values: bias,
          });
        }
      }
    } else if (patch.param === "weight") {
      emit(patch.module, target, torchWeightToTarget(adapter(patch.key), target, patch.torchInOut ?? fanInFanOut));
    } else if (target.bias) {
      emit(patch.module, target.bias, adapter(patch.key));
    } else if (options.newBiases && !target.inSubgraph) {
      // The export has no bias (a zero one dropped by the exporter): the trained one is added.
      options.newBiases.push({
        module: patch.module,
        readerIndex: target.readerIndex,
        nodeName: target.nodeName,
        like: target.initializer,
        values: adapter(patch.key).slice(),
        replaces: true,
      });
    } else {
      throw new UnsupportedError(`the base module (${target.nodeName}) has no bias for the trained one to replace`, {
        key: patch.module,
      });
    }
  }
  for (const patch of options.tokens ?? []) {
    if (weight !== 1) {
      throw new UnsupportedError("trainable tokens replace rows and cannot be weighted", { key: patch.module });
    }
    emit(patch.module, patch.target, replaceTokenRows(read(patch.target), patch, adapter(patch.key)));
  }
  return merged;
}
