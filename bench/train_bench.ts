/**
 * Training throughput against PyTorch CPU, in one run, one thread each:
 * LoRA (r=8 on q/k/v/o) AdamW steps with clipping on the bundled demo
 * model, random byte batches of the same shape, two warmup steps (session
 * builds) left out of the timing. Both wall-clock and CPU-time rates are
 * reported (the latter steadier when other work shares the cores). The PyTorch side is
 * `bench/train_bench_torch.py` (torch + peft), run with `$PYTHON` (default `python3`).
 *
 * ```sh
 * PYTHON=/path/to/venv/bin/python deno run -A bench/train_bench.ts --steps 20 --batch 4 --seq 128 [--devices wasm,native]
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
  options: {
    steps: { type: "string" },
    batch: { type: "string" },
    seq: { type: "string" },
    devices: { type: "string" },
  },
});
const steps = Number(values.steps ?? 20);
const batch = Number(values.batch ?? 4);
const seq = Number(values.seq ?? 128);
// onnxruntime-web's WASM (the edge and browser path) and onnxruntime-node ("native", Node/Bun/Deno servers).
const devices = (values.devices ?? "wasm,native").split(",") as ("wasm" | "native")[];

const root = decodeURIComponent(new URL("..", import.meta.url).pathname);
const rates = new Map<string, { wall: number; cpu: number }>();
for (const device of devices) {
  const base = await loadBaseModel(`${root}examples/demo/byte-llama`, {
    device,
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
    inputIds: Array.from(
      { length: batch },
      () => Array.from({ length: seq }, () => 3 + Math.floor(rng.uniform() * 253)),
    ),
  });
  for (let i = 0; i < 2; i++) await trainer.step(randomBatch());
  const start = performance.now();
  const cpuStart = process.cpuUsage();
  let loss = 0;
  for (let i = 0; i < steps; i++) loss = (await trainer.step(randomBatch())).loss;
  const tokens = steps * batch * seq;
  const wall = tokens / ((performance.now() - start) / 1000);
  const used = process.cpuUsage(cpuStart);
  const cpu = tokens / ((used.user + used.system) / 1e6);
  rates.set(device, { wall, cpu });
  console.log(
    `peft-edge (${device}, 1 thread, ${trainer.optimizerBackend} optimizer): ${wall.toFixed(0)} tokens/s ` +
      `(${cpu.toFixed(0)} per CPU second), last loss ${loss.toFixed(4)}`,
  );
  await model.release();
  await base.release();
}

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
  for (const [device, { wall, cpu }] of rates) {
    console.log(
      `ratio peft-edge ${device} / PyTorch: ${(wall / torch.tokensPerSecond).toFixed(2)} (wall), ${
        (cpu / torch.tokensPerCpuSecond).toFixed(2)
      } (CPU time)`,
    );
  }
}
