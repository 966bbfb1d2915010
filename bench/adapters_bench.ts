/**
 * Dynamic (unmerged) adapters against merged ones, on a Llama-shaped base
 * with hidden size 512 that the bench builds in memory (4 layers, MLP 1536,
 * vocab 256, seeded weights; see `support/synthetic_llama.ts`) and two
 * LoRA adapters (r=16, lora_alpha=32) on all seven linear modules of every
 * layer: `deno bench -A [--json] bench/adapters_bench.ts`. WASM backend.
 *
 * - group `switch`: `dynamic-switch` (baseline) is one run (seq = 1) of a
 *   dynamic-mode model holding both adapters, with the other adapter than
 *   the previous run; `merged-rebuild` is what switching costs in merged
 *   mode: `fromPretrained(..., { mode: "merged" })` (merge + new session),
 *   then release. Target: merged-rebuild / dynamic-switch >= 20.
 * - group `decode`: one decode step (one run, seq = 1) with one adapter,
 *   `merged-run` (baseline) against `dynamic-run` (the same adapter fed to
 *   the LoRA side branches), and `base-run` (no adapter) for the issue's
 *   dynamic / base ratio. Target: dynamic-run / merged-run <= 1.3.
 *
 * Deno's summary prints each bench's time relative to its group's baseline,
 * which is the ratio the target names.
 * @module
 */
import { fromPretrained, loadBaseModel, Tensor } from "../mod.ts";
import { type LlamaShape, syntheticLlama, syntheticLora } from "./support/synthetic_llama.ts";

const SHAPE: LlamaShape = { vocab: 256, hidden: 512, intermediate: 1536, layers: 4 };
const RANK = 16;
const ALPHA = 32;

const base = await loadBaseModel(syntheticLlama(SHAPE), { device: "wasm" });
const adapters = { one: syntheticLora(SHAPE, RANK, ALPHA, 1), two: syntheticLora(SHAPE, RANK, ALPHA, 2) };
const dynamic = await fromPretrained(base, adapters.one, { mode: "dynamic", adapterName: "one" });
await dynamic.loadAdapter(adapters.two, "two");
const merged = await fromPretrained(base, adapters.one, { mode: "merged", adapterName: "one" });

const feeds = { input_ids: new Tensor("int64", new BigInt64Array([42n]), [1, 1]) };

// Untimed: check that dynamic and merged agree and that the adapter changes the output.
const logits = async (run: Promise<Record<string, Tensor>>) => (await run).logits.data as Float32Array;
const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
const viaMerged = await logits(merged.run(feeds));
const [offBy, baseOffBy] = [
  maxDiff(await logits(dynamic.run(feeds, { adapter: "one" })), viaMerged),
  maxDiff(await logits(base.run(feeds)), viaMerged),
];
if (offBy > 1e-3 || baseOffBy < 1e-2) {
  throw new Error(`adapter outputs look wrong: dynamic vs merged ${offBy}, base vs merged ${baseOffBy}`);
}
// Untimed warm-up, so the first bench does not pay for the runtime's wasm tier-up alone.
for (let i = 0; i < 40; i++) {
  await merged.run(feeds);
  await dynamic.run(feeds, { adapter: i % 2 === 0 ? "one" : "two" });
}

let turn = 0;
Deno.bench({ name: "dynamic-switch", group: "switch", baseline: true }, async () => {
  await dynamic.run(feeds, { adapter: turn++ % 2 === 0 ? "two" : "one" });
});

Deno.bench({ name: "merged-rebuild", group: "switch" }, async () => {
  const model = await fromPretrained(base, adapters.two, { mode: "merged", adapterName: "two" });
  await model.release();
});

Deno.bench({ name: "merged-run", group: "decode", baseline: true }, async () => {
  await merged.run(feeds);
});

Deno.bench({ name: "base-run", group: "decode" }, async () => {
  await base.run(feeds);
});

Deno.bench({ name: "dynamic-run", group: "decode" }, async () => {
  await dynamic.run(feeds, { adapter: "one" });
});
