/**
 * A local adapter's file is not held in memory once loaded: its tensors are
 * read from the file by range whenever something needs them (feeds, merging,
 * weighted combinations), giving PEFT's numbers; a file changed since the
 * load is refused with a typed error naming it, while the feeds built at load
 * keep serving. Trainable loads and non-local sources hold the bytes.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileAccessError, fromPretrained, loadBaseModel, memorySource } from "../mod.ts";
import { readAdapterWeights } from "../src/model/adapter.ts";
import { parseSafetensors } from "../src/safetensors/mod.ts";
import { localSource } from "../src/storage/local.ts";
import { expected, fixture, maxAbsDiff, prefillAndStep } from "./support/fixtures.ts";

const WEIGHTS = "adapter_model.safetensors";

test("a local adapter's tensors are read from its file when asked; whole loads and memory sources hold the file", async () => {
  const dir = fixture("llama-tiny-lora-qv");
  const bytes = new Uint8Array(await readFile(join(dir, WEIGHTS)));
  const inMemory = parseSafetensors(bytes, WEIGHTS);
  const ranged = await readAdapterWeights(localSource(dir));
  assert.deepEqual(ranged.header, inMemory.header);
  for (const name of inMemory.names()) {
    const read = ranged.get(name).bytes;
    assert.equal(read.buffer.byteLength, read.length, `${name}: a buffer of its own, not a view of the whole file`);
    assert.deepEqual(read, inMemory.get(name).bytes, name);
    assert.deepEqual(ranged.float32View(name), inMemory.float32View(name), name);
  }
  const sources = [
    await readAdapterWeights(localSource(dir), { whole: true }),
    await readAdapterWeights(memorySource("mem", { [WEIGHTS]: bytes, "adapter_config.json": new Uint8Array() })),
  ];
  for (const held of sources) {
    const name = held.names()[0];
    assert.equal(held.get(name).bytes.buffer.byteLength, bytes.length, "a view of the file's bytes");
  }
});

test("a local adapter gives PEFT's numbers from ranged reads and refuses reads of its file once it changed", {
  timeout: 120_000,
}, async () => {
  const dir = await mkdtemp(join(tmpdir(), "peft-edge-adapter-ranges-"));
  try {
    const adapterDir = join(dir, "qv");
    const trainableDir = join(dir, "trainable");
    await cp(fixture("llama-tiny-lora-qv"), adapterDir, { recursive: true });
    await cp(fixture("llama-tiny-lora-qv"), trainableDir, { recursive: true });
    const e = await expected("llama-tiny-lora-qv");
    const near = async (model: Parameters<typeof prefillAndStep>[0], what: string) => {
      const { logits, nextLogits } = await prefillAndStep(model, e);
      assert.ok(maxAbsDiff(logits, e.logits) < 1e-4, `${what}: prefill`);
      assert.ok(maxAbsDiff(nextLogits, e.nextLogits) < 1e-4, `${what}: decode step`);
    };
    const base = await loadBaseModel(fixture("llama-tiny"));
    const model = await fromPretrained(base, adapterDir);
    await near(model, "dynamic");
    // Merging reads the tensors again, from the file.
    const merged = await model.mergeAndUnload();
    await near(merged, "merged from the file");
    await merged.release();

    // One value of the last tensor changed on disk: what reads it now would compute something else.
    const file = new Uint8Array(await readFile(join(adapterDir, WEIGHTS)));
    file[file.length - 1] ^= 0x40;
    await writeFile(join(adapterDir, WEIGHTS), file);
    await near(model, "dynamic, on the feeds built at load");
    for (
      const [what, attempt] of [
        ["mergeAndUnload", () => model.mergeAndUnload()],
        ["addWeightedAdapter", () => model.addWeightedAdapter(["default"], [0.5], "half")],
      ] as const
    ) {
      const refused = await attempt().then(() => undefined, (error) => error);
      assert.ok(refused instanceof FileAccessError, `${what} refused with ${refused}`);
      assert.equal(refused.file, WEIGHTS);
    }
    await near(model, "dynamic, after the refusals");
    await model.release();

    // A trainable adapter holds its bytes: saving over the file it came from leaves it whole.
    const trainable = await fromPretrained(base, trainableDir, { isTrainable: true });
    await trainable.savePretrained(trainableDir);
    const mergedTrainable = await trainable.mergeAndUnload();
    await near(mergedTrainable, "trainable, merged after saving over its file");
    await Promise.all([mergedTrainable.release(), trainable.release()]);
    await base.release();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
