/**
 * readGraphNodes parses a graph's nodes through ranged reads as
 * decodeGraphNodes does from the whole file, reading little more than the
 * nodes, and refuses a broken file with the same typed error; readModelWithoutWeights
 * gives the model splitInlineWeights makes of the whole file without reading
 * its large inline weights, and loadBaseModel reads a local file so.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { type FileSource, fromPretrained, loadBaseModel, OnnxModelError } from "../mod.ts";
import { localSource } from "../src/storage/local.ts";
import {
  BinaryWriter,
  create,
  GraphProtoSchema,
  TensorProtoSchema,
  toBinary,
  WireType,
} from "../src/deps/onnx_proto.ts";
import type { RangeFile } from "../src/storage/file_source.ts";
import { decodeGraphNodes, decodeModel, encodeModel } from "../src/onnx/model_file.ts";
import { readGraphNodes } from "../src/onnx/ranged_graph.ts";
import { readModelWithoutWeights, splitInlineWeights, splitPlacedWeights } from "../src/onnx/weight_split.ts";
import { ModelProtoSchema } from "../src/deps/onnx_proto.ts";
import { expected, fixture, maxAbsDiff, prefillAndStep } from "./support/fixtures.ts";

/** A RangeFile over bytes in memory that counts the bytes read. */
function counted(bytes: Uint8Array): RangeFile & { read: number } {
  const file = {
    size: bytes.length,
    read: 0,
    readInto(offset: number, into: Uint8Array) {
      if (offset + into.length > bytes.length) throw new RangeError("past the end");
      into.set(bytes.subarray(offset, offset + into.length));
      file.read += into.length;
    },
    readAll: () => Promise.resolve(bytes.slice()),
  };
  return file;
}

for (const name of ["llama-tiny/onnx/model.onnx", "index/llama-dynamo/onnx/model.onnx", "gpt2-tiny/onnx/model.onnx"]) {
  test(`readGraphNodes of ${name} equals decodeGraphNodes of the whole file`, async () => {
    const bytes = new Uint8Array(await readFile(fixture(name)));
    const file = counted(bytes);
    const ranged = readGraphNodes(file, name);
    const whole = decodeGraphNodes(bytes, name);
    assert.deepEqual(toBinary(GraphProtoSchema, ranged), toBinary(GraphProtoSchema, whole));
    assert.ok(ranged.node.length > 0);
    assert.equal(ranged.initializer.length, 0);
  });
}

test("readGraphNodes skips inline weights unread", async () => {
  // llama-tiny keeps its weights inline; one more of 8 MiB makes the file mostly raw_data.
  const model = decodeModel(new Uint8Array(await readFile(fixture("llama-tiny/onnx/model.onnx"))), "model.onnx");
  const big = create(TensorProtoSchema, {
    name: "big",
    dims: [2n << 20n],
    dataType: 1,
    rawData: new Uint8Array(8 << 20),
  });
  model.graph!.initializer.push(big);
  const bytes = encodeModel(model);
  const file = counted(bytes);
  const graph = readGraphNodes(file, "model.onnx");
  assert.deepEqual(
    toBinary(GraphProtoSchema, graph),
    toBinary(GraphProtoSchema, decodeGraphNodes(bytes, "model.onnx")),
  );
  assert.ok(file.read < 1 << 20, `read ${file.read} of ${bytes.length}`);
});

test("readGraphNodes refuses a cut or broken file with an OnnxModelError naming it", async () => {
  const bytes = new Uint8Array(await readFile(fixture("llama-tiny/onnx/model.onnx")));
  for (const broken of [bytes.subarray(0, bytes.length - 100), bytes.subarray(0, 1000), new Uint8Array([0x3a, 0x05])]) {
    assert.throws(() => readGraphNodes(counted(broken), "onnx/cut.onnx"), (err) => {
      assert.ok(err instanceof OnnxModelError, String(err));
      assert.equal(err.file, "onnx/cut.onnx");
      return true;
    });
  }
  // No graph at all: as decodeGraphNodes says it.
  assert.throws(() => readGraphNodes(counted(new Uint8Array([0x08, 0x07])), "onnx/empty.onnx"), /no graph nodes/);
});

test("a quantized dynamo base in a folder reads its fp32 sibling's nodes range by range, never the file whole", async () => {
  const local = localSource(fixture("index/llama-dynamo"));
  const whole: string[] = [];
  const ranged: string[] = [];
  const source: FileSource = {
    location: local.location,
    exists: (file) => local.exists(file),
    read: (file) => (whole.push(file), local.read(file)),
    openRanges: (file) => (ranged.push(file), local.openRanges!(file)),
  };
  const base = await loadBaseModel(source, { dtype: "q4" });
  assert.equal(base.weights.get("model.layers.1.self_attn.v_proj")?.nodeName, "node_linear_9_Q4");
  assert.deepEqual(base.weights.unscoped, []);
  assert.ok(ranged.includes("onnx/model.onnx"), ranged.join());
  assert.ok(!whole.some((f) => f.startsWith("onnx/")), whole.join());
  await base.release();
});

/** The model with one more inline initializer of 8 MiB: the file is then mostly raw_data. */
async function withBigWeight(): Promise<Uint8Array> {
  const model = decodeModel(new Uint8Array(await readFile(fixture("llama-tiny/onnx/model.onnx"))), "model.onnx");
  model.graph!.initializer.push(
    create(TensorProtoSchema, {
      name: "big",
      dims: [2n << 20n],
      dataType: 1,
      rawData: new Uint8Array(8 << 20).fill(7),
    }),
  );
  return encodeModel(model);
}

