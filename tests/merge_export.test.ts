import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { fromPretrained, loadBaseModel, memorySource } from "../mod.ts";
import { ort } from "../src/deps/ort.ts";
import { expected, fixture, maxAbsDiff, prefillAndStep } from "./support/fixtures.ts";
import { encodeModel, fixtureModel, toExternalData } from "./support/onnx_variants.ts";

const repo = fileURLToPath(new URL("..", import.meta.url));
const deno = join(repo, "node_modules/.bin/deno");

/** Loads a written ONNX file as a base, with the fixture's config.json. */
async function loadWritten(dir: string, file: string, baseName: string, extra: Record<string, Uint8Array> = {}) {
  return loadBaseModel(memorySource(dir, {
    "config.json": new Uint8Array(await readFile(`${fixture(baseName)}/config.json`)),
    "onnx/model.onnx": new Uint8Array(await readFile(join(dir, file))),
    ...extra,
  }));
}

test("saveOnnx of a merged base writes a model onnxruntime loads, reproducing the adapter (external data too)", async () => {
  const dir = await mkdtemp(join(tmpdir(), "peft-edge-save-"));
  try {
    const { model, data } = toExternalData(await fixtureModel("llama-tiny"), "model.onnx_data");
    const config = new Uint8Array(await readFile(`${fixture("llama-tiny")}/config.json`));
    const base = await loadBaseModel(
      memorySource("ext", {
        "config.json": config,
        "onnx/model.onnx": encodeModel(model),
        "onnx/model.onnx_data": data,
      }),
    );
    const peft = await fromPretrained(base, fixture("llama-tiny-dora-qv"));
    const merged = await peft.mergeAndUnload();
    await merged.saveOnnx(join(dir, "model.onnx"));
    // Plain onnxruntime opens the written file with its external data beside it.
    const session = await ort.InferenceSession.create(new Uint8Array(await readFile(join(dir, "model.onnx"))), {
      externalData: [{ path: "model.onnx_data", data: new Uint8Array(await readFile(join(dir, "model.onnx_data"))) }],
    });
    assert.deepEqual([...session.outputNames].slice(0, 1), ["logits"]);
    await session.release();
    const reloaded = await loadWritten(dir, "model.onnx", "llama-tiny", {
      "onnx/model.onnx_data": new Uint8Array(await readFile(join(dir, "model.onnx_data"))),
    });
    const e = await expected("llama-tiny-dora-qv");
    assert.ok(maxAbsDiff((await prefillAndStep(reloaded, e)).logits, e.logits) < 1e-4);
    // The unmerged base saves to itself.
    await base.saveOnnx(join(dir, "base.onnx"));
    const plain = await loadWritten(dir, "base.onnx", "llama-tiny", { "onnx/model.onnx_data": data });
    const eb = await expected("llama-tiny");
    assert.ok(maxAbsDiff((await prefillAndStep(plain, eb)).logits, eb.logits) < 1e-4);
    for (const m of [reloaded, plain, merged, peft, base]) await m.release();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("examples/merge.ts writes a merged model that reproduces the adapter's outputs", async () => {
  const dir = await mkdtemp(join(tmpdir(), "peft-edge-merge-"));
  try {
    const run = (args: string[]) =>
      new Promise<{ code: number; stderr: string }>((resolve) => {
        execFile(deno, ["run", "-A", "--no-check", join(repo, "examples/merge.ts"), ...args], {
          env: { ...process.env, NO_COLOR: "1" },
        }, (err, _out, stderr) => resolve({ code: err ? (err as { code?: number }).code ?? 1 : 0, stderr }));
      });
    const ok = await run([
      "--base",
      fixture("gpt2-tiny"),
      "--adapter",
      fixture("gpt2-tiny-lora-c_attn"),
      "--out",
      join(dir, "m.onnx"),
      "--safe-merge",
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    const merged = await loadWritten(dir, "m.onnx", "gpt2-tiny");
    const e = await expected("gpt2-tiny-lora-c_attn");
    const out = await prefillAndStep(merged, e);
    assert.ok(maxAbsDiff(out.logits, e.logits) < 1e-4);
    assert.ok(maxAbsDiff(out.nextLogits, e.nextLogits) < 1e-4);
    await merged.release();
    assert.equal((await run(["--base", fixture("gpt2-tiny")])).code, 2);
    const wrong = await run([
      "--base",
      fixture("gpt2-tiny"),
      "--adapter",
      fixture("llama-tiny-lora-qv"),
      "--out",
      join(dir, "x.onnx"),
    ]);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /AdapterMismatchError|ModuleNotInExportError/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
