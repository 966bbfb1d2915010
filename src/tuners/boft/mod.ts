/**
 * BOFT (PEFT's `tuners/boft`): the input is rotated by a product of
 * butterfly factors, each block-diagonal with blocks
 * `cayley(½(R - Rᵀ))` (exact Cayley transform) from `boft_R`
 * (`[factors, blocks, k, k]`), and the output scaled by `boft_s` (`[out, 1]`).
 * Merged as PEFT's `merge`: `W' = (W · Mᵀ) ⊙ s`.
 *
 * PEFT without its CUDA extension (`fbd_cuda`) builds one factor only, with
 * an identity permutation, and that is what is reproduced; adapters saved
 * with more butterfly factors are refused.
 * @module
 */
import { AdapterConfigError, AdapterMismatchError, UnsupportedError } from "../../errors.ts";
import { field, parseTunerConfig, type TunerConfig } from "../config.ts";
import { required } from "../dense.ts";
import type { ModuleUpdate, TunerMethod } from "../method.ts";
import { rotateInputs } from "../oft/mod.ts";
import { cayley } from "../rotation.ts";

function parse(values: Readonly<Record<string, unknown>>, file?: string): TunerConfig {
  const size = field(values, "boft_block_size", 4);
  const num = field(values, "boft_block_num", 0);
  if (size === 0 && num === 0) {
    throw new AdapterConfigError(
      `Either \`boft_block_size\` or \`boft_block_num\` must be non-zero. Currently, boft_block_size = ${size} and ` +
        `boft_block_num = ${num}.`,
      { key: "boft_block_size", file },
    );
  }
  if (!((size !== 0) !== (num !== 0))) {
    throw new AdapterConfigError(
      `You can only specify either boft_block_size (${size}) or boft_block_num (${num}), but not both ` +
        "simultaneously, because boft_block_size x boft_block_num == in_features.",
      { key: "boft_block_size", file },
    );
  }
  if (field(values, "boft_n_butterfly_factor", 1) < 1) {
    throw new AdapterConfigError("boft_n_butterfly_factor must be a positive integer", {
      key: "boft_n_butterfly_factor",
      file,
    });
  }
  return parseTunerConfig("BOFT", values, { file });
}

function merge(m: ModuleUpdate) {
  const r = required(m, "boft_R", [-1, -1, -1, -1]);
  const [factors, count, k, k2] = r.shape;
  if (factors !== 1) {
    throw new UnsupportedError(
      `boft_R has ${factors} butterfly factors; PEFT builds more than one only with its CUDA extension, and ` +
        "peft-edge reproduces the one-factor form",
      { key: m.module },
    );
  }
  if (k !== k2 || count * k !== m.inFeatures) {
    throw new AdapterMismatchError(`boft_R [${r.shape}] does not tile in_features ${m.inFeatures}`, { key: m.module });
  }
  const s = required(m, "boft_s", [m.outFeatures, 1]).values;
  const blocks: Float64Array[] = [];
  for (let b = 0; b < count; b++) {
    const q = new Float64Array(k * k);
    const off = b * k * k;
    for (let i = 0; i < k; i++) {
      for (let j = 0; j < k; j++) q[i * k + j] = 0.5 * (r.values[off + i * k + j] - r.values[off + j * k + i]);
    }
    blocks.push(cayley(q, k, undefined));
  }
  const w = rotateInputs(m.weight(), m.outFeatures, m.inFeatures, blocks, k);
  const inn = m.inFeatures;
  for (let o = 0; o < m.outFeatures; o++) {
    for (let i = 0; i < inn; i++) w[o * inn + i] = Math.fround(w[o * inn + i] * s[o]);
  }
  return { weight: w };
}

/**
 * The BOFT method.
 *
 * @example
 * ```ts
 * import { boft } from "./mod.ts";
 * boft.params; // ["boft_R", "boft_s"]
 * ```
 */
export const boft: TunerMethod = {
  params: ["boft_R", "boft_s"],
  conv1DRefusal: "Currently, only `torch.nn.Linear` and `torch.nn.Conv2d` (optionally quantized) are supported.",
  parse,
  merge,
};
