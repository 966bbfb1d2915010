/**
 * PEFT's `add_weighted_adapter` (`tuners/lora/model.py`, `utils/merge_utils.py`):
 * a new LoRA adapter made from loaded ones. `cat` stacks the scaled factors;
 * `linear`, `ties`, `magnitude_prune` (and `dare_*` without pruning) combine
 * the A and B factors separately; the `*_svd` types combine the full deltas
 * and factor the result with a truncated SVD (`svd` is PEFT's default). The
 * result is an ordinary adapter (config + tensors), planned like any other.
 * @module
 */
import type { LoraConfig } from "../config/mod.ts";
import { AdapterConfigError, UnsupportedError } from "../errors.ts";
import type { TensorInput } from "../safetensors/write.ts";
import type { LoraPatch, ReplacePatch, TokensPatch } from "./plan.ts";
import { svd } from "./svd.ts";

/** PEFT's combination types. */
export type CombinationType =
  | "svd"
  | "linear"
  | "cat"
  | "ties"
  | "ties_svd"
  | "dare_ties"
  | "dare_linear"
  | "dare_ties_svd"
  | "dare_linear_svd"
  | "magnitude_prune"
  | "magnitude_prune_svd";

const COMBINATION_TYPES: readonly CombinationType[] = [
  "svd",
  "linear",
  "cat",
  "ties",
  "ties_svd",
  "dare_ties",
  "dare_linear",
  "dare_ties_svd",
  "dare_linear_svd",
  "magnitude_prune",
  "magnitude_prune_svd",
];

/** `add_weighted_adapter`'s keyword arguments, camelCase, with PEFT's defaults. */
export interface WeightedAdapterOptions {
  /** Default `"svd"`, as in PEFT. With one adapter PEFT always uses `"linear"`. */
  combinationType?: CombinationType;
  /** Rank of an `*_svd` result; default the largest source rank. */
  svdRank?: number;
  /** Quantile (0..1) at which the SVD factors are clamped; default none. */
  svdClamp?: number;
  /** `torch.linalg.svd`'s `full_matrices` (default `true`); the truncated result is the same either way. */
  svdFullMatrices?: boolean;
  /** Fraction of values kept by `ties`, `magnitude_prune` and `dare_*` (needed by them; 1 keeps all). */
  density?: number;
  /** How `ties` elects each value's sign: `"total"` (default) or `"frequency"`. */
  majoritySignMethod?: "total" | "frequency";
  /** Receives the warning that trainable tokens are not combined; default `console.warn`. */
  onWarning?: (message: string) => void;
}

/** A loaded adapter as `weightedAdapter` reads it. */
export interface WeightSource {
  name: string;
  config: LoraConfig;
  patches: ReadonlyArray<LoraPatch | ReplacePatch>;
  /** Its trainable tokens (the plan's), if any. */
  tokens?: readonly TokensPatch[];
  /** An adapter tensor as float32. */
  read(key: string): Float32Array;
}

/** The base's float weight of a module (as the graph stores it, dequantized where quantized). */
export type BaseWeight = (target: TokensPatch["target"]) => Float32Array;

/** The new adapter: an `adapter_config.json` object and its `adapter_model.safetensors` tensors. */
export interface WeightedResult {
  config: Record<string, unknown>;
  tensors: Map<string, TensorInput>;
  combinationType: CombinationType;
}

/** One source's LoRA on one module, in float64: `delta = scale · B[out, r] @ A[r, in]`. */
interface Factor {
  a: Float64Array;
  b: Float64Array;
  rank: number;
  scale: number;
  weight: number;
}

interface ModuleFactors {
  module: string;
  embedding: boolean;
  out: number;
  in: number;
  factors: Factor[];
}

const fail = (message: string, key: string): never => {
  throw new AdapterConfigError(message, { key });
};

function checkOptions(options: WeightedAdapterOptions, type: CombinationType): void {
  const { svdRank, svdClamp, density, majoritySignMethod } = options;
  if (svdRank !== undefined && !(Number.isInteger(svdRank) && svdRank > 0)) {
    fail(`svdRank must be a positive integer, got ${svdRank}`, "svdRank");
  }
  if (svdClamp !== undefined && !(svdClamp >= 0 && svdClamp <= 1)) {
    fail(`svdClamp is a quantile and must be between 0 and 1, got ${svdClamp}`, "svdClamp");
  }
  if (majoritySignMethod !== undefined && majoritySignMethod !== "total" && majoritySignMethod !== "frequency") {
    fail(`majoritySignMethod must be "total" or "frequency", got ${majoritySignMethod}`, "majoritySignMethod");
  }
  const prunes = /ties|dare|magnitude_prune/.test(type);
  if (prunes) {
    // PEFT's prune() compares density with 1 (TypeError on None) and raises below 0.
    if (density === undefined || !Number.isFinite(density)) fail(`${type} needs a density`, "density");
    if (density! < 0) fail(`Density should be >= 0, got ${density}`, "density");
    if (type.startsWith("dare") && density! < 1) {
      throw new UnsupportedError(
        `${type} with density ${density} drops random values (torch.bernoulli), which cannot be reproduced ` +
          "outside torch; use ties or magnitude_prune, or density 1 (no pruning)",
        { key: "density" },
      );
    }
  }
}

