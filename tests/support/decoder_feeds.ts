/**
 * Test support for decoder fixtures with a KV cache: the batch a fixture's
 * `expected.safetensors` holds, as the ONNX takes it on a first run.
 * @module
 */
import { readFile } from "node:fs/promises";
import { type Feeds, Tensor } from "../../mod.ts";
import { parseSafetensors, type Safetensors } from "../../src/safetensors/mod.ts";

/** What a model says about its inputs (a base and a PEFT model both do). */
export interface DecoderInputs {
  readonly inputNames: readonly string[];
  readonly config: Readonly<Record<string, unknown>>;
}

/**
 * The file at `path`, and its `input_ids`, `attention_mask` and
 * `position_ids` (those `model` takes) with an empty past for each of the
 * model's `past_key_values.*` inputs (`[rows, kv heads, 0, head dim]`).
 */
export async function firstRunFeeds(path: string, model: DecoderInputs): Promise<{ st: Safetensors; feeds: Feeds }> {
  const st = parseSafetensors(new Uint8Array(await readFile(path)));
  const feeds: Feeds = {};
  for (const name of ["input_ids", "attention_mask", "position_ids"]) {
    if (model.inputNames.includes(name)) {
      feeds[name] = new Tensor("int64", st.toTypedArray(name) as BigInt64Array, st.get(name).shape);
    }
  }
  const rows = feeds.input_ids.dims[0];
  const kv = Number(model.config.num_key_value_heads);
  const headDim = Number(model.config.hidden_size) / Number(model.config.num_attention_heads);
  for (const name of model.inputNames.filter((n) => n.startsWith("past_key_values."))) {
    feeds[name] = new Tensor("float32", new Float32Array(0), [rows, kv, 0, headDim]);
  }
  return { st, feeds };
}
