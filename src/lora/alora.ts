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
 * (generation), else in the run's own `input_ids` row. PEFT applies the
 * prompt's offsets to every run as they are: a generation that reruns the
 * whole sequence (`use_cache: false` in PEFT) then adapts only the last
 * `offset` positions. With `cached` (the model's config does not turn the
 * cache off: PEFT's generate keeps one) the run's tokens past the prompt (by
 * its `attentionMask`) are adapted too, as PEFT's cached steps adapt them.
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
  generation: { attentionMask?: Tensor; cached?: boolean } = {},
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
    const prompt = promptIds?.[r];
    let offset = aloraOffset(prompt ?? ids.subarray(r * seq, (r + 1) * seq), invocation);
    if (offset === null) continue;
    // Tokens of this run that follow the prompt: its real (unpadded) tokens beyond the prompt's length.
    if (prompt && generation.cached) {
      offset += Math.max(0, realTokens(generation.attentionMask, r, seq) - prompt.length);
    }
    mask.fill(1, (r + 1) * seq - Math.min(offset, seq), (r + 1) * seq);
  }
  return new Tensor("float32", mask, [rows, seq, 1]);
}

/** Real tokens among the run's `seq` positions of row `r`: the ones of its mask's last `seq` columns (no mask: all). */
function realTokens(attentionMask: Tensor | undefined, r: number, seq: number): number {
  if (!attentionMask) return seq;
  const width = attentionMask.dims[1];
  const data = attentionMask.data as BigInt64Array;
  let count = 0;
  for (let p = width - seq; p < width; p++) if (data[r * width + p] !== 0n) count++;
  return count;
}
