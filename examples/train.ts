/**
 * Fine-tune a LoRA adapter on a text file at the edge, then save it as PEFT
 * does. Byte-level by default (the demo model's tokenizer); the last 10% of
 * the file is held out, and its loss is printed before and after, with a
 * greedy generation from the prompt.
 *
 * ```sh
 * deno run -A examples/train.ts --data README.md --seconds 60 --out /tmp/readme-lora
 * bun examples/train.ts --data notes.txt --adapter examples/demo/byte-llama-python-lora --steps 50
 * ```
 *
 * Options: `--base <path|id>` (default `examples/demo/byte-llama`), `--data FILE` (required),
 * `--adapter <path|id>` (continue training it; else a new adapter: `--r`, `--alpha`, `--targets`),
 * `--seconds S` (default 60) or `--steps N`, `--seq-len L` (128), `--batch-size B` (4),
 * `--lr LR` (2e-3), `--prompt TEXT`, `--max-new-tokens N` (80), `--out DIR` (savePretrained), `--seed S`.
 * @module
 */
import process from "node:process";
import { readFile } from "node:fs/promises";
import { createAdapter, fromPretrained, loadBaseModel, PeftEdgeError, type PeftModel } from "../mod.ts";
import { commandLine, usageError } from "./cli.ts";

const USAGE =
  `usage: train.ts --data FILE [--base <path|id>] [--adapter <path|id>] [--r R] [--alpha A] [--targets q_proj,v_proj]
       [--seconds S | --steps N] [--seq-len L] [--batch-size B] [--lr LR] [--prompt TEXT] [--max-new-tokens N]
       [--out DIR] [--seed S]`;

function usage(reason: string): never {
  return usageError(USAGE, reason);
}

function int(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) usage(`${flag} needs a positive number, got ${JSON.stringify(value)}`);
  return n;
}

/** Non-overlapping windows of `length` tokens. */
function windows(ids: number[], length: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i + length <= ids.length; i += length) out.push(ids.slice(i, i + length));
  return out;
}

async function heldOutLoss(model: PeftModel, held: number[][], batch: number): Promise<number> {
  let sum = 0;
  for (let i = 0; i < held.length; i += batch) {
    const rows = held.slice(i, i + batch);
    sum += (await model.loss({ inputIds: rows })) * rows.length;
  }
  return sum / held.length;
}

async function main() {
  const values = commandLine(USAGE, {
    base: { type: "string" },
    data: { type: "string" },
    adapter: { type: "string" },
    r: { type: "string" },
    alpha: { type: "string" },
    targets: { type: "string" },
    seconds: { type: "string" },
    steps: { type: "string" },
    "seq-len": { type: "string" },
    "batch-size": { type: "string" },
    lr: { type: "string" },
    prompt: { type: "string" },
    "max-new-tokens": { type: "string" },
    out: { type: "string" },
    seed: { type: "string" },
  });
  if (!values.data) usage("--data is required");
  const seqLen = int("--seq-len", values["seq-len"], 128);
  const batchSize = int("--batch-size", values["batch-size"], 4);
  const seconds = int("--seconds", values.seconds, 60);
  const maxSteps = values.steps === undefined ? Infinity : int("--steps", values.steps, 1);
  const seed = values.seed === undefined ? 0 : Number(values.seed);

  const base = await loadBaseModel(values.base ?? "examples/demo/byte-llama");
  const tokenizer = base.text.tokenizer;
  if (!tokenizer) usage("the base has no tokenizer.json");
  const text = new TextDecoder().decode(await readFile(values.data));
  const ids = tokenizer.encode(text, { addSpecialTokens: false });
  const split = Math.floor(ids.length * 0.9);
  const train = windows(ids.slice(0, split), seqLen);
  const held = windows(ids.slice(split), seqLen).slice(0, 16);
  if (train.length === 0 || held.length === 0) usage(`--data needs at least ${Math.ceil(seqLen / 0.1)} tokens`);

  const model = values.adapter
    ? await fromPretrained(base, values.adapter, { isTrainable: true })
    : await createAdapter(base, {
      r: int("--r", values.r, 8),
      lora_alpha: int("--alpha", values.alpha, 16),
      target_modules: (values.targets ?? "q_proj,k_proj,v_proj,o_proj").split(","),
      task_type: "CAUSAL_LM",
    }, { seed });
  const { trainable, all } = model.getNbTrainableParameters();
  console.error(`trainable params: ${trainable} || all params: ${all}; ${train.length} windows of ${seqLen} tokens`);
  // Default prompt: the held-out text's first full line start (24 tokens of it).
  const lineStart = ids.indexOf(10, split) + 1 || split;
  const prompt = values.prompt ?? tokenizer.decode(ids.slice(lineStart, lineStart + 24));
  const generate = async () =>
    (await model.generate(prompt, {
      maxNewTokens: int("--max-new-tokens", values["max-new-tokens"], 80),
      temperature: 0,
    }))
      .text;
  const before = await heldOutLoss(model, held, batchSize);
  const beforeText = await generate();

  const trainer = model.trainer({ optimizer: "adamw", learningRate: Number(values.lr ?? 2e-3), seed });
  const controller = new AbortController();
  const deadline = performance.now() + seconds * 1000;
  await trainer.fit(train, {
    epochs: 1000,
    batchSize,
    signal: controller.signal,
    onProgress: (p) => {
      if (p.step % 10 === 0) {
        console.error(`step ${p.step} loss ${p.loss.toFixed(4)} ${p.tokensPerSecond.toFixed(0)} tokens/s`);
      }
      if (performance.now() > deadline || p.step >= maxSteps) controller.abort(new Error("time budget reached"));
    },
  }).catch((error) => {
    if (!controller.signal.aborted) throw error;
  });
  const after = await heldOutLoss(model, held, batchSize);
  console.log(`updates: ${trainer.globalStep}`);
  console.log(`held-out loss: ${before.toFixed(4)} -> ${after.toFixed(4)}`);
  console.log(`before: ${JSON.stringify(prompt + beforeText)}`);
  console.log(`after:  ${JSON.stringify(prompt + (await generate()))}`);
  if (values.out) {
    await model.savePretrained(values.out);
    console.log(`saved to ${values.out} (adapter_config.json, adapter_model.safetensors)`);
  }
  await model.release();
}

main().catch((error) => {
  process.stderr.write(`${error instanceof PeftEdgeError ? error.message : error}\n`);
  process.exit(1);
});
