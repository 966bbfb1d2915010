/**
 * Dynamic mode's decode-step overhead on a base of SmolLM2-135M's shape
 * (random weights, exported with a KV cache as Optimum does, and a PEFT LoRA
 * r=16 on all seven projections: make them with
 * `python bench/support/make_smollm_shape.py DIR`), then
 * `deno run -A bench/dynamic_decode_bench.ts DIR [steps] [--variant=V] [--device=wasm|native] [--threads=N]
 * [--check]` (or `bun bench/dynamic_decode_bench.ts ...`; threads: the runtime's default unless given; 1 gives
 * the least noisy CPU times).
 *
 * One decode step (one new token after a 32-token past) of `base` (the base
 * session) against one branched session as the engine builds it (per-row
 * inputs), the variant V:
 * - `separate`: fed the adapter, one `x @ A` per branch;
 * - `shared` (default): fed the adapter, q/k/v and gate/up sharing one
 *   `x @ A` (`shareA`); also `rank0`, the same session with every branch at
 *   rank 0 (the extra nodes and inputs without adapter data);
 * - `baked`: the shared graph with the adapter's feeds made initializers
 *   (the same nodes, nothing fed): `shared - baked` is what feeding costs.
 * Every variant also times `feed`: a graph with only the adapter's inputs
 * and one Identity, fed the same tensors: what onnxruntime charges per run
 * for taking them, with no compute (its ratio to base is meaningless; read
 * its ms against base's), and `feed0`, the same inputs at rank 0 (empty):
 * `feed - feed0` is what their bytes cost.
 * `--check` also builds the other form and checks both give the same logits.
 *
 * Steps are interleaved (each round one step of each variant, in a shuffled
 * order) and timed in CPU time (process.cpuUsage) and wall time; printed per
 * variant: the median ms per step with its quartiles, tokens/s at the
 * median, the ratio of medians to `base`, and the median (quartiles) of the
 * per-round ratios, which say how noisy the machine was. Compare variants
 * across processes by their ratios to their own `base`.
 *
 * Measured on the shared 2-core machine (5 processes of 40 rounds, 1 thread,
 * CPU time; wall time ran 1.4-2.5x CPU time: other processes held the cores):
 * shared/base 0.78-0.88 on wasm and 0.87-0.95 on native, per-round
 * quartiles about +-7%, for ~4% more arithmetic. Taking the adapter's 390
 * inputs (19.5 MB) costs 4.4-5.1 ms a run on wasm (12-13% of a 36-40 ms base
 * step; `feed0` 1.9 ms of it, ~5 us per input, the bytes ~3 ms) and 2.1-2.2
 * ms on native (5%; `feed0` the same: onnxruntime-node does not copy, but
 * takes ~5 us per input). onnxruntime-web copies every CPU input into its
 * heap on each run (a `_malloc` and `HEAPU8.set` per input); it has no API
 * for resident inputs (only WebGPU's `gpu-buffer` and WebNN's `ml-tensor`
 * locations) and refuses to feed a graph input that has an initializer.
 * Fed (not constant) weights also miss MLAS's pre-packing: in a synthetic
 * graph of just the 210 branches' MatMuls, fed A/B took 8.0-8.9 ms a run
 * against 1.5 ms as initializers. Dropping the 60 int64 `split` inputs
 * (feeding the same tensors without them) saved ~0.1 ms a run.
 *
 * Native (onnxruntime-node), 1 thread, 30 rounds, per-round medians, quiet,
 * a later release on a slower machine: Deno fed 0.885-0.888 (rank 0
 * 0.93-0.94; the 390 inputs 4.5 ms, the same empty), Bun fed 0.805-0.814
 * (rank 0 0.91-0.92; the inputs 9-11 ms against 4.2-4.9 empty: Bun's N-API
 * pays for their bytes too). Neither runtime reaches 0.95x fed.
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
import { makeNode, rawTensor, tensorValueInfo } from "../src/onnx/graph_parts.ts";

const args = process.argv.slice(2);
const dir = args[0];
if (!dir) throw new Error("usage: deno run -A bench/dynamic_decode_bench.ts DIR [rounds] (or bun bench/...)");
const ROUNDS = Number(args.find((a, i) => i > 0 && !a.startsWith("--")) ?? 40);
const PAST = 32;

const threads = args.find((a) => a.startsWith("--threads="))?.slice("--threads=".length);
const device = (args.find((a) => a.startsWith("--device="))?.slice("--device=".length) ?? "wasm") as
  | "wasm"
  | "native";
const base = await loadBaseModel(`${dir}/base`, { device, ...(threads ? { numThreads: Number(threads) } : {}) });
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
    const data = t.data as Float32Array | BigInt64Array;
    const type = t.type === "int64" ? TensorProto_DataType.INT64 : TensorProto_DataType.FLOAT;
    return rawTensor(name, type, t.dims, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  });
  const graph = edited(GraphProtoSchema, g, {
    input: g.input.filter((i) => !(i.name in feeds)),
    initializer: [...g.initializer, ...initializer],
  });
  return edited(ModelProtoSchema, model, { graph });
}

/**
 * A model with only `model`'s inputs named in `feeds` plus `input_ids`, and one Identity of `input_ids`: its run
 * costs what onnxruntime charges for taking those feeds (onnxruntime-web copies each into its heap), no compute.
 */
