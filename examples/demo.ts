/**
 * The main job: a PEFT LoRA adapter at work. Loads the bundled byte-level
 * Llama (trained on Jane Austen) and its LoRA adapter (trained on Python),
 * then, for each prompt of `reference_generations.json`, prints the base's
 * and the adapter's greedy continuations side by side, checks them against
 * the reference, and reports load times and tokens per second.
 *
 * ```sh
 * deno task demo        # or: npm run demo / bun examples/demo.ts
 * deno run -A examples/demo.ts --base examples/demo/byte-llama \
 *   --adapter examples/demo/byte-llama-python-lora --max-new-tokens 120
 * ```
 * @module
 */
import process from "node:process";
import { readFile } from "node:fs/promises";
import { fromPretrained, type GenerationResult, loadBaseModel } from "../mod.ts";

const here = (path: string) => decodeURIComponent(new URL(path, import.meta.url).pathname);

/** `--name value` from the command line, or a default. */
function flag(name: string, fallback: string): string {
  const argv = process.argv.slice(2);
  const at = argv.indexOf(`--${name}`);
  return at >= 0 && at + 1 < argv.length ? argv[at + 1] : fallback;
}

interface Reference {
  prompt: string;
  variant: "base" | "adapter";
  text: string;
}

const basePath = flag("base", here("./demo/byte-llama"));
const adapterPath = flag("adapter", here("./demo/byte-llama-python-lora"));
const referencePath = flag("references", here("./demo/reference_generations.json"));

const ms = (t: number) => `${t.toFixed(0)} ms`;
const perSecond = (tokens: number, t: number) => t > 0 ? `${(1000 * tokens / t).toFixed(0)} tok/s` : "-";
/** A continuation on one line: JSON-escaped, without the quotes. */
const oneLine = (text: string) => JSON.stringify(text).slice(1, -1);

let started = performance.now();
const base = await loadBaseModel(basePath);
const baseLoad = performance.now() - started;
started = performance.now();
const adapted = await fromPretrained(base, adapterPath);
const adapterLoad = performance.now() - started;
const maxNewTokens = Number(flag("max-new-tokens", String(base.text.generationConfig.maxNewTokens ?? 120)));
const references: Reference[] = JSON.parse(await readFile(referencePath, "utf8")).generations;
const prompts = [...new Set(references.map((r) => r.prompt))];

console.log(`peft-edge demo: ${base.source.location} + LoRA ${adapterPath}`);
console.log(`loaded base in ${ms(baseLoad)}; applied the adapter (${adapted.mode} mode) in ${ms(adapterLoad)}`);
console.log(`greedy, ${maxNewTokens} new tokens per prompt; continuations shown JSON-escaped\n`);

// A session's first run sets up onnxruntime's buffers (and the base's shares the adapter's session): untimed.
await base.generate(prompts[0], { maxNewTokens: 1 });
await adapted.generate(prompts[0], { maxNewTokens: 1 });

const totals = {
  base: { prefillTokens: 0, prefillMs: 0, decodeTokens: 0, decodeMs: 0 },
  adapter: { prefillTokens: 0, prefillMs: 0, decodeTokens: 0, decodeMs: 0 },
};
let matches = 0;
let compared = 0;
const width = Math.max(40, Math.min(100, (process.stdout.columns ?? 120) - 2));

for (const prompt of prompts) {
  const results: Record<"base" | "adapter", GenerationResult> = {
    base: await base.generate(prompt, { maxNewTokens }),
    adapter: await adapted.generate(prompt, { maxNewTokens }),
  };
  const half = Math.floor((width - 3) / 2);
  console.log(`prompt ${JSON.stringify(prompt)}`);
  console.log(`${"base (prose)".padEnd(half)} │ adapter (Python)`);
  const left = oneLine(results.base.text);
  const right = oneLine(results.adapter.text);
  for (let at = 0; at < Math.max(left.length, right.length); at += half) {
    console.log(`${left.slice(at, at + half).padEnd(half)} │ ${right.slice(at, at + half)}`);
  }
  for (const variant of ["base", "adapter"] as const) {
    const r = results[variant];
    const t = totals[variant];
    t.prefillTokens += r.promptTokenIds.length;
    t.prefillMs += r.timings.prefillMs;
    t.decodeTokens += r.timings.decodeRuns;
    t.decodeMs += r.timings.decodeMs;
    const ref = references.find((x) => x.prompt === prompt && x.variant === variant);
    if (ref && maxNewTokens === ref.text.length) {
      compared++;
      if (ref.text === r.text) matches++;
    }
  }
  const speed = (v: "base" | "adapter") => perSecond(results[v].timings.decodeRuns, results[v].timings.decodeMs);
  console.log(`${`decode ${speed("base")}`.padEnd(half)} │ decode ${speed("adapter")}\n`);
}

for (const variant of ["base", "adapter"] as const) {
  const t = totals[variant];
  console.log(
    `${variant.padEnd(7)}: prefill ${perSecond(t.prefillTokens, t.prefillMs)}, ` +
      `decode ${perSecond(t.decodeTokens, t.decodeMs)} (${t.decodeTokens} steps)`,
  );
}
if (compared > 0) {
  console.log(`reference check: ${matches}/${compared} continuations match reference_generations.json byte for byte`);
}
await adapted.release();
await base.release();
if (compared > 0 && matches !== compared) process.exitCode = 1;
