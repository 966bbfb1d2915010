/**
 * Training throughput against PyTorch CPU, in one run, one thread each:
 * LoRA (r=8 on q/k/v/o) AdamW steps with clipping on the bundled demo
 * model, random byte batches of the same shape, two warmup steps (session
 * builds) left out of the timing. Both wall-clock and CPU-time rates are
 * reported (the latter steadier when other work shares the cores). The PyTorch side is
 * `bench/train_bench_torch.py` (torch + peft), run with `$PYTHON` (default `python3`).
 *
 * ```sh
 * PYTHON=/path/to/venv/bin/python deno run -A bench/train_bench.ts --steps 20 --batch 4 --seq 128
 * ```
 * @module
 */
import { execFile } from "node:child_process";
import process from "node:process";
import { parseArgs } from "node:util";
import { createAdapter, loadBaseModel } from "../mod.ts";
import { createRng } from "../src/generate/rng.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: { steps: { type: "string" }, batch: { type: "string" }, seq: { type: "string" } },
});
const steps = Number(values.steps ?? 20);
const batch = Number(values.batch ?? 4);
const seq = Number(values.seq ?? 128);

const root = decodeURIComponent(new URL("..", import.meta.url).pathname);
const base = await loadBaseModel(`${root}examples/demo/byte-llama`, {
  device: "wasm",
  numThreads: 1,
  sessionOptions: { intraOpNumThreads: 1 },
});
const model = await createAdapter(base, {
  r: 8,
  lora_alpha: 16,
  target_modules: ["q_proj", "k_proj", "v_proj", "o_proj"],
});
const trainer = model.trainer({ optimizer: "adamw", learningRate: 2e-3, maxGradNorm: 1.0 });
const rng = createRng(0);
const randomBatch = () => ({
  inputIds: Array.from({ length: batch }, () => Array.from({ length: seq }, () => 3 + Math.floor(rng.uniform() * 253))),
});
for (let i = 0; i < 2; i++) await trainer.step(randomBatch());
const start = performance.now();
const cpuStart = process.cpuUsage();
let loss = 0;
for (let i = 0; i < steps; i++) loss = (await trainer.step(randomBatch())).loss;
const tokens = steps * batch * seq;
const ours = tokens / ((performance.now() - start) / 1000);
const cpu = process.cpuUsage(cpuStart);
const oursCpu = tokens / ((cpu.user + cpu.system) / 1e6);
console.log(
  `peft-edge (onnxruntime-web wasm, 1 thread, ${trainer.optimizerBackend} optimizer): ${ours.toFixed(0)} tokens/s ` +
    `(${oursCpu.toFixed(0)} per CPU second), last loss ${loss.toFixed(4)}`,
);
await model.release();

const python = process.env.PYTHON ?? "python3";
const torch = await new Promise<{ tokensPerSecond: number; tokensPerCpuSecond: number; loss: number }>((
  resolve,
  reject,
) =>
  execFile(
    python,
    [`${root}bench/train_bench_torch.py`, String(steps), String(batch), String(seq)],
    { cwd: root, env: { ...process.env, OMP_NUM_THREADS: "1" } },
    (error, stdout, stderr) => {
      if (error) reject(new Error(`${python} bench/train_bench_torch.py failed: ${stderr || error.message}`));
      else resolve(JSON.parse(stdout.trim().split("\n").pop()!));
    },
  )
).catch((error) => {
  console.log(`PyTorch side not run: ${error.message}`);
  return undefined;
});
if (torch) {
  console.log(
    `PyTorch CPU (1 thread, torch + peft): ${torch.tokensPerSecond.toFixed(0)} tokens/s ` +
      `(${torch.tokensPerCpuSecond.toFixed(0)} per CPU second), last loss ${torch.loss.toFixed(4)}`,
  );
  // Wall time is what a user sees; CPU time is steadier on a shared machine (each side's own process).
  console.log(
    `ratio peft-edge / PyTorch: ${(ours / torch.tokensPerSecond).toFixed(2)} (wall), ${
      (oursCpu / torch.tokensPerCpuSecond).toFixed(2)
    } (CPU time)`,
  );
}
