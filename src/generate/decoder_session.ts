/**
 * One generation's run of a decoder: the prompt is prefilled once with an
 * empty cache, then each new token is fed alone with the previous step's
 * `present.*` as `past_key_values.*`.
 *
 * On WebGPU sessions the `present.*` outputs are GPU tensors: they are fed
 * back as they are (the cache never leaves the GPU), and each step's
 * previous cache is disposed once the run that read it is done.
 * @module
 */
import { Tensor } from "../deps/ort.ts";
import type { CausalLm, LmRunOptions } from "./causal_lm.ts";
import type { DecoderLayout } from "./decoder_layout.ts";
import { disposeGpu, keepStep } from "./kv_step.ts";

/** An int64 `[1, n]` tensor. */
function int64Row(values: readonly number[]): Tensor {
  return new Tensor("int64", BigInt64Array.from(values, (v) => BigInt(v)), [1, values.length]);
}

/** `[from, from + 1, ..., from + count - 1]`. */
function range(from: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => from + i);
}

/**
 * Runs a decoder token by token, keeping the KV cache between runs. Models
 * without cache inputs are rerun on the whole sequence each step.
 *
 * @example
 * ```ts
 * import { DecoderSession } from "./decoder_session.ts";
 * import { describeDecoder } from "./decoder_layout.ts";
 * import type { CausalLm } from "./causal_lm.ts";
 * declare const lm: CausalLm;
 * const session = new DecoderSession(lm, describeDecoder(lm));
 * let logits = await session.prefill([84, 104, 101, 32]);
 * logits = await session.step(119);
 * ```
 */
export class DecoderSession {
  readonly #lm: CausalLm;
  readonly #layout: DecoderLayout;
  readonly #runOptions?: LmRunOptions;
  #past: Record<string, Tensor> = {};
  #ids: number[] = [];
  /** The prompt (activated LoRA finds its invocation there on every step, as PEFT's generate does). */
  #prompt: readonly number[] = [];
  #runs = 0;

  /**
   * Starts a session; nothing runs until `prefill`.
   * @param lm The model.
   * @param layout Its layout, from `describeDecoder`.
   * @param runOptions Passed to every `lm.run` (the adapter to use).
   */
  constructor(lm: CausalLm, layout: DecoderLayout, runOptions?: LmRunOptions) {
    this.#lm = lm;
    this.#layout = layout;
    this.#runOptions = runOptions;
  }

  /** How many times the model has been run. */
  get runs(): number {
    return this.#runs;
  }

  /** Tokens the model has seen so far (prompt plus fed tokens). */
  get length(): number {
    return this.#ids.length;
  }

  /** Runs the whole prompt with an empty cache; returns the logits. */
  prefill(ids: readonly number[]): Promise<Tensor> {
    this.#ids = [...ids];
    this.#prompt = [...ids];
    const empty: Record<string, Tensor> = {};
    for (const { input } of this.#layout.cache) {
      empty[input] = new Tensor("float32", new Float32Array(0), [...this.#layout.emptyPastDims]);
    }
    disposeGpu(Object.values(this.#past));
    this.#past = {};
    return this.#run(ids, 0, empty, false);
  }

  /** Feeds one more token; returns the logits. */
  step(id: number): Promise<Tensor> {
    this.#ids.push(id);
    if (this.#layout.cache.length === 0) return this.#run(this.#ids, 0, {}, false);
    return this.#run([id], this.#ids.length - 1, this.#past, true);
  }

  /** Frees the KV cache held between steps (GPU buffers on WebGPU); the session can prefill again. */
  dispose(): void {
    disposeGpu(Object.values(this.#past));
    this.#past = {};
  }

  async #run(
    ids: readonly number[],
    pastLength: number,
    past: Record<string, Tensor>,
    useCache: boolean,
  ): Promise<Tensor> {
    const layout = this.#layout;
    const feeds: Record<string, Tensor> = { ...past, input_ids: int64Row(ids) };
    if (layout.attentionMask) {
      feeds.attention_mask = int64Row(new Array(pastLength + ids.length).fill(1));
    }
    if (layout.positionIds) feeds.position_ids = int64Row(range(pastLength, ids.length));
    if (layout.useCacheBranch) feeds.use_cache_branch = new Tensor("bool", new Uint8Array([useCache ? 1 : 0]), [1]);
    this.#runs++;
    const outputs = await this.#lm.run(feeds, { ...this.#runOptions, promptIds: [this.#prompt] });
    const { next, logits } = await keepStep(layout, past, outputs);
    this.#past = next;
    return logits;
  }
}
