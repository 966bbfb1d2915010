// Error names survive minification: bundlers rename classes (esbuild --minify, terser), so `error.name` must not
// come from the constructor's name. Bundles src/errors.ts minified and checks every exported class's name.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import * as errors from "../src/errors.ts";

const repo = fileURLToPath(new URL("..", import.meta.url));

function minified(entry: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      `${repo}node_modules/.bin/esbuild`,
      [entry, "--bundle", "--minify", "--format=esm"],
      { cwd: repo, maxBuffer: 1 << 24 },
      (error, stdout, stderr) => error ? reject(new Error(`esbuild failed: ${stderr}`)) : resolve(stdout),
    );
  });
}

test("every exported error class keeps its name in a minified bundle", async () => {
  const code = await minified("src/errors.ts");
  const bundled = await import(`data:text/javascript;base64,${btoa(code)}`) as Record<string, unknown>;
  const classes = Object.entries(errors).filter(([, v]) => typeof v === "function" && v.prototype instanceof Error);
  assert.ok(classes.length >= 10, `found only ${classes.length} error classes`);
  for (const [exported] of classes) {
    const Ctor = bundled[exported] as new (message: string, context: object) => Error;
    // One context that every constructor accepts (HubError and UrlError need theirs).
    const context = { repo: "o/r", revision: "main", url: "https://x.example/f", reason: "network" };
    assert.equal(
      new Ctor("m", context).name,
      exported,
      `${exported} is named "${new Ctor("m", context).name}" when minified`,
    );
  }
});
