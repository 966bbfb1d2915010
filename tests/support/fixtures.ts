/**
 * Test support for the reference fixtures: paths, expected outputs and the
 * prefill/decode feeds described in tests/fixtures/README.md.
 * @module
 */
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { type Feeds, type Outputs, Tensor } from "../../mod.ts";
import { parseSafetensors } from "../../src/safetensors/mod.ts";

/** Absolute path of a fixture folder. */
export function fixture(name: string): string {
  return fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url));
}

/** The fixture adapters and the base each applies to. */
export const ADAPTERS: ReadonlyArray<[adapter: string, base: string]> = [
  ["llama-tiny-lora-qv", "llama-tiny"],
  ["llama-tiny-lora-all-rslora-f16", "llama-tiny"],
  ["llama-tiny-dora-qv", "llama-tiny"],
  ["llama-tiny-lora-embed", "llama-tiny"],
  ["llama-tiny-lora-mlp-b", "llama-tiny"],
  ["gpt2-tiny-lora-c_attn", "gpt2-tiny"],
];

/** Expected tensors of a fixture folder. */
export interface Expected {
  inputIds: BigInt64Array;
  logits: Float32Array;
  nextInputIds: BigInt64Array;
  nextLogits: Float32Array;
}

/** Reads a fixture's `expected.safetensors`. */
export async function expected(name: string): Promise<Expected> {
  const st = parseSafetensors(new Uint8Array(await readFile(`${fixture(name)}/expected.safetensors`)));
  return {
    inputIds: st.toTypedArray("input_ids") as BigInt64Array,
    logits: st.toFloat32("logits"),
    nextInputIds: st.toTypedArray("next_input_ids") as BigInt64Array,
    nextLogits: st.toFloat32("next_logits"),
  };
}

interface ModelLike {
  readonly inputNames: readonly string[];
  readonly config: Readonly<Record<string, unknown>>;
  run(feeds: Feeds): Promise<Outputs>;
}

function int64(values: bigint[], dims: number[]) {
  return new Tensor("int64", BigInt64Array.from(values), dims);
}

/** Prefill with an empty past, then one decode step feeding `present.*` back. */
export async function prefillAndStep(
  model: ModelLike,
  e: Expected,
): Promise<{ logits: Float32Array; nextLogits: Float32Array }> {
  const c = model.config as Record<string, number>;
  const heads = c.num_key_value_heads ?? c.num_attention_heads ?? c.n_head;
  const headDim = c.head_dim ?? (c.hidden_size ?? c.n_embd) / (c.num_attention_heads ?? c.n_head);
  const n = e.inputIds.length;
  const feeds: Feeds = {
    input_ids: new Tensor("int64", e.inputIds, [1, n]),
    attention_mask: int64(Array(n).fill(1n), [1, n]),
    position_ids: int64([...Array(n).keys()].map(BigInt), [1, n]),
  };
  const pastNames = model.inputNames.filter((name) => name.startsWith("past_key_values."));
  for (const name of pastNames) feeds[name] = new Tensor("float32", new Float32Array(), [1, heads, 0, headDim]);
  const first = await model.run(feeds);
  const step: Feeds = {
    input_ids: new Tensor("int64", e.nextInputIds, [1, 1]),
    attention_mask: int64(Array(n + 1).fill(1n), [1, n + 1]),
    position_ids: int64([BigInt(n)], [1, 1]),
  };
  for (const name of pastNames) step[name] = first[name.replace("past_key_values.", "present.")];
  const second = await model.run(step);
  return { logits: first.logits.data as Float32Array, nextLogits: second.logits.data as Float32Array };
}

/** Largest absolute difference of two equally long arrays. */
export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
