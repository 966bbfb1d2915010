/**
 * Dynamic mode's decode-step overhead on a base of SmolLM2-135M's shape
 * (random weights, exported with a KV cache as Optimum does, and a PEFT LoRA
 * r=16 on all seven projections: make them with
 * `python bench/support/make_smollm_shape.py DIR`), then
 * `deno run -A bench/dynamic_decode_bench.ts DIR [rounds]`.
 *
 * One decode step (one new token after a 32-token past) of:
 * - `base`: the base session;
 * - `dynamic`: the branched session (per-row inputs, as the engine builds
 *   it) fed the adapter;
 * - `rank0`: the same session with every branch at rank 0 (the extra nodes
 *   without adapter data);
 * - `baked`: the branched graph with the adapter's feeds made initializers
 *   (the same nodes, nothing fed): `dynamic - baked` is what feeding costs.
 *
 * Rounds are interleaved and timed in CPU time (process.cpuUsage), since
 * wall time on a shared machine is noisy; printed per variant: the median
 * ms per step and tokens per CPU-second, each ratio to `base` with its
 * spread over rounds (min..max of the per-round ratios).
 * @module
 */
import process from "node:process";
import { loadBaseModel, Tensor } from "../mod.ts";
import { readAdapter } from "../src/model/adapter.ts";
import { addLoraBranches } from "../src/onnx/lora_branches.ts";
import { adapterFeeds, loraPatches } from "../src/lora/dynamic_feeds.ts";
import { createSession } from "../src/model/session.ts";
import { GraphProtoSchema, type ModelProto, ModelProtoSchema, TensorProto_DataType } from "../src/deps/onnx_proto.ts";
import { edited } from "../src/onnx/proto_edit.ts";
import { rawTensor } from "../src/onnx/graph_parts.ts";

const dir = Deno.args[0];
if (!dir) throw new Error("usage: deno run -A bench/dynamic_decode_bench.ts DIR [rounds]");
const ROUNDS = Number(Deno.args.find((a, i) => i > 0 && !a.startsWith("--")) ?? 7);
const PER = 4;
const PAST = 32;

const base = await loadBaseModel(`${dir}/base`, { device: "wasm" });
const adapter = await readAdapter(base.weights, `${dir}/lora`, "lora");
const modules = loraPatches(adapter.plan).map((p) => p.module);
const config = base.config as { num_hidden_layers: number; num_key_value_heads: number; hidden_size: number };
const heads = config.num_key_value_heads;
const headDim = config.hidden_size / (base.config.num_attention_heads as number);
const step: Record<string, Tensor> = {
  input_ids: new Tensor("int64", new BigInt64Array([42n]), [1, 1]),
  attention_mask: new Tensor("int64", new BigInt64Array(PAST + 1).fill(1n), [1, PAST + 1]),
  position_ids: new Tensor("int64", new BigInt64Array([BigInt(PAST)]), [1, 1]),
};
for (let i = 0; i < config.num_hidden_layers; i++) {
  for (const k of ["key", "value"]) {
    const data = new Float32Array(heads * PAST * headDim).map((_, j) => Math.sin(j + i));
    step[`past_key_values.${i}.${k}`] = new Tensor("float32", data, [1, heads, PAST, headDim]);
  }
}

/** `model` with these inputs turned into initializers holding the fed values. */
function baked(model: ModelProto, feeds: Record<string, Tensor>): ModelProto {
  const g = model.graph!;
  const initializer = Object.entries(feeds).map(([name, t]) => {
    const data = t.data as Float32Array;
    return rawTensor(
      name,
      TensorProto_DataType.FLOAT,
      t.dims,
      new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    );
  });
  const graph = edited(GraphProtoSchema, g, {
    input: g.input.filter((i) => !(i.name in feeds)),
    initializer: [...g.initializer, ...initializer],
  });
  return edited(ModelProtoSchema, model, { graph });
}

const active = [{ plan: adapter.plan, tensor: (k: string) => adapter.weights.toFloat32(k) }];
const nodes = (m: ModelProto) => m.graph!.node.length;
/** The branched graph (q/k/v and gate/up sharing x @ A or not), its session and feeds. */
async function branched(shareA: boolean, bake = false) {
  const { model, branches } = addLoraBranches(base.onnx, base.weights, modules, { perRow: true, shareA });
  const on = adapterFeeds(branches, active);
  const bytes = Object.values(on).reduce((n, t) => n + t.size * (t.type === "int64" ? 8 : 4), 0);
  console.log(
    `shareA=${shareA}: ${Object.keys(on).length} fed inputs (${(bytes / 1e6).toFixed(1)} MB), ` +
      `${nodes(model) - nodes(base.onnx)} extra nodes`,
  );
  const session = await createSession(bake ? baked(model, on) : model, base.externalData, base.settings, base.file);
  return { session, on, off: adapterFeeds(branches, []) };
}
const logits = async (p: Promise<Record<string, Tensor>>) => (await p).logits.data as Float32Array;
const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

// Two branched sessions beside the base (more would not fit onnxruntime-web's 4 GB heap):
// `separate` vs `shared`, or with --feeds `shared` vs the same graph with the adapter baked in.
const feedsMode = Deno.args.includes("--feeds");
const shared = await branched(true);
const other = feedsMode ? await branched(true, true) : await branched(false);
const variants: Record<string, () => Promise<unknown>> = feedsMode
  ? {
    base: () => base.run(step),
    shared: () => shared.session.run({ ...step, ...shared.on }),
    rank0: () => shared.session.run({ ...step, ...shared.off }),
    baked: () => other.session.run(step),
  }
  : {
    base: () => base.run(step),
    separate: () => other.session.run({ ...step, ...other.on }),
    shared: () => shared.session.run({ ...step, ...shared.on }),
  };
// The same logits either way; the adapter changes them.
const viaShared = await logits(shared.session.run({ ...step, ...shared.on }));
const viaOther = await logits(other.session.run(feedsMode ? step : { ...step, ...other.on }));
const [otherOff, baseOff] = [maxDiff(viaShared, viaOther), maxDiff(viaShared, await logits(base.run(step)))];
console.log(`max |shared - ${feedsMode ? "baked" : "separate"}| ${otherOff.toExponential(2)}`);
if (otherOff > 1e-4 || baseOff < 1e-3) throw new Error(`outputs look wrong: ${otherOff}, base ${baseOff}`);

const cpu: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
for (const run of Object.values(variants)) for (let i = 0; i < 3; i++) await run();
for (let r = 0; r < ROUNDS; r++) {
  for (const [name, run] of Object.entries(variants)) {
    const t = process.cpuUsage();
    for (let i = 0; i < PER; i++) await run();
    const d = process.cpuUsage(t);
    cpu[name].push((d.user + d.system) / 1000 / PER);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const [name, ms] of Object.entries(cpu)) {
  const ratios = ms.map((m, r) => cpu.base[r] / m);
  console.log(
    `${name.padEnd(8)} ${median(ms).toFixed(2)} ms/step  ${(1000 / median(ms)).toFixed(2)} tok/cpu-s  ` +
      `x base ${median(ratios).toFixed(3)} (${Math.min(...ratios).toFixed(3)}..${Math.max(...ratios).toFixed(3)})`,
  );
}
await shared.session.release();
await other.session.release();
