/**
 * OFT (PEFT 0.21's `tuners/oft`): the input of a linear module is rotated
 * block by block, `x' = x · blockdiag(R₁ … R_r)`, each `R = cayley(Q)` from
 * the skew-symmetric `Q` packed in `oft_R.weight` (`[r, k(k-1)/2]`, or one
 * shared block with `block_share`). With `coft` the packed values are first
 * projected to a ball of radius `eps / √blocks` (`_project_batch`). Merged as
 * PEFT's `merge`: `W' = W · blockdiag(R)ᵀ`.
 * @module
 */
import { AdapterConfigError, AdapterMismatchError } from "../../errors.ts";
import { field, parseTunerConfig, type TunerConfig } from "../config.ts";
import { checkShape, required } from "../dense.ts";
import type { ModuleUpdate, TunerMethod } from "../method.ts";
import { blockSizeOf, cayley, skew } from "../rotation.ts";

function parse(values: Readonly<Record<string, unknown>>, file?: string): TunerConfig {
  const fail = (key: string, message: string) => {
    throw new AdapterConfigError(message, { key, file });
  };
  // OFTConfig.check_kwargs: adapters from before PEFT 0.14 have another layout.
  if (!("oft_block_size" in values)) {
    fail(
      "oft_block_size",
      "OFT has been updated since PEFT 0.14.0. Your trained adapter weights are incompatible with the latest " +
        "version of OFT (no oft_block_size in the config); retrain with a newer PEFT",
    );
  }
  const r = field(values, "r", 0);
  const block = field(values, "oft_block_size", 32);
  if (r === 0 && block === 0) {
    fail(
      "r",
      `Either \`r\` or \`oft_block_size\` must be non-zero. Currently, r = ${r} and oft_block_size = ${block}.`,
    );
  }
  if (!((r !== 0) !== (block !== 0))) {
    fail(
      "r",
      `You can only specify either r (${r}) or oft_block_size (${block}), but not both simultaneously, because ` +
        "r x oft_block_size == in_features.",
    );
  }
  return parseTunerConfig("OFT", values, { file });
}

/**
 * The rotation blocks of a module's `oft_R.weight`: `[blocks, k, k]` flat
 * (one block when shared).
 *
 * @example
 * ```ts
 * import { oftBlocks } from "./mod.ts";
 * // const { blocks, k } = oftBlocks(packed, rows, config.fields, module);
 * ```
 */
export function oftBlocks(
  packed: Float32Array,
  rows: number,
  fields: Readonly<Record<string, unknown>>,
  module: string,
): { blocks: Float64Array[]; k: number } {
  const n = packed.length / rows;
  const k = blockSizeOf(n, module);
  let values = packed;
  if (field(fields, "coft", false)) {
    // _project_batch: a block with ‖Q‖_F above eps/√rows is scaled onto that radius (norm of the full skew matrix).
    const eps = Math.fround(field(fields, "eps", 6e-5) / Math.sqrt(rows));
    values = packed.slice();
    for (let b = 0; b < rows; b++) {
      let sq = 0;
      for (let i = 0; i < n; i++) sq += 2 * packed[b * n + i] ** 2;
      const norm = Math.sqrt(sq);
      if (norm > eps) { for (let i = 0; i < n; i++) values[b * n + i] = Math.fround(eps * (packed[b * n + i] / norm)); }
    }
  }
  const neumann = field(fields, "use_cayley_neumann", true) ? field(fields, "num_cayley_neumann_terms", 5) : undefined;
  const blocks: Float64Array[] = [];
  for (let b = 0; b < rows; b++) blocks.push(cayley(skew(values.subarray(b * n, (b + 1) * n), k), k, neumann));
  return { blocks, k };
}

/**
 * `W' = W · blockdiag(R)ᵀ` for `[out, in]` weights: each row's slice `b` of
 * length `k` becomes `R_b · slice`.
 *
 * @example
 * ```ts
 * import { rotateInputs } from "./mod.ts";
 * rotateInputs(new Float32Array([1, 2]), 1, 2, [new Float64Array([1, 0, 0, 1])], 2); // unchanged
 * ```
 */
export function rotateInputs(
  w: Float32Array,
  out: number,
  inn: number,
  blocks: readonly Float64Array[],
  k: number,
): Float32Array {
  const result = new Float32Array(w.length);
  const count = inn / k;
  for (let o = 0; o < out; o++) {
    for (let b = 0; b < count; b++) {
      const rot = blocks.length === 1 ? blocks[0] : blocks[b];
      for (let i = 0; i < k; i++) {
        let s = 0;
        for (let j = 0; j < k; j++) s += w[o * inn + b * k + j] * rot[i * k + j];
        result[o * inn + b * k + i] = s;
      }
    }
  }
  return result;
}

function merge(m: ModuleUpdate, config: TunerConfig) {
  const t = required(m, "oft_R.weight", [-1, -1]);
  const share = field(config.fields, "block_share", false);
  if (share) checkShape(m.module, "oft_R.weight", t, [1, -1]);
  const { blocks, k } = oftBlocks(t.values, t.shape[0], config.fields, m.module);
  const count = share ? m.inFeatures / k : blocks.length;
  if (!Number.isInteger(count) || count * k !== m.inFeatures) {
    throw new AdapterMismatchError(
      `oft_R.weight [${t.shape}] gives ${blocks.length} block(s) of ${k}, which do not tile in_features ${m.inFeatures}`,
      { key: m.module },
    );
  }
  return { weight: rotateInputs(m.weight(), m.outFeatures, m.inFeatures, blocks, k) };
}

/**
 * The OFT method.
 *
 * @example
 * ```ts
 * import { oft } from "./mod.ts";
 * oft.params; // ["oft_R.weight"]
 * ```
 */
export const oft: TunerMethod = {
  params: ["oft_R.weight"],
  conv1DRefusal: "Currently, only `torch.nn.Linear`, `torch.nn.Conv2d`, `torch.nn.Embedding` (optionally quantized) " +
    "are supported.",
  // OFT Linear.forward rotates x by each active adapter in turn; merge left-multiplies W^T by each rotation.
  forwardReversed: true,
  parse,
  merge,
};