/** PEFT's `adapters_ranks`: r, or the largest rank of rank_pattern. */
function sourceRank(config: LoraConfig): number {
  return Math.max(config.r, ...config.rankPattern.values());
}

function newRank(type: CombinationType, sources: readonly WeightSource[], svdRank: number | undefined): number {
  const ranks = sources.map((s) => sourceRank(s.config));
  if (type === "cat") return ranks.reduce((a, b) => a + b, 0);
  if (type.endsWith("svd")) return svdRank ?? Math.max(...ranks);
  if (new Set(ranks).size !== 1) {
    fail(
      "All adapters must have the same r value when using combination_type linear, ties, dare_ties or dare_linear " +
        `(ranks: ${ranks.join(", ")})`,
      "adapters",
    );
  }
  return ranks[0];
}

function collect(sources: readonly WeightSource[], weights: readonly number[]): ModuleFactors[] {
  const modules = new Map<string, ModuleFactors>();
  sources.forEach((source, i) => {
    if (source.config.targetParameters?.length) {
      fail(`add_weighted_adapter does not support targeting nn.Parameter (adapter '${source.name}')`, "adapters");
    }
    for (const patch of source.patches) {
      if (patch.kind === "replace") {
        // PEFT's new adapter gets fresh copies of the original modules_to_save modules (dropped here, as
        // there); a trained bias lives in the base layer in PEFT, shared by every adapter, which this
        // per-adapter model does not express.
        if (patch.param === "bias") {
          throw new UnsupportedError(
            `adapter ${source.name} trained the bias of ${patch.module}; weighting such adapters is not supported`,
            { key: "adapters" },
          );
        }
        continue;
      }
      if (patch.magnitude || patch.bias) {
        throw new UnsupportedError(
          `adapter ${source.name} uses ${patch.magnitude ? "DoRA" : "lora_bias"} (${patch.module}); ` +
            "weighting it is not supported",
          { key: "adapters" },
        );
      }
      const { target } = patch;
      const entry = modules.get(patch.module) ??
        {
          module: patch.module,
          embedding: target.kind === "embedding",
          out: target.outFeatures,
          in: target.inFeatures,
          factors: [],
        };
      entry.factors.push({
        a: Float64Array.from(source.read(patch.a)),
        b: Float64Array.from(source.read(patch.b)),
        rank: patch.rank,
        scale: patch.scale,
        weight: weights[i],
      });
      modules.set(patch.module, entry);
    }
  });
  return [...modules.values()];
}

/** `s · B @ A` as a row-major `[out, in]` matrix. */
function delta(f: Factor, out: number, inn: number): Float64Array {
  const d = new Float64Array(out * inn);
  for (let o = 0; o < out; o++) {
    for (let k = 0; k < f.rank; k++) {
      const bv = f.b[o * f.rank + k] * f.scale;
      if (bv === 0) continue;
      for (let i = 0; i < inn; i++) d[o * inn + i] += bv * f.a[k * inn + i];
    }
  }
  return d;
}

/** merge_utils.prune with method "magnitude": keeps the `trunc(density · n)` largest magnitudes. */
function prune(t: Float64Array, density: number): Float64Array {
  if (density >= 1) return t;
  const k = Math.trunc(density * t.length);
  const order = [...t.keys()].sort((x, y) => Math.abs(t[y]) - Math.abs(t[x]));
  const out = new Float64Array(t.length);
  for (let j = 0; j < k; j++) out[order[j]] = t[order[j]];
  return out;
}

/** merge_utils: task_arithmetic, magnitude_prune, ties (and dare_* without pruning). */
function combine(
  type: string,
  tensors: readonly Float64Array[],
  weights: readonly number[],
  density: number,
  signMethod: "total" | "frequency",
): Float64Array {
  const base = type.replace(/_svd$/, "");
  const pruned = base === "ties" || base === "magnitude_prune" ? tensors.map((t) => prune(t, density)) : tensors;
  const out = new Float64Array(tensors[0].length);
  if (base !== "ties" && base !== "dare_ties") {
    for (let j = 0; j < out.length; j++) {
      let sum = 0;
      for (let i = 0; i < pruned.length; i++) sum += weights[i] * pruned[i][j];
      out[j] = sum;
    }
    return out;
  }
  // ties: each value keeps the sign of the (unweighted) majority; values of that sign are averaged.
  for (let j = 0; j < out.length; j++) {
    let magnitude = 0;
    for (const t of pruned) magnitude += signMethod === "total" ? t[j] : Math.sign(t[j]);
    const majority = magnitude >= 0 ? 1 : -1;
    let sum = 0;
    let kept = 0;
    for (let i = 0; i < pruned.length; i++) {
      if (Math.sign(pruned[i][j]) === majority) {
        sum += weights[i] * pruned[i][j];
        kept++;
      }
    }
    out[j] = sum / Math.max(kept, 1);
  }
  return out;
}

