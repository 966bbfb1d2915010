/**
 * Merges a PEFT LoRA adapter into an ONNX base and writes the merged model,
 * which onnxruntime loads like any export (PEFT's `merge_and_unload` followed
 * by saving).
 *
 * ```sh
 * deno run -A examples/merge.ts --base tests/fixtures/llama-tiny \
 *   --adapter tests/fixtures/llama-tiny-lora-qv --out /tmp/merged/model.onnx
 * ```
 * Diagnostics go to stderr; exit status 2 for a bad command line, 1 for a failed merge.
 * @module
 */
import process from "node:process";
import { fromPretrained, loadBaseModel, PeftEdgeError } from "../mod.ts";
import { commandLine, usageError } from "./cli.ts";

const USAGE = "usage: merge.ts --base <path|id> --adapter <path|id> --out <file.onnx> [--safe-merge]";

function readArgs(): { base: string; adapter: string; out: string; safeMerge: boolean } {
  const values = commandLine(USAGE, {
    base: { type: "string" },
    adapter: { type: "string" },
    out: { type: "string" },
    "safe-merge": { type: "boolean", default: false },
  });
  if (!values.base || !values.adapter || !values.out) usageError(USAGE, "--base, --adapter and --out are required");
  return { base: values.base, adapter: values.adapter, out: values.out, safeMerge: values["safe-merge"] ?? false };
}

const args = readArgs();
try {
  const started = performance.now();
  const base = await loadBaseModel(args.base);
  const model = await fromPretrained(base, args.adapter, { onWarning: (m) => process.stderr.write(`warning: ${m}\n`) });
  const merged = await model.mergeAndUnload({ safeMerge: args.safeMerge });
  await merged.saveOnnx(args.out);
  process.stderr.write(
    `merged ${args.adapter} into ${args.base}: wrote ${args.out} in ${(performance.now() - started).toFixed(0)} ms\n`,
  );
  await Promise.all([merged.release(), model.release(), base.release()]);
} catch (error) {
  if (!(error instanceof PeftEdgeError)) throw error;
  process.stderr.write(`${error.name}: ${error.message}\n`);
  process.exit(1);
}
