import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { serveFolder } from "./support/static_server.ts";
import { fromPretrained, loadBaseModel } from "../mod.ts";
import { expected, fixture, maxAbsDiff, prefillAndStep } from "./support/fixtures.ts";

const repo = fileURLToPath(new URL("..", import.meta.url));
const deno = join(repo, "node_modules/.bin/deno");

test("a Deno script with no deno.json imports mod.ts over HTTP and runs a fixture adapter", async () => {
  const server = await serveFolder(repo);
  const dir = await mkdtemp(join(tmpdir(), "peft-edge-url-"));
  try {
    const script = `
      import { fromPretrained, loadBaseModel, Tensor } from "${server.url}/mod.ts";
      const base = await loadBaseModel(${JSON.stringify(fixture("llama-tiny"))});
      const model = await fromPretrained(base, ${JSON.stringify(fixture("llama-tiny-lora-qv"))});
      const ids = [72n, 101n, 108n];
      const feeds = {
        input_ids: new Tensor("int64", BigInt64Array.from(ids), [1, 3]),
        attention_mask: new Tensor("int64", new BigInt64Array([1n, 1n, 1n]), [1, 3]),
        position_ids: new Tensor("int64", new BigInt64Array([0n, 1n, 2n]), [1, 3]),
      };
      for (const name of model.inputNames.filter((n) => n.startsWith("past_key_values."))) {
        feeds[name] = new Tensor("float32", new Float32Array(), [1, 2, 0, 16]);
      }
      const out = await model.run(feeds);
      console.log(JSON.stringify({ dims: out.logits.dims, logits: Array.from(out.logits.data.slice(-256)) }));
    `;
    await writeFile(join(dir, "main.ts"), script);
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(
        deno,
        ["run", "-A", "--no-lock", "main.ts"],
        { cwd: dir, env: { ...process.env, NO_COLOR: "1" }, timeout: 240_000 },
        (err, out, errOut) => (err ? reject(new Error(`${err.message}\n${errOut}`)) : resolve(out)),
      );
    });
    const result = JSON.parse(stdout.trim().split("\n").at(-1)!);
    assert.deepEqual(result.dims, [1, 3, 256]);
    // Same numbers as the library imported locally.
    const base = await loadBaseModel(fixture("llama-tiny"));
    const model = await fromPretrained(base, fixture("llama-tiny-lora-qv"));
    const e = await expected("llama-tiny-lora-qv");
    const local = await prefillAndStep(model, { ...e, inputIds: new BigInt64Array([72n, 101n, 108n]) });
    assert.ok(maxAbsDiff(Float32Array.from(result.logits), local.logits.slice(-256)) < 1e-6);
    await model.release();
    await base.release();
  } finally {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
});
