/**
 * Feeds for trainable-tokens branches (see `addTokenBranches`): per run, the
 * token ids and rows of the active adapter that has trainable tokens on each
 * branched module, or only the padding id -1 (no row changes: the base).
 *
 * PEFT's rules: the saved `trainable_tokens_delta` holds the new rows
 * themselves (`index_copy` into the weight), not a difference; one adapter's
 * tokens per module at a time (`TrainableTokensWrapper.check_set_adapter`:
 * "Only one adapter can be set at a time"); rows replace, so they cannot be
 * weighted. With a token id listed twice, the last row wins, as in merged mode.
 * @module
 */
import { Tensor } from "../deps/ort.ts";
import { OnnxModelError, UnsupportedError } from "../errors.ts";
import { f32ToF16 } from "../numeric/float16.ts";
import type { TokenBranch, TokenSite } from "../onnx/token_branches.ts";
import type { ActiveAdapter, BranchFeeds } from "./dynamic_feeds.ts";
import type { AdapterPlan, TokensPatch } from "./plan.ts";

/**
 * The modules a plan's trainable tokens need branches on (the embedding, and a tied `lm_head`).
 *
 * @example
 * ```ts
 * import { tokenSites } from "./token_feeds.ts";
 * tokenSites({ patches: [], unmatchedKeys: [], missingModules: [], missingKeys: [], tokens: [] }); // []
 * ```
 */
export function tokenSites(plan: AdapterPlan): TokenSite[] {
  return plan.tokens.map((p) => ({ target: p.target, tokensAreOutputs: p.tokensAreOutputs }));
}

/** The patch of each branched module among the active adapters, checked against PEFT's rules. */
function activeTokens(
  branches: ReadonlyMap<string, TokenBranch>,
  active: readonly ActiveAdapter[],
): Map<string, { patch: TokensPatch; adapter: ActiveAdapter }> {
  const byModule = new Map<string, { patch: TokensPatch; adapter: ActiveAdapter }>();
  for (const adapter of active) {
    for (const patch of adapter.plan.tokens) {
      const module = patch.target.module;
      if (!branches.has(module)) {
        throw new OnnxModelError("the graph has no trainable-tokens branch for this module", { key: module });
      }
      if ((adapter.weight ?? 1) !== 1) {
        throw new UnsupportedError("trainable tokens replace rows and cannot be weighted", { key: module });
      }
      if (byModule.has(module)) {
        throw new UnsupportedError(
          "several active adapters have trainable tokens on this module; PEFT sets only one adapter at a time " +
            "for trainable tokens. Activate one of them",
          { key: module },
        );
      }
      byModule.set(module, { patch, adapter });
    }
  }
  // A LoRA beside tokens on one module never gets here: PEFT refuses the pair at load (token_rules.ts, plan.ts).
  return byModule;
}

/** Token ids and their rows, `[K, features]`; a repeated id keeps its last row. */
function lastRows(patch: TokensPatch, rows: Float32Array, features: number): { ids: number[]; rows: Float32Array } {
  const last = new Map<number, number>();
  patch.indices.forEach((token, j) => last.set(token, j));
  const ids = [...last.keys()];
  const out = new Float32Array(ids.length * features);
  ids.forEach((token, k) =>
    out.set(rows.subarray(last.get(token)! * features, (last.get(token)! + 1) * features), k * features)
  );
  return { ids, rows: out };
}

function valuesTensor(branch: TokenBranch, values: Float32Array, dims: number[]): Tensor {
  return branch.elementType === "float16"
    ? new Tensor("float16", f32ToF16(values), dims)
    : new Tensor("float32", values, dims);
}

/**
 * The feeds of every token branch for one set of active adapters (one set
 * for all batch rows: a leading dim of 1). Validates first.
 *
 * @throws {UnsupportedError} for weighted tokens, or two active adapters with tokens on one module.
 * @throws {OnnxModelError} when an adapter has tokens on a module without a branch.
 * @example
 * ```ts
 * import { tokenFeeds } from "./token_feeds.ts";
 * console.log(tokenFeeds(new Map(), [])); // {}
 * ```
 */
export function tokenFeeds(branches: ReadonlyMap<string, TokenBranch>, active: readonly ActiveAdapter[]): BranchFeeds {
  const byModule = activeTokens(branches, active);
  const feeds: BranchFeeds = {};
  for (const branch of branches.values()) {
    const part = byModule.get(branch.module);
    const H = branch.features;
    // No tokens: one padding id, which matches no token id, and a zero row.
    const { ids, rows } = part
      ? lastRows(part.patch, part.adapter.tensor(part.patch.key), H)
      : { ids: [-1], rows: new Float32Array(H) };
    const K = ids.length;
    const indices = BigInt64Array.from(ids, BigInt);
    if (!branch.tokensAreOutputs) {
      feeds[branch.indices] = new Tensor("int64", indices, [1, 1, K]);
      feeds[branch.values] = valuesTensor(branch, rows, [1, K, H]);
    } else {
      // A tied head takes the rows transposed, [features, K]: hidden @ values gives the K logits.
      const t = new Float32Array(H * K);
      for (let k = 0; k < K; k++) for (let h = 0; h < H; h++) t[h * K + k] = rows[k * H + h];
      feeds[branch.indices] = new Tensor("int64", indices, [1, K, 1]);
      feeds[branch.values] = valuesTensor(branch, t, [1, H, K]);
    }
  }
  return feeds;
}

type Values = Float32Array | Uint16Array;

/**
 * Stacks per-row token feeds (each from {@linkcode tokenFeeds}, one per
 * batch row) into one mixed-batch feed: indices `[rows, 1, K]` padded with
 * -1, values `[rows, K, features]` padded with zeros (a tied head's
 * `[rows, K, 1]` and `[rows, features, K]`). Rows may share a set object.
 *
 * @example
 * ```ts
 * import { stackTokenRows, tokenFeeds } from "./token_feeds.ts";
 * const off = tokenFeeds(new Map(), []);
 * console.log(stackTokenRows(new Map(), [off, off])); // {}
 * ```
 */
export function stackTokenRows(branches: ReadonlyMap<string, TokenBranch>, rows: readonly BranchFeeds[]): BranchFeeds {
  const feeds: BranchFeeds = {};
  const n = rows.length;
  for (const branch of branches.values()) {
    const H = branch.features;
    const counts = rows.map((r) => r[branch.indices].size);
    const K = Math.max(1, ...counts);
    const indices = new BigInt64Array(n * K).fill(-1n);
    const values: Values = branch.elementType === "float16" ? new Uint16Array(n * K * H) : new Float32Array(n * K * H);
    rows.forEach((r, i) => {
      indices.set(r[branch.indices].data as BigInt64Array, i * K);
      const src = r[branch.values].data as Values;
      const k = counts[i];
      if (!branch.tokensAreOutputs) {
        values.set(src, i * K * H); // [k, H] rows are contiguous; the padding rows stay 0
      } else {
        for (let h = 0; h < H; h++) values.set(src.subarray(h * k, (h + 1) * k), (i * H + h) * K);
      }
    });
    const type = branch.elementType;
    feeds[branch.indices] = new Tensor("int64", indices, branch.tokensAreOutputs ? [n, K, 1] : [n, 1, K]);
    feeds[branch.values] = type === "float16"
      ? new Tensor("float16", values as Uint16Array, branch.tokensAreOutputs ? [n, H, K] : [n, K, H])
      : new Tensor("float32", values as Float32Array, branch.tokensAreOutputs ? [n, H, K] : [n, K, H]);
  }
  return feeds;
}
