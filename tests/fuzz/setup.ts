/**
 * What the fuzz targets run against: the fixtures' llama-tiny base (for
 * planning configs), and the demo base with its adapter in a pool (for
 * HTTP), plus the state check: logits of the base and of a loaded adapter,
 * and the pool's greedy answer, which must not change while fuzzing.
 * @module
 */
import { fileURLToPath } from "node:url";
import { readFile } from "node:fs/promises";
import { type BaseModel, fromPretrained, loadBaseModel, type PeftModel } from "../../mod.ts";
import { Tensor } from "../../src/deps/ort.ts";
import { AdapterPool } from "../../src/serving/mod.ts";
import { configTarget, type FuzzTarget, httpTarget, onnxTarget, safetensorsTarget } from "./targets.ts";

const DEMO = fileURLToPath(new URL("../../examples/demo/byte-llama", import.meta.url));
const DEMO_ADAPTER = fileURLToPath(new URL("../../examples/demo/byte-llama-python-lora", import.meta.url));
const TINY = fileURLToPath(new URL("../fixtures/llama-tiny", import.meta.url));
const ADMIN = "fuzz-admin-token-0123456789";

/** Everything the fuzzer holds, and the check that loaded models are unchanged. */
export interface FuzzSetup {
  targets: FuzzTarget[];
  checkState(after: string): Promise<void>;
  close(): Promise<void>;
}

/** Logits of a prompt of token ids, with an empty KV cache. */
async function logits(
  model: BaseModel | PeftModel,
  config: Record<string, number>,
  ids: number[],
): Promise<Float32Array> {
  const n = ids.length;
  const headDim = config.hidden_size / config.num_attention_heads;
  const feeds: Record<string, Tensor> = {
    input_ids: new Tensor("int64", BigInt64Array.from(ids.map(BigInt)), [1, n]),
    attention_mask: new Tensor("int64", new BigInt64Array(n).fill(1n), [1, n]),
    position_ids: new Tensor("int64", BigInt64Array.from(ids.map((_, i) => BigInt(i))), [1, n]),
  };
  for (let layer = 0; layer < config.num_hidden_layers; layer++) {
    for (const part of ["key", "value"]) {
      feeds[`past_key_values.${layer}.${part}`] = new Tensor("float32", new Float32Array(0), [
        1,
        config.num_key_value_heads,
        0,
        headDim,
      ]);
    }
  }
  return new Float32Array((await model.run(feeds)).logits.data as Float32Array);
}

function same(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && a.every((x, i) => Object.is(x, b[i]));
}

/** Loads the models, the targets and the reference outputs. */
export async function fuzzSetup(): Promise<FuzzSetup> {
  const demoConfig = JSON.parse(await readFile(`${DEMO}/config.json`, "utf8"));
  const demo = await loadBaseModel(DEMO);
  const adapter = await fromPretrained(demo, DEMO_ADAPTER);
  const pool = new AdapterPool(demo, { baseName: "byte-llama", mode: "dynamic" });
  await pool.load("py", { kind: "local", path: DEMO_ADAPTER });
  const tiny = await loadBaseModel(TINY);
  const ids = [1, 100, 101, 102, 32, 40];
  const greedy = async () => {
    let text = "";
    for await (const piece of pool.stream("py", "def ", { maxNewTokens: 12, temperature: 0 })) text += piece;
    return text;
  };
  const reference = {
    base: await logits(demo, demoConfig, ids),
    adapter: await logits(adapter, demoConfig, ids),
    pool: await greedy(),
    models: JSON.stringify(pool.list().map((a) => [a.name, a.status, a.bytes])),
  };
  return {
    targets: [await safetensorsTarget(), await configTarget(tiny), await onnxTarget(), httpTarget(pool, ADMIN)],
    checkState: async (after) => {
      if (!same(await logits(demo, demoConfig, ids), reference.base)) {
        throw new Error(`base logits changed after ${after}`);
      }
      if (!same(await logits(adapter, demoConfig, ids), reference.adapter)) {
        throw new Error(`adapter logits changed after ${after}`);
      }
      if (await greedy() !== reference.pool) throw new Error(`the pool's greedy answer changed after ${after}`);
      const models = JSON.stringify(pool.list().map((a) => [a.name, a.status, a.bytes]));
      if (models !== reference.models) throw new Error(`the pool's adapters changed after ${after}: ${models}`);
    },
    close: async () => {
      await pool.close();
      await adapter.release();
      await tiny.release();
      await demo.release();
    },
  };
}
