// The npm package: `npm pack` (whose prepack builds dist/ with scripts/build_dist.mjs) gives a tarball that installs
// into a fresh Node project and runs the demo base and adapter there, reproducing the reference generations; its
// types resolve for a TypeScript consumer. Runs once, in the Deno suite (it starts npm and Node).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const repo = fileURLToPath(new URL("..", import.meta.url));
const isBun = (globalThis as { Bun?: unknown }).Bun !== undefined;

function run(command: string, args: string[], cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { cwd, timeout: 240_000, maxBuffer: 1 << 24 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} ${args.join(" ")} failed: ${error.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

const CONSUMER = `
import { fromPretrained, loadBaseModel } from "peft-edge";
const [basePath, adapterPath] = process.argv.slice(2);
const base = await loadBaseModel(basePath);
const model = await fromPretrained(base, adapterPath, { adapterName: "python" });
const out = {};
for (const prompt of ["The ", "def "]) {
  out[prompt] = {
    base: (await base.generate(prompt, { maxNewTokens: 120, temperature: 0 })).text,
    adapter: (await model.generate(prompt, { maxNewTokens: 120, temperature: 0, adapter: "python" })).text,
  };
}
await model.release();
await base.release();
console.log(JSON.stringify(out));
`;

const TYPED = `
import { type BaseModel, loadBaseModel, UnsupportedError } from "peft-edge";
export async function load(path: string): Promise<BaseModel> {
  return await loadBaseModel(path, { numThreads: 1, wasmPaths: "/ort/" });
}
export const isUnsupported = (e: unknown): boolean => e instanceof UnsupportedError;
`;

test("npm pack's tarball installs into a fresh Node project and reproduces the reference generations", {
  skip: isBun ? "runs in the Deno suite" : false,
  timeout: 300_000,
}, async () => {
  const dir = await mkdtemp(join(tmpdir(), "peft-edge-npm-"));
  try {
    const packed = await run("npm", ["pack", "--silent", "--pack-destination", dir], repo);
    const tarball = join(dir, packed.trim().split("\n").pop()!);
    const project = join(dir, "consumer");
    await run("mkdir", ["-p", project], dir);
    await writeFile(join(project, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
    await run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--ignore-scripts", tarball], project);
    await writeFile(join(project, "main.mjs"), CONSUMER);
    const stdout = await run("node", [
      "main.mjs",
      join(repo, "examples/demo/byte-llama"),
      join(repo, "examples/demo/byte-llama-python-lora"),
    ], project);
    const got = JSON.parse(stdout.trim().split("\n").pop()!);
    const reference = JSON.parse(await readFile(join(repo, "examples/demo/reference_generations.json"), "utf8"));
    for (const g of reference.generations as Array<{ prompt: string; variant: "base" | "adapter"; text: string }>) {
      if (got[g.prompt]) assert.equal(got[g.prompt][g.variant], g.text, `${g.variant} ${JSON.stringify(g.prompt)}`);
    }
    await writeFile(join(project, "typed.ts"), TYPED);
    await run("node", [
      join(repo, "node_modules/typescript/bin/tsc"),
      "--noEmit",
      "--strict",
      "--skipLibCheck",
      "--module",
      "nodenext",
      "--moduleResolution",
      "nodenext",
      "--target",
      "es2022",
      "typed.ts",
    ], project);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
