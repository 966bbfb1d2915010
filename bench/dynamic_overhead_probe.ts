/**
 * Where dynamic mode's per-run cost goes, on the hidden-512 Llama shape of
 * `adapters_bench.ts` (layers from the first argument, default 4): one run
 * (seq = 1) of the base, of the branched graph with every branch at rank 0
 * (the extra nodes and inputs, no adapter data), and with an adapter (r=16
 * on all seven projections), for 2-D and per-row (mixed-batch) branch
 * inputs. Rounds are interleaved and timed in CPU time (process.cpuUsage),
 * since wall time on a shared machine is noisy:
 * `deno run -A bench/dynamic_overhead_probe.ts [layers]`.
 * @module
 */
import { loadBaseModel, Tensor } from "../mod.ts";
import { readAdapter } from "../src/model/adapter.ts";
import { addLoraBranches } from "../src/onnx/lora_branches.ts";
import { adapterFeeds, loraPatches } from "../src/lora/dynamic_feeds.ts";
import { createSession } from "../src/model/session.ts";
import { type LlamaShape, syntheticLlama, syntheticLora } from "./support/synthetic_llama.ts";

const layers = Number(Deno.args[0] ?? 4);
const SHAPE: LlamaShape = { vocab: 256, hidden: 512, intermediate: 1536, layers };
const base = await loadBaseModel(syntheticLlama(SHAPE), { device: "wasm" });
const adapter = await readAdapter(base.weights, syntheticLora(SHAPE, 16, 32, 1), "one");
const modules = loraPatches(adapter.plan).map((p) => p.module);
const feeds = { input_ids: new Tensor("int64", new BigInt64Array([42n]), [1, 1]) };
import process from "node:process";
/** Interleaved rounds; per variant the median CPU ms per run (the machine is shared: wall time is noisy). */
async function compare(variants: Record<string, () => Promise<unknown>>, rounds = 15, per = 20) {
  const cpu: Record<string, number[]> = {};
  for (const [name, run] of Object.entries(variants)) {
    cpu[name] = [];
    for (let i = 0; i < 10; i++) await run();
  }
  for (let r = 0; r < rounds; r++) {
    for (const [name, run] of Object.entries(variants)) {
      const t = process.cpuUsage();
      for (let i = 0; i < per; i++) await run();
      const d = process.cpuUsage(t);
      cpu[name].push((d.user + d.system) / 1000 / per);
    }
  }
  const med = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  return Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, med(v)]));
}
const active = [{ plan: adapter.plan, tensor: (k: string) => adapter.weights.toFloat32(k) }];
for (const perRow of [false, true]) {
  const { model, branches } = addLoraBranches(base.onnx, base.weights, modules, { perRow });
  const s = await base.withWeights(() => createSession(model, base.externalData, base.settings, base.file));
  const on = adapterFeeds(branches, active);
  const off = adapterFeeds(branches, []);
  const bytes = Object.values(on).reduce((n, t) => n + t.size * 4, 0);
  console.log(`perRow=${perRow}: ${Object.keys(on).length} extra inputs, ${(bytes / 1e6).toFixed(2)} MB`);
  const m = await compare({
    base: () => base.run(feeds),
    rank0: () => s.run({ ...feeds, ...off }),
    adapter: () => s.run({ ...feeds, ...on }),
  });
  console.log(
    `  cpu ms/run ${JSON.stringify(m)}  base/adapter ${(m.base / m.adapter).toFixed(3)}  base/rank0 ${
      (m.base / m.rank0).toFixed(3)
    }`,
  );
  await s.release();
}
