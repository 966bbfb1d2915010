/**
 * examples/generate.ts as a user runs it: only the continuation on stdout,
 * diagnostics on stderr, exit code 1 with a clear message on bad input.
 * Runs the CLI with the runtime running this test (Deno or Bun).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import process from "node:process";

const isDeno = "Deno" in globalThis;

/** Runs examples/generate.ts with these arguments. */
function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const command = isDeno ? ["run", "-A", "examples/generate.ts", ...args] : ["examples/generate.ts", ...args];
  return new Promise((resolve) => {
    execFile(process.execPath, command, { encoding: "utf8" }, (error, stdout, stderr) => {
      resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

test("generate.ts prints exactly the adapter's continuation on stdout", async () => {
  const r = await cli([
    "--base",
    "examples/demo/byte-llama",
    "--adapter",
    "examples/demo/byte-llama-python-lora",
    "--prompt",
    "    return ",
    "--max-new-tokens",
    "120",
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "self._stream is not None:\n" + " ".repeat(94));
  assert.match(r.stderr, /applied adapter/);
  assert.match(r.stderr, /120 new tokens \(length\)/);
});

test("generate.ts reports bad input on stderr with a non-zero exit", async () => {
  const empty = await cli(["--base", "examples/demo/byte-llama", "--prompt", "", "--temperature", "0.5"]);
  assert.equal(empty.code, 1);
  assert.equal(empty.stdout, "");
  assert.match(empty.stderr, /error: prompt: the prompt is empty/);
  const usage = await cli(["--prompt", "x"]);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /--base is required/);
});