for (
  const name of ["llama-tiny/onnx/model.onnx", "index/llama-dynamo/onnx/model.onnx", "gpt2-tiny/onnx/model.onnx", "big"]
) {
  test(`readModelWithoutWeights + splitPlacedWeights of ${name} equal splitInlineWeights of the whole file`, async () => {
    const bytes = name === "big" ? await withBigWeight() : new Uint8Array(await readFile(fixture(name)));
    const file = counted(bytes);
    const { model: decoded, placed } = readModelWithoutWeights(file, "onnx/model.onnx");
    const split = splitPlacedWeights(decoded, placed, "onnx/model.onnx");
    const whole = splitInlineWeights(bytes, decodeModel(bytes, "onnx/model.onnx"), "onnx/model.onnx");
    assert.equal(split.location, whole.location);
    assert.deepEqual(toBinary(ModelProtoSchema, split.model), toBinary(ModelProtoSchema, whole.model));
    assert.equal(decoded.graph!.initializer.length, whole.model.graph!.initializer.length);
    if (split.location !== undefined) {
      const moved = whole.model.graph!.initializer.reduce((n, t) => n + (t.externalData.length > 0 ? 1 : 0), 0);
      assert.ok(moved > 0);
      // Only the kept fields and the skipped fields' heads were read.
      const weights = decoded.graph!.initializer.reduce((n, t) => n + t.rawData.length, 0);
      assert.ok(file.read < bytes.length - 4096 * moved + weights, `read ${file.read} of ${bytes.length}`);
    }
    if (name === "big") assert.ok(file.read < 1 << 20, `read ${file.read} of ${bytes.length}`);
  });
}

test("a tensor's raw_data given twice is its last value, as protobuf decodes it, in both readings", async () => {
  const model = encodeModel(
    decodeModel(new Uint8Array(await readFile(fixture("llama-tiny/onnx/model.onnx"))), "model.onnx"),
  );
  for (const [first, last] of [[8 << 10, 8], [8, 8 << 10], [8 << 10, 16 << 10]]) {
    const raw = (n: number, fill: number) =>
      toBinary(TensorProtoSchema, create(TensorProtoSchema, { rawData: new Uint8Array(n).fill(fill) }));
    const named = toBinary(
      TensorProtoSchema,
      create(TensorProtoSchema, { name: "twice", dims: [BigInt(last / 4)], dataType: 1 }),
    );
    // A second ModelProto.graph field merges into the first: here one initializer whose raw_data comes twice.
    const extra = new BinaryWriter().tag(7, WireType.LengthDelimited).fork().tag(5, WireType.LengthDelimited)
      .bytes(new Uint8Array([...named, ...raw(first, 3), ...raw(last, 5)])).join().finish();
    const bytes = new Uint8Array([...model, ...extra]);
    const whole = decodeModel(bytes, "onnx/model.onnx");
    assert.equal(whole.graph!.initializer.at(-1)!.rawData.length, last);
    const file = counted(bytes);
    const { model: decoded, placed } = readModelWithoutWeights(file, "onnx/model.onnx");
    const split = splitPlacedWeights(decoded, placed, "onnx/model.onnx");
    const expected = splitInlineWeights(bytes, whole, "onnx/model.onnx");
    assert.deepEqual(toBinary(ModelProtoSchema, split.model), toBinary(ModelProtoSchema, expected.model));
    const twice = split.model.graph!.initializer.at(-1)!;
    if (last >= 4096) {
      const [, offset, length] = twice.externalData.map((e) => Number(e.value));
      assert.deepEqual(bytes.subarray(offset, offset + length), new Uint8Array(last).fill(5));
    } else assert.deepEqual(twice.rawData, new Uint8Array(last).fill(5));
  }
});

test("readModelWithoutWeights refuses a cut or broken file with an OnnxModelError naming it", async () => {
  const bytes = await withBigWeight();
  for (const broken of [bytes.subarray(0, bytes.length - 100), bytes.subarray(0, 1000), new Uint8Array([0x3a, 0x05])]) {
    assert.throws(() => readModelWithoutWeights(counted(broken), "onnx/cut.onnx"), (err) => {
      assert.ok(err instanceof OnnxModelError, String(err));
      assert.equal(err.file, "onnx/cut.onnx");
      return true;
    });
  }
  assert.throws(
    () => readModelWithoutWeights(counted(new Uint8Array([0x08, 0x07])), "onnx/empty.onnx"),
    /no graph nodes/,
  );
});

test("loadBaseModel reads a local file's structure range by range, never the file whole, and gives PEFT's numbers", async () => {
  const local = localSource(fixture("llama-tiny"));
  const whole: string[] = [];
  let readAll = 0;
  const source: FileSource = {
    location: local.location,
    exists: (file) => local.exists(file),
    read: (file) => (whole.push(file), local.read(file)),
    openRanges: async (file) => {
      const opened = await local.openRanges!(file);
      return opened &&
        { ...opened, readInto: (o, into) => opened.readInto(o, into), readAll: () => (readAll++, opened.readAll()) };
    },
  };
  const base = await loadBaseModel(source);
  assert.ok(!whole.some((f) => f.startsWith("onnx/")), whole.join());
  assert.equal(readAll, 0);
  const model = await fromPretrained(base, fixture("llama-tiny-lora-qv"));
  const e = await expected("llama-tiny-lora-qv");
  const { logits, nextLogits } = await prefillAndStep(model, e);
  assert.ok(maxAbsDiff(logits, e.logits) < 1e-4, "prefill");
  assert.ok(maxAbsDiff(nextLogits, e.nextLogits) < 1e-4, "decode step");
  assert.equal(readAll, 0);
  await model.release();
  await base.release();
});
