/**
 * Activated LoRA (aLoRA, `alora_invocation_tokens`): the adapter's delta
 * applies only from the last occurrence of its invocation sequence on, as
 * PEFT's `calculate_alora_offsets` and `ALoraLinearVariant.forward` compute
 * it. An offset counts the invocation's start back from the end of the ids it
 * was found in; a run of `T` tokens applies the adapter to its last
 * `min(offset, T)` positions, none where the sequence was not found. PEFT's
 * `generate` finds the offsets once in the prompt and keeps them for every
 * step (a decode step's one token is then adapted), its forward in that
 * forward's own `input_ids`.
 * @module
 */
import { Tensor } from "../deps/ort.ts";

/**
 * The invocation sequence of an activated LoRA's config, or `null` for any
 * other adapter.
 *
 * @example
 * ```ts
 * import { isAlora } from "./alora.ts";
 * console.log(isAlora({ peftType: "LORA", aloraInvocationTokens: [1, 2] })); // [1, 2]
 * console.log(isAlora({ peftType: "IA3" })); // null
 * ```
 */
export function isAlora(
  config: { peftType: string; aloraInvocationTokens?: readonly number[] | null },
): readonly number[] | null {
  return config.peftType === "LORA" ? config.aloraInvocationTokens ?? null : null;
}

/**
 * PEFT's aLoRA offset of one row: `ids.length - start` of the last
 * occurrence of `invocation` in `ids`, or `null` where it does not occur.
 *
 * @example
 * ```ts
 * import { aloraOffset } from "./alora.ts";
 * console.log(aloraOffset([5, 1, 2, 7, 1, 2, 9], [1, 2])); // 3
 * console.log(aloraOffset([5, 7], [1, 2])); // null
 * ```
 */
export function aloraOffset(ids: ArrayLike<number | bigint>, invocation: readonly number[]): number | null {
  const n = invocation.length;
  for (let start = ids.length - n; start >= 0; start--) {
    let match = true;
    for (let j = 0; j < n && match; j++) match = Number(ids[start + j]) === invocation[j];
    if (match) return ids.length - start;
  }
  return null;
}

/**
 * The mask of one run, float32 `[rows, seq, 1]`: 1 where the adapter applies.
 * Row `r` uses `invocations[r]` (one entry: every row's; `null`: an adapter
 * that is not aLoRA, all ones) and finds it in `promptIds[r]` when given
 * (generation), else in the run's own `input_ids` row.
 *
 * @example
 * ```ts
 * import { aloraMask } from "./alora.ts";
 * import { Tensor } from "../deps/ort.ts";
 * const ids = new Tensor("int64", BigInt64Array.from([4n, 1n, 2n, 8n]), [1, 4]);
 * console.log(aloraMask(ids, [[1, 2]]).data); // Float32Array [0, 1, 1, 1]
 * ```
 */
export function aloraMask(
  inputIds: Tensor,
  invocations: readonly (readonly number[] | null)[],
  promptIds?: readonly (readonly number[])[],
): Tensor {
  const [rows, seq] = inputIds.dims as readonly number[];
  const ids = inputIds.data as BigInt64Array;
  const mask = new Float32Array(rows * seq);
  for (let r = 0; r < rows; r++) {
    const invocation = invocations.length === 1 ? invocations[0] : invocations[r];
    if (invocation === null) {
      mask.fill(1, r * seq, (r + 1) * seq);
      continue;
    }
    const offset = aloraOffset(promptIds ? promptIds[r] : ids.subarray(r * seq, (r + 1) * seq), invocation);
    if (offset !== null) mask.fill(1, (r + 1) * seq - Math.min(offset, seq), (r + 1) * seq);
  }
  return new Tensor("float32", mask, [rows, seq, 1]);
}