/** torch.quantile's default (linear interpolation between the two nearest ranks). */
function quantile(values: Float64Array, q: number): number {
  const sorted = Float64Array.from(values).sort();
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** `_svd_generalized_task_arithmetic_weighted_adapter`: combine the deltas, keep the top `rank` of their SVD. */
function svdFactors(
  m: ModuleFactors,
  type: CombinationType,
  rank: number,
  options: WeightedAdapterOptions,
): { a: Float64Array; b: Float64Array } {
  const deltas = m.factors.map((f) => delta(f, m.out, m.in));
  const weights = m.factors.map((f) => f.weight);
  const kind = type === "svd" ? "linear" : type;
  const d = combine(kind, deltas, weights, options.density ?? 1, options.majoritySignMethod ?? "total");
  const k = Math.min(m.out, m.in);
  if (rank > k) {
    fail(
      `svd rank ${rank} is larger than ${m.module}'s delta allows (${m.out} x ${m.in}: at most ${k})`,
      "svdRank",
    );
  }
  const { u, s, vt, k: full } = svd(d, m.out, m.in);
  const b = new Float64Array(m.out * rank);
  for (let o = 0; o < m.out; o++) for (let r = 0; r < rank; r++) b[o * rank + r] = u[o * full + r] * s[r];
  const a = vt.slice(0, rank * m.in);
  if (options.svdClamp !== undefined) {
    const all = new Float64Array(b.length + a.length);
    all.set(b);
    all.set(a, b.length);
    const hi = quantile(all, options.svdClamp);
    const clamp = (x: Float64Array) => x.forEach((v, i) => x[i] = Math.min(Math.max(v, -hi), hi));
    clamp(a);
    clamp(b);
  }
  return { a, b };
}

/** `_generalized_task_arithmetic_weighted_adapter`: A and B combined separately, weights split as √|w·s|. */
function factorCombination(
  m: ModuleFactors,
  type: CombinationType,
  options: WeightedAdapterOptions,
): { a: Float64Array; b: Float64Array } {
  const shape = m.factors[0].a.length;
  if (m.factors.some((f) => f.a.length !== shape)) {
    fail(`adapters have different ranks on ${m.module}; ${type} needs equal ranks`, "adapters");
  }
  const ws = m.factors.map((f) => f.weight * f.scale);
  const wa = ws.map((w) => Math.sqrt(Math.abs(w)) * (w >= 0 ? 1 : -1));
  const wb = ws.map((w) => Math.sqrt(Math.abs(w)));
  const density = options.density ?? 1;
  const sign = options.majoritySignMethod ?? "total";
  return {
    a: combine(type, m.factors.map((f) => f.a), wa, density, sign),
    b: combine(type, m.factors.map((f) => f.b), wb, density, sign),
  };
}

/** `cat`: `[w_i s_i A_i]` stacked as rows, `[B_i]` as columns, zero-padded to the new rank. */
function catFactors(m: ModuleFactors, rank: number): { a: Float64Array; b: Float64Array } {
  const a = new Float64Array(rank * m.in);
  const b = new Float64Array(m.out * rank);
  let row = 0;
  for (const f of m.factors) {
    for (let k = 0; k < f.rank; k++) {
      for (let i = 0; i < m.in; i++) a[(row + k) * m.in + i] = f.a[k * m.in + i] * f.weight * f.scale;
      for (let o = 0; o < m.out; o++) b[o * rank + row + k] = f.b[o * f.rank + k];
    }
    row += f.rank;
  }
  return { a, b };
}

function newTargets(sources: readonly WeightSource[]): string | string[] {
  const targets = sources.map((s) => s.config.targetModules);
  const strings = targets.filter((t) => typeof t === "string").length;
  if (strings !== 0 && strings !== targets.length) {
    fail(
      "all adapter configs should follow the same target modules type. Combining adapters with `target_modules` " +
        "type being a mix of list/set and string is not supported.",
      "adapters",
    );
  }
  if (strings > 0) return targets.map((t) => `(${t})`).join("|");
  if (targets.some((t) => t === null)) fail("an adapter to weight has no target_modules", "adapters");
  return [...new Set(targets.flat() as string[])];
}

const f32 = (shape: number[], data: Float64Array): TensorInput => ({
  dtype: "F32",
  shape,
  data: Float32Array.from(data),
});

/**
 * PEFT's new adapter takes the first source's config, `trainable_token_indices`
 * included, and `inject_adapter` then wraps those tokens afresh:
 * `TrainableTokensLayer.update_layer` starts their rows as the base's own
 * (`trainable_tokens_delta = weight[indices]`). So the tokens' rows of no
 * source survive (PEFT says nothing; this warns): the new adapter carries the
 * first source's indices with the base's rows, under the key PEFT saves.
 */
function baseTokenRows(
  sources: readonly WeightSource[],
  baseWeight: BaseWeight | undefined,
  warn: (message: string) => void,
): Map<string, TensorInput> {
  const withTokens = sources.filter((s) => (s.tokens?.length ?? 0) > 0);
  const rows = new Map<string, TensorInput>();
  if (withTokens.length === 0) return rows;
  const first = sources[0].tokens?.filter((p) => !p.tokensAreOutputs) ?? [];
  warn(
    `add_weighted_adapter does not combine trainable tokens (neither does PEFT): the trained rows of ` +
      `${withTokens.map((s) => s.name).join(", ")} are not in the new adapter` +
      (first.length > 0
        ? `; it has ${sources[0].name}'s trainable_token_indices with the base's rows there, as PEFT initializes them`
        : ""),
  );
  for (const p of first) {
    if (!baseWeight) throw new Error("internal: weighting trainable tokens needs the base's weights");
    const w = baseWeight(p.target);
    const { inFeatures: num, outFeatures: dim, layout } = p.target;
    const data = new Float32Array(p.indices.length * dim);
    p.indices.forEach((token, j) => {
      for (let f = 0; f < dim; f++) data[j * dim + f] = w[layout === "in_out" ? token * dim + f : f * num + token];
    });
    rows.set(p.key, { dtype: "F32", shape: [p.indices.length, dim], data });
  }
  return rows;
}

/**
 * Makes the weighted adapter as PEFT's `add_weighted_adapter` does: the new
 * config is the first adapter's with `r = lora_alpha =` the new rank, the
 * union of `target_modules` and no rank/alpha patterns; each module any
 * source adapts gets the combined factors. Throws PEFT's errors (unequal
 * ranks for `linear`/`ties`, mixed target types) as `AdapterConfigError`,
 * and refuses what it cannot reproduce (`dare_*` with density < 1: random;
 * DoRA, `lora_bias`, trained biases) with `UnsupportedError`. Trainable
 * tokens are not combined, as in PEFT (see `baseTokenRows`); `baseWeight`
 * reads the base rows the first source's tokens then start from.
 *
 * @example
 * ```ts
 * import { weightedAdapter } from "./weighted.ts";
 * // const { config, tensors } = weightedAdapter(sources, [0.7, 0.3], { combinationType: "svd" });
 * ```
 */
export function weightedAdapter(
  sources: readonly WeightSource[],
  weights: readonly number[],
  options: WeightedAdapterOptions = {},
  baseWeight?: BaseWeight,
): WeightedResult {
  const requested = options.combinationType ?? "svd";
  if (!COMBINATION_TYPES.includes(requested)) {
    fail(`Invalid combination_type: ${requested}; one of ${COMBINATION_TYPES.join(", ")}`, "combinationType");
  }
  // PEFT: "if there is only one adapter, we can only use linear merging".
  const type = sources.length === 1 ? "linear" : requested;
  checkOptions(options, type);
  const rank = newRank(type, sources, options.svdRank);
  const targetModules = newTargets(sources);
  const tensors = new Map<string, TensorInput>();
  for (const m of collect(sources, weights)) {
    const { a, b } = type === "cat"
      ? catFactors(m, rank)
      : type.endsWith("svd")
      ? svdFactors(m, type, rank, options)
      : factorCombination(m, type, options);
    const prefix = `base_model.model.${m.module}`;
    tensors.set(m.embedding ? `${prefix}.lora_embedding_A` : `${prefix}.lora_A.weight`, f32([rank, m.in], a));
    tensors.set(m.embedding ? `${prefix}.lora_embedding_B` : `${prefix}.lora_B.weight`, f32([m.out, rank], b));
  }
  if (tensors.size === 0) fail("No matching LoRAs found in the adapters to weight", "adapters");
  for (const [key, rows] of baseTokenRows(sources, baseWeight, options.onWarning ?? console.warn)) {
    tensors.set(key, rows);
  }
  const config: Record<string, unknown> = {
    ...sources[0].config.raw,
    peft_type: "LORA",
    r: rank,
    lora_alpha: rank,
    target_modules: targetModules,
    alpha_pattern: {},
    rank_pattern: {},
    // What the new adapter does not carry (see collect): its modules_to_save are the base's own modules.
    modules_to_save: null,
    bias: "none",
  };
  return { config, tensors, combinationType: type };
}
