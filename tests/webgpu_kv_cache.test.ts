// The GPU-resident KV cache between decoding steps, with a fake decoder whose
// present.* outputs are GPU tensors (location "gpu-buffer"): they are fed back
// as the very same objects (no copy), each is disposed once the step that
// read it is done, and the last one when generation ends or is abandoned.
// CPU tensors are never disposed. Runs everywhere (no GPU needed).
import { test } from "node:test";
import assert from "node:assert/strict";
import { Tensor } from "../src/deps/ort.ts";
import {
  type CausalLm,
  DecoderSession,
  describeDecoder,
  generate,
  stream,
  type TokenizerLike,
} from "../src/generate/mod.ts";

const bytes: TokenizerLike = {
  encode: (text) => [...new TextEncoder().encode(text)],
  decode: (ids) => new TextDecoder().decode(new Uint8Array(ids)),
};

/** A stand-in for an onnxruntime GPU tensor: only what the loop touches. */
interface FakeGpuTensor {
  location: "gpu-buffer" | "cpu";
  dims: number[];
  type: "float32";
  disposed: number;
  dispose(): void;
}

function fakeTensor(length: number, location: "gpu-buffer" | "cpu"): FakeGpuTensor {
  return {
    location,
    dims: [1, 1, length, 1],
    type: "float32",
    disposed: 0,
    dispose() {
      this.disposed++;
    },
  };
}

/** Always predicts byte "a"; its cache tensors are fakes in `location`. */
function fakeLm(location: "gpu-buffer" | "cpu", logitsOnGpu = false) {
  const created: FakeGpuTensor[] = [];
  const fed: unknown[][] = [];
  const lm: CausalLm = {
    inputNames: ["input_ids", "attention_mask", "past_key_values.0.key", "past_key_values.0.value"],
    outputNames: ["logits", "present.0.key", "present.0.value"],
    config: { num_attention_heads: 1, hidden_size: 1, vocab_size: 256, max_position_embeddings: 64 },
    run(feeds) {
      fed.push([feeds["past_key_values.0.key"], feeds["past_key_values.0.value"]]);
      for (const t of fed.at(-1)!) {
        assert.ok(!(t as FakeGpuTensor).disposed, "a cache tensor was disposed before it was read");
      }
      const length = feeds.attention_mask.dims[1];
      const n = feeds.input_ids.dims[1];
      const values = new Float32Array(n * 256);
      values[(n - 1) * 256 + 97] = 1;
      let logits: Tensor = new Tensor("float32", values, [1, n, 256]);
      if (logitsOnGpu) {
        // A GPU logits tensor: getData(true) downloads and frees it.
        const cpu = logits;
        logits = {
          location: "gpu-buffer",
          type: "float32",
          dims: cpu.dims,
          getData: () => Promise.resolve(cpu.data),
        } as unknown as Tensor;
      }
      const key = fakeTensor(length, location);
      const value = fakeTensor(length, location);
      created.push(key, value);
      return Promise.resolve(
        { logits, "present.0.key": key, "present.0.value": value } as unknown as Record<string, Tensor>,
      );
    },
  };
  return { lm, created, fed };
}

test("GPU cache tensors are fed back as they are and disposed once read", async () => {
  const { lm, created, fed } = fakeLm("gpu-buffer");
  const session = new DecoderSession(lm, describeDecoder(lm));
  await session.prefill([104, 105]);
  assert.deepEqual(created.map((t) => t.disposed), [0, 0]);
  await session.step(97);
  assert.equal(fed[1][0], created[0], "the prefill's present.0.key is the step's past, the same object");
  assert.equal(fed[1][1], created[1]);
  assert.deepEqual(created.map((t) => t.disposed), [1, 1, 0, 0]);
  await session.step(97);
  assert.deepEqual(created.map((t) => t.disposed), [1, 1, 1, 1, 0, 0]);
  session.dispose();
  assert.deepEqual(created.map((t) => t.disposed), [1, 1, 1, 1, 1, 1]);
  // A new prefill starts from an empty CPU cache and frees nothing twice.
  await session.prefill([104]);
  session.dispose();
  assert.ok(created.every((t) => t.disposed === 1));
});

test("generate frees the last GPU cache at the end; an abandoned stream frees it on return()", async () => {
  const first = fakeLm("gpu-buffer");
  const result = await generate(first.lm, bytes, "hi", { maxNewTokens: 5 });
  assert.equal(result.text, "aaaaa");
  assert.equal(first.created.length, 2 * 5); // prefill + 4 steps
  assert.ok(first.created.every((t) => t.disposed === 1), "every cache tensor disposed exactly once");

  const second = fakeLm("gpu-buffer");
  const pieces = stream(second.lm, bytes, "hi", { maxNewTokens: 50 });
  await pieces.next();
  await pieces.next();
  await pieces.return(undefined as never);
  assert.ok(second.created.length > 0);
  assert.ok(second.created.every((t) => t.disposed === 1));
});

test("CPU cache tensors are never disposed (the WASM path is unchanged)", async () => {
  const { lm, created } = fakeLm("cpu");
  await generate(lm, bytes, "hi", { maxNewTokens: 4 });
  assert.ok(created.length > 0);
  assert.ok(created.every((t) => t.disposed === 0));
});

test("GPU-resident logits are downloaded before choosing a token", async () => {
  const { lm } = fakeLm("gpu-buffer", true);
  const result = await generate(lm, bytes, "hi", { maxNewTokens: 3 });
  assert.equal(result.text, "aaa");
});
