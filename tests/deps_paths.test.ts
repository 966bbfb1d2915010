// Every pinned `npm:` specifier imported under src/deps must resolve everywhere the sources are compiled without
// Deno's resolver: Bun (tsconfig.json `paths`) and the browser/workerd bundles (examples/browser/tsconfig.json).
// A specifier missing from either map breaks only those builds, which run late in CI; this pins it cheaply.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

const repo = fileURLToPath(new URL("..", import.meta.url));

async function pathKeys(file: string): Promise<Set<string>> {
  const json = JSON.parse(await readFile(repo + file, "utf8")) as { compilerOptions?: { paths?: object } };
  return new Set(Object.keys(json.compilerOptions?.paths ?? {}));
}

async function depsSpecifiers(): Promise<Set<string>> {
  const specs = new Set<string>();
  for (const name of await readdir(repo + "src/deps")) {
    const text = await readFile(`${repo}src/deps/${name}`, "utf8");
    // Static imports and the lazy ones (`import("npm:...")`: the WebGPU build, onnxruntime-node).
    for (const m of text.matchAll(/(?:from\s+|import\()["'](npm:[^"']+)["']/g)) specs.add(m[1]);
  }
  return specs;
}

test("every npm: specifier of src/deps is mapped for Bun and for the browser bundle", async () => {
  const specs = await depsSpecifiers();
  assert.ok(specs.size > 5, `found only ${specs.size} npm: specifiers under src/deps`);
  for (const file of ["tsconfig.json", "examples/browser/tsconfig.json"]) {
    const keys = await pathKeys(file);
    const missing = [...specs].filter((s) => !keys.has(s));
    assert.deepEqual(missing, [], `${file} has no paths entry for ${missing.join(", ")}`);
  }
});
