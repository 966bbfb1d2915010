/**
 * What every KV-cache decoding step does after its run, shared by the
 * single-row and batched decoder sessions: keep `present.*` as the next
 * past, free GPU buffers nobody keeps, and bring the logits to the CPU.
 * @module
 */
import { Tensor } from "../deps/ort.ts";
import type { DecoderLayout } from "./decoder_layout.ts";

/**
 * Frees the GPU buffers of tensors that live on the GPU; CPU tensors are left to the GC.
 *
 * @example
 * ```ts
 * import { disposeGpu } from "./kv_step.ts";
 * import { Tensor } from "../deps/ort.ts";
 * disposeGpu([new Tensor("float32", new Float32Array(1), [1])]); // a CPU tensor: left alone
 * ```
 */
export function disposeGpu(tensors: Iterable<Tensor>): void {
  for (const tensor of tensors) if (tensor.location === "gpu-buffer") tensor.dispose();
}

/**
 * The next past (`present.*` outputs under their `past_key_values.*` input names) and the
 * step's logits on the CPU; frees the old past and every other GPU output that is not kept.
 *
 * @example
 * ```ts
 * import { keepStep } from "./kv_step.ts";
 * import type { DecoderLayout } from "./decoder_layout.ts";
 * import type { Tensor } from "../deps/ort.ts";
 * declare const layout: DecoderLayout, past: Record<string, Tensor>, outputs: Record<string, Tensor>;
 * const { next, logits } = await keepStep(layout, past, outputs);
 * console.log(Object.keys(next).length, logits.dims);
 * ```
 */
export async function keepStep(
  layout: DecoderLayout,
  past: Readonly<Record<string, Tensor>>,
  outputs: Readonly<Record<string, Tensor>>,
): Promise<{ next: Record<string, Tensor>; logits: Tensor }> {
  const next: Record<string, Tensor> = {};
  for (const { input, output } of layout.cache) next[input] = outputs[output];
  const used = new Set(Object.values(next));
  disposeGpu(Object.values(past).filter((t) => !used.has(t)));
  // Any other GPU-resident output (only when the caller asked for it) is not kept.
  disposeGpu(Object.entries(outputs).filter(([name, t]) => name !== "logits" && !used.has(t)).map(([, t]) => t));
  const logits = outputs.logits;
  if (logits.location !== "gpu-buffer") return { next, logits };
  return { next, logits: new Tensor(logits.type, await logits.getData(true), logits.dims) };
}