function feedOnly(model: ModelProto, feeds: Record<string, Tensor>): ModelProto {
  const g = model.graph!;
  const graph = edited(GraphProtoSchema, g, {
    node: [makeNode("Identity", ["input_ids"], ["ids_out"], "feed_only_Identity")],
    input: g.input.filter((i) => i.name in feeds || i.name === "input_ids"),
    output: [tensorValueInfo("ids_out", TensorProto_DataType.INT64, ["batch", "seq"])],
    initializer: [],
    valueInfo: [],
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
  // The base's weights are read again once its session holds them.
  const session = await base.withWeights(() =>
    createSession(bake ? baked(model, on) : model, base.externalData, base.settings, base.file)
  );
  const feedSession = await createSession(feedOnly(model, on), new Map(), base.settings, base.file);
  return { session, on, off: adapterFeeds(branches, []), feedSession };
}
const logits = async (p: Promise<Record<string, Tensor>>) => (await p).logits.data as Float32Array;
const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

// One branched session beside the base per process: a session created after two others of this size ran
// ~10% slower here whatever it held (where it lands in onnxruntime-web's heap), which would bias the ratios.
const which = args.find((a) => a.startsWith("--variant="))?.slice("--variant=".length) ?? "shared";
if (!["separate", "shared", "baked"].includes(which)) throw new Error(`unknown --variant=${which}`);
const graph = await branched(which !== "separate", which === "baked");
const variants: Record<string, () => Promise<unknown>> = {
  base: () => base.run(step),
  [which]: () => graph.session.run(which === "baked" ? step : { ...step, ...graph.on }),
  ...(which === "shared" ? { rank0: () => graph.session.run({ ...step, ...graph.off }) } : {}),
  // Only the adapter's feeds and the step's ids, through a graph that computes nothing.
  feed: () => graph.feedSession.run({ input_ids: step.input_ids, ...graph.on }),
  // The same inputs at rank 0 (empty): what taking them costs besides their bytes.
  feed0: () => graph.feedSession.run({ input_ids: step.input_ids, ...graph.off }),
};
// The adapter changes the logits, and (checked untimed) the shared product gives the separate branches' ones.
const viaGraph = await logits(graph.session.run(which === "baked" ? step : { ...step, ...graph.on }));
if (maxDiff(viaGraph, await logits(base.run(step))) < 1e-3) throw new Error("the adapter does not change the logits");
if (args.includes("--check")) {
  const check = await branched(which === "separate");
  const diff = maxDiff(viaGraph, await logits(check.session.run({ ...step, ...check.on })));
  console.log(`max |shared - separate| ${diff.toExponential(2)}`);
  if (diff > 1e-4) throw new Error(`shared and separate products differ by ${diff}`);
  await check.session.release();
  await check.feedSession.release();
}

const cpu: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
const wall: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
for (const run of Object.values(variants)) for (let i = 0; i < 3; i++) await run();
// One step of each variant per round, so load from other processes falls on all of them alike.
let seed = 1;
for (let r = 0; r < ROUNDS; r++) {
  // In a shuffled order each round, so no variant always follows another.
  const order = Object.entries(variants).map((v) => [v, seed = (seed * 48271) % 2147483647] as const);
  for (const [[name, run]] of order.sort((a, b) => a[1] - b[1])) {
    const [t, w] = [process.cpuUsage(), performance.now()];
    await run();
    const d = process.cpuUsage(t);
    wall[name].push(performance.now() - w);
    cpu[name].push((d.user + d.system) / 1000);
  }
}
const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) * q)];
for (const [label, times] of [["cpu", cpu], ["wall", wall]] as const) {
  console.log(
    `${label} time, ${ROUNDS} steps each (${device}, ${base.settings.runtime?.numThreads ?? "default"} threads): ` +
      "median ms (quartiles), tok/s at the median, median ratio to base",
  );
  for (const [name, ms] of Object.entries(times)) {
    const [q1, m, q3] = [0.25, 0.5, 0.75].map((q) => quantile(ms, q));
    // Ratio of per-round pairs (the same moment of load), median and quartiles.
    const ratios = ms.map((v, r) => times.base[r] / v);
    const [r1, rm, r3] = [0.25, 0.5, 0.75].map((q) => quantile(ratios, q));
    console.log(
      `  ${name.padEnd(8)} ${m.toFixed(1)} ms (${q1.toFixed(1)}..${q3.toFixed(1)})  ${(1000 / m).toFixed(2)} tok/s  ` +
        `x base ${(times.base.length ? quantile(times.base, 0.5) / m : 1).toFixed(3)}, per round ${rm.toFixed(3)} ` +
        `(${r1.toFixed(3)}..${r3.toFixed(3)})`,
    );
  }
}
await graph.session.release();
await graph.feedSession.release();
