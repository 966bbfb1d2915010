/**
 * Generate text from the command line with a base model and, optionally, a
 * PEFT LoRA adapter. Prints only the continuation on stdout (streamed);
 * load times and tokens/s go to stderr.
 *
 * ```sh
 * deno run -A examples/generate.ts --base examples/demo/byte-llama \
 *   --adapter examples/demo/byte-llama-python-lora --prompt "def " --max-new-tokens 80
 * bun examples/generate.ts --base examples/demo/byte-llama --prompt "The " --temperature 0.8 --seed 1
 * ```
 *
 * Options: `--base <path|id>` (required), `--adapter <path|id>`,
 * `--prompt TEXT` (required), `--max-new-tokens N`, `--temperature T`
 * (0 = greedy), `--seed S`, `--top-k K`, `--top-p P`,
 * `--repetition-penalty R`, `--stop STRING` (repeatable).
 * Defaults come from the model's `generation_config.json`.
 * @module
 */
import process from "node:process";
import {
  type BaseModel,
  fromPretrained,
  type GenerateOptions,
  loadBaseModel,
  PeftEdgeError,
  type PeftModel,
} from "../mod.ts";
import { commandLine, usageError } from "./cli.ts";

const USAGE = `usage: generate.ts --base <path|id> [--adapter <path|id>] --prompt TEXT
       [--max-new-tokens N] [--temperature T] [--seed S] [--top-k K] [--top-p P]
       [--repetition-penalty R] [--stop STRING]...`;

/** Parsed command line. */
interface Args {
  base: string;
  adapter?: string;
  prompt: string;
  options: GenerateOptions;
}

/** Exits with the usage text and a reason. */
function usage(reason: string): never {
  return usageError(USAGE, reason);
}

/** A numeric flag value, or a usage error naming the flag. */
function number(flag: string, value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n)) usage(`${flag} needs a number, got ${JSON.stringify(value)}`);
  return n;
}

/** Parses the command line (`cli.ts`); bad input exits 2 with the usage text. */
function readArgs(argv: string[]): Args {
  const values = commandLine(USAGE, {
    base: { type: "string" },
    adapter: { type: "string" },
    prompt: { type: "string" },
    "max-new-tokens": { type: "string" },
    temperature: { type: "string" },
    seed: { type: "string" },
    "top-k": { type: "string" },
    "top-p": { type: "string" },
    "repetition-penalty": { type: "string" },
    stop: { type: "string", multiple: true },
  }, argv);
  if (values.base === undefined) usage("--base is required");
  if (values.prompt === undefined) usage("--prompt is required");
  const numeric = (flag: keyof typeof values) => {
    const value = values[flag] as string | undefined;
    return value === undefined ? undefined : number(`--${flag}`, value);
  };
  const options: GenerateOptions = {
    maxNewTokens: numeric("max-new-tokens"),
    temperature: numeric("temperature"),
    seed: numeric("seed"),
    topK: numeric("top-k"),
    topP: numeric("top-p"),
    repetitionPenalty: numeric("repetition-penalty"),
    stop: values.stop,
  };
  // Leave unset options out, so the model's generation_config.json defaults apply.
  for (const key of Object.keys(options) as (keyof GenerateOptions)[]) {
    if (options[key] === undefined) delete options[key];
  }
  return { base: values.base, adapter: values.adapter, prompt: values.prompt, options };
}

/** Writes a diagnostic line to stderr. */
function note(line: string): void {
  process.stderr.write(`${line}\n`);
}

async function main(): Promise<void> {
  const args = readArgs(process.argv.slice(2));
  let started = performance.now();
  const base = await loadBaseModel(args.base);
  note(`loaded base ${base.source.location} in ${(performance.now() - started).toFixed(0)} ms`);
  let model: BaseModel | PeftModel = base;
  if (args.adapter !== undefined) {
    started = performance.now();
    model = await fromPretrained(base, args.adapter, { onWarning: note });
    note(`applied adapter ${args.adapter} in ${(performance.now() - started).toFixed(0)} ms`);
  }
  const pieces = model.stream(args.prompt, args.options);
  let next = await pieces.next();
  while (!next.done) {
    process.stdout.write(next.value);
    next = await pieces.next();
  }
  const { tokenIds, promptTokenIds, timings, finishReason, seed } = next.value;
  const perSecond = (tokens: number, ms: number) => ms > 0 ? (1000 * tokens / ms).toFixed(0) : "-";
  note("");
  note(
    `${tokenIds.length} new tokens (${finishReason}); prefill ${promptTokenIds.length} tokens ` +
      `${perSecond(promptTokenIds.length, timings.prefillMs)} tok/s; ` +
      `decode ${perSecond(timings.decodeRuns, timings.decodeMs)} tok/s` +
      (args.options.temperature ? `; seed ${seed}` : ""),
  );
}

try {
  await main();
} catch (error) {
  if (error instanceof PeftEdgeError) {
    note(`error: ${error.message}`);
    process.exitCode = 1;
  } else {
    throw error;
  }
}
