/**
 * The model side of generation: anything that runs an Optimum-style decoder
 * (`BaseModel`, `PeftModel`, or a thin wrapper over an ORT session).
 * @module
 */
import type { InferenceSession, Tensor } from "../deps/ort.ts";

/** Options passed through to {@linkcode CausalLm.run}: ORT's run options plus the adapter. */
export interface LmRunOptions extends InferenceSession.RunOptions {
  /** Which loaded adapter(s) to apply, `null` for none; omitted when the caller gave none. */
  adapter?: string | readonly string[] | null;
  /** One adapter name per batch row (mixed batches); only where the caller gave them. */
  adapterNames?: readonly string[];
  /** The prompt's token ids per row, on every run of a generation (activated LoRA finds its invocation there). */
  promptIds?: readonly (readonly number[])[];
}

/**
 * A causal language model as generation needs it: named tensors in, named
 * tensors out (like `ort.InferenceSession.run`), the input/output names, and
 * the parsed `config.json` (for the shape of the empty KV cache and the
 * context length).
 *
 * @example
 * ```ts
 * import type { CausalLm } from "./causal_lm.ts";
 * import { ort } from "../deps/ort.ts";
 * declare const onnxBytes: Uint8Array;
 * declare const config: Record<string, unknown>;
 * const session = await ort.InferenceSession.create(onnxBytes);
 * const lm: CausalLm = {
 *   inputNames: session.inputNames,
 *   outputNames: session.outputNames,
 *   config,
 *   run: (feeds) => session.run(feeds),
 * };
 * ```
 */
export interface CausalLm {
  /** Names of the model's inputs (`input_ids`, `past_key_values.0.key`, ...). */
  readonly inputNames: readonly string[];
  /** Names of the model's outputs (`logits`, `present.0.key`, ...). */
  readonly outputNames: readonly string[];
  /** The parsed `config.json` of the model. */
  readonly config: Readonly<Record<string, unknown>>;
  /** Runs the model once. */
  run(feeds: Record<string, Tensor>, options?: LmRunOptions): Promise<Record<string, Tensor>>;
}
