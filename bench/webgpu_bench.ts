/**
 * WebGPU against WASM in one run: `deno bench -A bench/webgpu_bench.ts`.
 *
 * - `decode`: one iteration is one greedy decode step of the bundled demo
 *   (byte-llama, base and with its LoRA merged): one model run with the KV
 *   cache (kept on the GPU on WebGPU), token choice and detokenizing. Decode
 *   tokens/s = iter/s.
 * - `merge`: one iteration is `W += s * B @ A` on a 2048 x 2048 weight
 *   (rank 16, both layouts): the wasm-simd kernel (baseline) against the WGSL
 *   kernel, whose time includes uploading W, A, B and reading W back.
 *   GFLOP/s = 2 * out * in * rank / time.
 *
 * WASM is the baseline of every group. The WebGPU rows run on whatever adapter
 * WebGPU gives (a software one included); without an adapter only WASM runs.
 * When the run ends, a summary prints decode tokens/s and merge GFLOP/s for
 * both devices.
 * @module
 */
import { type BaseModel, fromPretrained, loadBaseModel } from "../mod.ts";
import { type CausalLm, stream } from "../src/generate/mod.ts";
import { loadKernels } from "../src/kernels/kernels.ts";
import type { LoraDims, WeightLayout } from "../src/kernels/types.ts";
import { loadTokenizer } from "../src/tokenizer/mod.ts";
import { createWebGpuKernels, probeWebGpu, WebGpuContext } from "../src/webgpu/mod.ts";

const demo = (path: string) => decodeURIComponent(new URL(`../examples/demo/${path}`, import.meta.url).pathname);
const probe = await probeWebGpu();
const devices = probe.adapter ? (["wasm", "webgpu"] as const) : (["wasm"] as const);
console.log(
  `WebGPU adapter: ${
    probe.adapter ? `${probe.description} (fallback: ${probe.isFallbackAdapter})` : `none (${probe.description})`
  }`,
);

/** Timed work per bench: what the summary reports. */
const measured = new Map<string, { ms: number; count: number; unit: "tokens" | "flops"; work: number }>();
function record(name: string, ms: number, unit: "tokens" | "flops", work: number) {
  const m = measured.get(name) ?? { ms: 0, count: 0, unit, work };
  m.ms += ms;
  m.count++;
  measured.set(name, m);
}

// --- decode ---
const DECODE_TOKENS = 120;
const bases: BaseModel[] = [];
for (const device of devices) {
  const base = await loadBaseModel(demo("byte-llama"), { device });
  bases.push(base);
  const tokenizer = await loadTokenizer(base.source);
  const variants: [string, CausalLm][] = [["base", base], [
    "adapter merged",
    await fromPretrained(base, demo("byte-llama-python-lora")),
  ]];
  for (const [variant, lm] of variants) {
    const name = `${device}: ${variant} decode 1 token`;
    let pieces: AsyncGenerator<string, unknown> | undefined;
    let left = 0;
    Deno.bench({ name, group: `decode ${variant}`, baseline: device === "wasm" }, async (b) => {
      if (pieces === undefined || left === 0) {
        await pieces?.return(undefined);
        pieces = stream(lm, tokenizer, "def ", { maxNewTokens: DECODE_TOKENS, temperature: 0 });
        await pieces.next(); // prefill and the first token, untimed
        left = DECODE_TOKENS - 1;
      }
      b.start();
      const t0 = performance.now();
      await pieces.next();
      record(name, performance.now() - t0, "tokens", 1);
      b.end();
      left--;
    });
  }
}

// --- merge ---
function values(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 31 - 1);
}

const wasm = await loadKernels({ backend: "wasm-simd" });
const gpu = probe.adapter ? new WebGpuContext() : undefined;
const webgpu = gpu ? createWebGpuKernels(await gpu.device()) : undefined;
const dims: LoraDims = { outFeatures: 2048, inFeatures: 2048, rank: 16 };
const flops = 2 * dims.outFeatures * dims.inFeatures * dims.rank;
const w = values(dims.outFeatures * dims.inFeatures, 1);
const a = values(dims.rank * dims.inFeatures, 2);
const b = values(dims.outFeatures * dims.rank, 3);
for (const layout of ["out_in", "in_out"] as WeightLayout[]) {
  const group = `merge 2048x2048 r16 ${layout}`;
  Deno.bench({ name: `wasm: ${group}`, group, baseline: true }, () => {
    const t0 = performance.now();
    wasm.mergeLora(w, a, b, dims, 1e-3, layout);
    record(`wasm: ${group}`, performance.now() - t0, "flops", flops);
  });
  if (webgpu) {
    Deno.bench({ name: `webgpu: ${group}`, group }, async () => {
      const t0 = performance.now();
      await webgpu.mergeLora(w, a, b, dims, 1e-3, layout);
      record(`webgpu: ${group}`, performance.now() - t0, "flops", flops);
    });
  }
}

globalThis.addEventListener("unload", () => {
  console.log("\nsummary (mean over every timed iteration, warmup included):");
  for (const [name, { ms, count, unit, work }] of measured) {
    const perSecond = (count * work) / (ms / 1000);
    console.log(
      unit === "tokens"
        ? `  ${name}: ${perSecond.toFixed(1)} tokens/s`
        : `  ${name}: ${(perSecond / 1e9).toFixed(2)} GFLOP/s`,
    );
  }
  gpu?.destroy();
});
