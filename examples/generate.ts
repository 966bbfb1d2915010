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
import { type BaseModel, fromPretrained, type GenerateOptions, loadBaseModel, PeftEdgeError, type PeftModel } from "../mod.ts";

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
  process.stderr.write(`${reason}\n${USAGE}\n`);
  process.exit(2);
}

/** A numeric flag value, or a usage error naming the flag. */
function number(flag: string, value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n)) usage(`${flag} needs a number, got ${JSON.stringify(value)}`);
  return n;
}

/** Parses `--flag value` pairs (also `--flag=value`). */
function parseArgs(argv: readonly string[]): Args {
  const options: GenerateOptions = {};
  const stop: string[] = [];
  let base: string | undefined;
  let adapter: string | undefined;
  let prompt: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    let flag = argv[i];
    let value: string | undefined;
    if (flag === "--help" || flag === "-h") {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    }
    const eq = flag.indexOf("=");
    if (flag.startsWith("--") && eq > 0) {
      value = flag.slice(eq + 1);
      flag = flag.slice(0, eq);
    } else {
      value = argv[++i];
    }
    if (value === undefined) usage(`${flag} needs a value`);
    switch (flag) {
      case "--base":
        base = value;
        break;
      case "--adapter":
        adapter = value;
        break;
      case "--prompt":
        prompt = value;
        break;
      case "--max-new-tokens":
        options.maxNewTokens = number(flag, value);
        break;
      case "--temperature":
        options.temperature = number(flag, value);
        break;
      case "--seed":
        options.seed = number(flag, value);
        break;
      case "--top-k":
        options.topK = number(flag, value);
        break;
      case "--top-p":
        options.topP = number(flag, value);
        break;
      case "--repetition-penalty":
        options.repetitionPenalty = number(flag, value);
        break;
      case "--stop":
        stop.push(value);
        break;
      default:
        usage(`unknown option ${flag}`);
    }
  }
  if (base === undefined) usage("--base is required");
  if (prompt === undefined) usage("--prompt is required");
  if (stop.length > 0) options.stop = stop;
  return { base, adapter, prompt, options };
}

/** Writes a diagnostic line to stderr. */
function note(line: string): void {
  process.stderr.write(`${line}\n`);
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
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
