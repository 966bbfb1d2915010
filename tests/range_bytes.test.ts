/**
 * A local base's weights are never whole in JavaScript: its files' bytes
 * are read range by range (as onnxruntime copies each initializer), the
 * model still gives the fixture's logits and saves whole, and a file
 * rewritten after the load is refused with a typed error naming it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { cp, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileAccessError, fromPretrained, loadBaseModel, memorySource } from "../mod.ts";
import { localSource } from "../src/storage/local.ts";
import { rangeBytes, rangeFileOf, wholeBytes } from "../src/storage/range_bytes.ts";
import { expected, fixture, maxAbsDiff, prefillAndStep } from "./support/fixtures.ts";

const FILE = "onnx/model.onnx";

test("rangeBytes reads the ranges asked for, as subarray and slice index them, and refuses other uses", async () => {
  const whole = new Uint8Array(await readFile(join(fixture("llama-tiny"), FILE)));
  const file = (await localSource(fixture("llama-tiny")).openRanges!(FILE))!;
  assert.equal(file.size, whole.length);
  const bytes = rangeBytes(file, FILE);
  assert.ok(bytes instanceof Uint8Array);
  assert.equal(bytes.length, whole.length);
  assert.equal(bytes.byteLength, whole.length);
  for (const [begin, end] of [[0, 16], [100, 5000], [-32, undefined], [whole.length - 3, whole.length + 10], [9, 4]]) {
    assert.deepEqual(bytes.subarray(begin, end), whole.subarray(begin, end), `subarray(${begin}, ${end})`);
    assert.deepEqual(bytes.slice(begin, end), whole.slice(begin, end), `slice(${begin}, ${end})`);
  }
  assert.throws(() => bytes[0], TypeError);
  assert.throws(() => bytes.buffer, TypeError);
  assert.equal(rangeFileOf(bytes), file);
  assert.equal(rangeFileOf(whole), undefined);
  assert.deepEqual(wholeBytes(bytes), whole);

  // One buffer for every read: a range stays valid until the next.
  const scratch = { bytes: new Uint8Array(0) };
  const reused = rangeBytes(file, FILE, { reuse: scratch });
  const first = reused.subarray(0, 64);
  assert.deepEqual(first, whole.subarray(0, 64));
  const second = reused.subarray(64, 96);
  assert.equal(second.buffer, first.buffer);
  assert.deepEqual(second, whole.subarray(64, 96));
});

test("a local base holds no copy of its weights, runs, saves whole, and refuses a file rewritten since", {
  timeout: 120_000,
}, async () => {
  const dir = await mkdtemp(join(tmpdir(), "peft-edge-ranges-"));
  try {
    await cp(fixture("llama-tiny"), dir, { recursive: true });
    // Ranged reads resolve names as reads do: nothing outside the folder.
    await symlink(join(fixture("llama-tiny"), FILE), join(dir, "outside.onnx"));
    await assert.rejects(localSource(dir).openRanges!("outside.onnx"), FileAccessError);
    await assert.rejects(localSource(dir).openRanges!("../x.onnx"), FileAccessError);
    const base = await loadBaseModel(dir);
    const ranged = [...base.externalData.values()];
    assert.ok(ranged.length > 0 && ranged.every((b) => rangeFileOf(b) !== undefined), "weights read from the file");
    const e = await expected("llama-tiny");
    assert.ok(maxAbsDiff((await prefillAndStep(base, e)).logits, e.logits) < 1e-4);
    const adapted = await fromPretrained(base, fixture("llama-tiny-lora-qv"));
    assert.ok(maxAbsDiff((await prefillAndStep(adapted, e)).logits, e.logits) > 1e-3, "the adapter acts");

    const { model, externalData } = await base.toOnnx();
    assert.equal(externalData.size, 0, "inline weights are written inline again");
    const config = await readFile(join(dir, "config.json"));
    const again = await loadBaseModel(memorySource("saved", { "config.json": config, [FILE]: model }));
    assert.deepEqual((await prefillAndStep(again, e)).logits, (await prefillAndStep(base, e)).logits);

    // A new session (another adapter's graph) reads the weights again: from a file that is not the one loaded.
    const onnx = await readFile(join(dir, FILE));
    onnx[onnx.length - 1] ^= 1;
    await writeFile(join(dir, FILE), onnx);
    await adapted.release();
    const refused = await fromPretrained(base, fixture("llama-tiny-lora-qv")).then(() => undefined, (err) => err);
    assert.ok(refused instanceof FileAccessError, `refused with ${refused}`);
    assert.equal(refused.file, FILE);
    await Promise.all([base.release(), again.release()]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
