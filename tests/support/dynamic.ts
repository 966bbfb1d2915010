/**
 * Test support for LoRA branches and quantized bases: loading a fixture base
 * as a bare ModelProto, planning an adapter the way `fromPretrained` does,
 * sessions whose runs add branch feeds, and merged references.
 * @module
 */
import { readFile } from "node:fs/promises";
import { parseLoraConfig } from "../../src/config/mod.ts";
import type { ModelProto } from "../../src/deps/onnx_proto.ts";
import type { ModelSession } from "../../src/model/model_session.ts";
import { doraNormsReference, mergeLoraReference, scaleOutputsReference } from "../../src/kernels/reference.ts";
import { groupAdapterKeys } from "../../src/lora/adapter_weights.ts";
import type { ActiveAdapter } from "../../src/lora/dynamic_feeds.ts";
import { type AdapterPlan, type LoraPatch, planAdapter } from "../../src/lora/plan.ts";
import { decodeModel } from "../../src/onnx/model_file.ts";
import { patchModel, type WeightUpdate } from "../../src/onnx/patch.ts";
import { readTargetWeight } from "../../src/onnx/quantized_weights.ts";
import { indexWeights, type WeightIndex, type WeightTarget } from "../../src/onnx/weight_index.ts";
import { createSession } from "../../src/model/session.ts";
import type { Feeds, Outputs } from "../../mod.ts";
import { parseSafetensors } from "../../src/safetensors/mod.ts";
import { fixture } from "./fixtures.ts";

/** A fixture base as a decoded model, its index and its config. */
export interface Base {
  model: ModelProto;
  weights: WeightIndex;
  config: Record<string, unknown>;
}

/** Loads a fixture base without a session. */
export async function loadBase(name: string): Promise<Base> {
  const model = decodeModel(new Uint8Array(await readFile(`${fixture(name)}/onnx/model.onnx`)), "model.onnx");
  const config = JSON.parse(await readFile(`${fixture(name)}/config.json`, "utf8"));
  return { model, weights: indexWeights(model.graph!), config };
}

/** An adapter planned against a weight index, as `fromPretrained` plans it. */
export interface Adapter extends ActiveAdapter {
  fanInFanOut: boolean;
}

/** Plans a fixture adapter against `weights`. */
export async function loadAdapter(name: string, weights: WeightIndex): Promise<Adapter> {
  const dir = fixture(name);
  const config = parseLoraConfig(await readFile(`${dir}/adapter_config.json`, "utf8"), { file: "adapter_config.json" });
  const st = parseSafetensors(new Uint8Array(await readFile(`${dir}/adapter_model.safetensors`)));
  const plan = planAdapter(config, groupAdapterKeys(st.names()), (k) => st.info(k).shape, weights);
  const cache = new Map<string, Float32Array>();
  const tensor = (key: string) => {
    let t = cache.get(key);
    if (!t) cache.set(key, t = st.toFloat32(key));
    return t;
  };
  return { plan, tensor, fanInFanOut: config.fanInFanOut };
}

/** Modules a plan puts LoRA on, and those with DoRA. */
export function planModules(plan: AdapterPlan): { modules: string[]; dora: string[] } {
  const lora = plan.patches.filter((p): p is LoraPatch => p.kind === "lora");
  return { modules: lora.map((p) => p.module), dora: lora.filter((p) => p.magnitude).map((p) => p.module) };
}

/** A float32 reader of a graph's weights by target (dequantized for quantized targets). */
export function weightReader(model: ModelProto): (target: WeightTarget) => Float32Array {
  return (target) => readTargetWeight(model.graph!, target, "model.onnx");
}

/** A session plus what `prefillAndStep` needs; each run adds `extra()` to the feeds. */
export interface Runner {
  readonly inputNames: readonly string[];
  readonly config: Readonly<Record<string, unknown>>;
  session: ModelSession;
  extra: Feeds;
  run(feeds: Feeds): Promise<Outputs>;
}

/** Creates a session for `model` whose runs add `runner.extra` (settable) to the feeds. */
export async function runner(model: ModelProto, config: Record<string, unknown>, extra: Feeds = {}): Promise<Runner> {
  const session = await createSession(model, new Map(), {}, "model.onnx");
  const r: Runner = {
    inputNames: session.inputNames,
    config,
    session,
    extra,
    run: (feeds) => session.run({ ...feeds, ...r.extra }),
  };
  return r;
}

/**
 * The reference for several adapters: `W + sum_i w_i s_i B_i A_i` merged
 * with the kernels' plain reference functions (linear LoRA; DoRA rescales
 * the merged rows to `m / ||W + s B A||`, for an adapter alone on its module;
 * embeddings `W + s (B A)^T`).
 */
export function mergedReference(
  base: ModelProto,
  weights: WeightIndex,
  adapters: readonly ActiveAdapter[],
): ModelProto {
  const read = weightReader(base);
  const byModule = new Map<string, Float32Array>();
  const updates: WeightUpdate[] = [];
  for (const adapter of adapters) {
    for (const p of adapter.plan.patches) {
      if (p.kind !== "lora") throw new Error("mergedReference: LoRA patches only");
      let w = byModule.get(p.module);
      if (!w) {
        byModule.set(p.module, w = read(p.target));
        updates.push({
          module: p.module,
          initializer: p.target.initializer,
          readerIndex: p.target.readerIndex,
          inputIndex: p.target.inputIndex,
          values: w,
        });
      }
      const dims = { outFeatures: p.target.outFeatures, inFeatures: p.target.inFeatures, rank: p.rank };
      if (p.target.kind === "embedding") {
        // An embedding table [num, dim] is the "in_out" layout with out = dim.
        mergeLoraReference(
          w,
          adapter.tensor(p.a),
          adapter.tensor(p.b),
          dims,
          p.scale * (adapter.weight ?? 1),
          "in_out",
        );
        continue;
      }
      const [a, b, s] = [adapter.tensor(p.a), adapter.tensor(p.b), p.scale * (adapter.weight ?? 1)];
      const norms = p.magnitude ? doraNormsReference(w, a, b, dims, s, p.target.layout) : undefined;
      mergeLoraReference(w, a, b, dims, s, p.target.layout);
      if (norms) {
        const m = adapter.tensor(p.magnitude!);
        scaleOutputsReference(w, m.map((v, o) => v / norms[o]), dims, p.target.layout);
      }
    }
  }
  return patchModel(base, weights, updates);
}
