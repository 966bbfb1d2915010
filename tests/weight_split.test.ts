/**
 * Graph and weights kept apart: an ONNX file's inline weights become
 * external data references into its own bytes (the graph alone is small),
 * the loaded base still gives the fixture's logits, a saved base is one file
 * again, and weights read again from a file that changed are refused.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { type FileSource, fromPretrained, loadBaseModel, memorySource, OnnxModelError } from "../mod.ts";
import { decodeModel } from "../src/onnx/model_file.ts";
import { externalLocation } from "../src/onnx/external_data.ts";
import { inlineWeights, splitInlineWeights } from "../src/onnx/weight_split.ts";
import { expected, fixture, maxAbsDiff, prefillAndStep } from "./support/fixtures.ts";

const FILE = "onnx/model.onnx";

test("splitInlineWeights moves the large weights out as views of the file's bytes, and inlineWeights undoes it", async () => {
  const bytes = new Uint8Array(await readFile(join(fixture("llama-tiny"), FILE)));
  const original = decodeModel(bytes, FILE);
  const { model, location } = splitInlineWeights(bytes, original, FILE);
  assert.equal(location, "model.onnx.inline_weights");
  const moved = model.graph!.initializer.filter((t) => externalLocation(t, FILE)?.location === location);
  assert.ok(moved.length > 0 && moved.every((t) => t.rawData.length === 0));
  // Nothing in the split graph views the file's buffer (holding it would keep every weight alive).
  assert.ok(model.graph!.initializer.every((t) => t.rawData.buffer !== bytes.buffer));
  for (const t of moved) {
    const loc = externalLocation(t, FILE)!;
    const was = original.graph!.initializer.find((o) => o.name === t.name)!.rawData;
    assert.deepEqual(bytes.subarray(loc.offset, loc.offset + loc.length!), was);
  }
  const whole = inlineWeights(model, location!, new Map([[location!, bytes]]), FILE);
  assert.deepEqual(
    whole.graph!.initializer.map((t) => [t.name, t.rawData]),
    original.graph!.initializer.map((t) => [t.name, t.rawData]),
  );
});

test("a base whose weights were inline runs as before, saves as one file, and refuses a changed file", {
  timeout: 120_000,
}, async () => {
  const dir = fixture("llama-tiny");
  const [config, onnx] = await Promise.all([readFile(join(dir, "config.json")), readFile(join(dir, FILE))]);
  const files: Record<string, Uint8Array> = { "config.json": config, [FILE]: new Uint8Array(onnx) };
  // A source that serves what `files` holds at each read (memorySource keeps what it was given).
  const source: FileSource = {
    location: "llama-tiny",
    read: (file) => files[file] ? Promise.resolve(files[file]) : memorySource("none", {}).read(file),
    exists: (file) => Promise.resolve(file in files),
  };
  const base = await loadBaseModel(source);
  const e = await expected("llama-tiny");
  assert.ok(maxAbsDiff((await prefillAndStep(base, e)).logits, e.logits) < 1e-4);

  const { model, externalData } = await base.toOnnx();
  assert.equal(externalData.size, 0, "inline weights are written inline again");
  const again = await loadBaseModel(memorySource("saved", { "config.json": config, [FILE]: model }));
  assert.deepEqual((await prefillAndStep(again, e)).logits, (await prefillAndStep(base, e)).logits);

  // The session holds the weights now; a new one (an adapter's graph) reads the file again, which changed.
  const changed = new Uint8Array(onnx);
  changed[changed.length - 1] ^= 1; // a sampled byte
  files[FILE] = changed;
  await assert.rejects(fromPretrained(base, fixture("llama-tiny-lora-qv")), OnnxModelError);
  files[FILE] = new Uint8Array(onnx);
  const model2 = await fromPretrained(base, fixture("llama-tiny-lora-qv"));
  assert.ok(maxAbsDiff((await prefillAndStep(model2, e)).logits, e.logits) > 1e-3, "the adapter acts");
  await Promise.all([model2.release(), base.release(), again.release()]);
});
