// Writing safetensors: exact bytes, the reference layout, validation, and
// round trips (generated files for every dtype, and the real fixtures).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { SafetensorsError } from "../src/errors.ts";
import {
  type Dtype,
  DTYPE_SIZES,
  DTYPES,
  parseSafetensors,
  serializeSafetensors,
  type TensorInput,
} from "../src/safetensors/mod.ts";

async function fixture(path: string): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(
    await readFile(new URL(`./fixtures/${path}`, import.meta.url)),
  );
}

/** Expected file bytes from exact header text (padding included) and data. */
function expectedFile(headerText: string, data: Uint8Array): Uint8Array {
  const head = new TextEncoder().encode(headerText);
  const out = new Uint8Array(8 + head.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  out.set(data, 8 + head.length);
  return out;
}

function headerText(bytes: Uint8Array): string {
  const n = Number(
    new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true),
  );
  return new TextDecoder().decode(bytes.subarray(8, 8 + n));
}

function expectError(fn: () => unknown, pattern: RegExp, key?: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(
      e instanceof SafetensorsError,
      `expected SafetensorsError, got ${e}`,
    );
    assert.match(e.message, pattern);
    if (key !== undefined) assert.equal(e.key, key);
    return true;
  });
}

const f32 = new Float32Array([0, 1, 2, 3, 4, 5]);
const f32Bytes = new Uint8Array(f32.buffer);

test("writes the reference layout byte for byte (64-byte header, no padding)", () => {
  const out = serializeSafetensors({
    "attn.0": { dtype: "F32", shape: [1, 2, 3], data: f32 },
  });
  const json = '{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}';
  assert.equal(json.length, 64);
  assert.deepEqual(out, expectedFile(json, f32Bytes));
});

test("pads the header with spaces to a multiple of 8", () => {
  const out = serializeSafetensors({
    attn0: { dtype: "F32", shape: [1, 1, 2, 3], data: f32 },
  });
  const json = '{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}';
  assert.equal(json.length, 65);
  assert.deepEqual(out, expectedFile(json + " ".repeat(7), f32Bytes));
  assert.deepEqual(
    serializeSafetensors({}),
    expectedFile("{}      ", new Uint8Array()),
  );
  assert.deepEqual(
    serializeSafetensors({}, { framework: "pt" }),
    expectedFile('{"__metadata__":{"framework":"pt"}}     ', new Uint8Array()),
  );
});

test("orders tensors by dtype alignment (largest first), then by name", () => {
  const t = (dtype: Dtype, n: number): TensorInput => ({
    dtype,
    shape: [n],
    data: new Uint8Array(n * DTYPE_SIZES[dtype]),
  });
  const out = serializeSafetensors({
    b_u8: t("U8", 3),
    a_f16: t("F16", 1),
    z_i64: t("I64", 1),
    a_u8: t("U8", 1),
    m_f32: t("F32", 3),
    a_i64: t("I64", 2),
    bf: t("BF16", 1),
    f8: t("F8_E4M3", 1),
    b: t("BOOL", 1),
    u64: t("U64", 1),
    f64: t("F64", 1),
  });
  const st = parseSafetensors(out);
  assert.deepEqual(st.names(), [
    "u64",
    "a_i64",
    "z_i64",
    "f64",
    "m_f32",
    "bf",
    "a_f16",
    "f8",
    "a_u8",
    "b_u8",
    "b",
  ]);
  // Every tensor starts at a multiple of its element size, in the file.
  assert.equal(st.header.dataOffset % 8, 0);
  for (const [, info] of st.header.tensors) {
    assert.equal(info.dataOffsets[0] % DTYPE_SIZES[info.dtype], 0);
  }
  // The header lists them in data order too.
  const keys = Object.keys(JSON.parse(headerText(out)));
  assert.deepEqual(keys, st.names());
});

test("names sort by code point (UTF-8 byte order), not UTF-16 unit order", () => {
  const t: TensorInput = { dtype: "U8", shape: [1], data: new Uint8Array(1) };
  const out = serializeSafetensors({
    "\u{10000}": t,
    "\uffff": t,
    "é": t,
    "z": t,
  });
  assert.deepEqual(parseSafetensors(out).names(), [
    "z",
    "é",
    "\uffff",
    "\u{10000}",
  ]);
});

test("metadata comes first in the header and round-trips", () => {
  const meta = { format: "pt", note: 'quotes " and \\ and \n and ünïcode' };
  const out = serializeSafetensors({
    w: { dtype: "F32", shape: [6], data: f32 },
  }, meta);
  assert.ok(
    headerText(out).startsWith('{"__metadata__":{"format":"pt","note":'),
  );
  assert.deepEqual(parseSafetensors(out).metadata, meta);
  assert.equal(parseSafetensors(serializeSafetensors({})).metadata, undefined);
});

test("Map input, DataView data and typed-array subarrays are accepted", () => {
  const backing = new Float32Array([9, 0, 1, 2, 3, 4, 5, 9]);
  const fromRecord = serializeSafetensors({
    w: { dtype: "F32", shape: [2, 3], data: f32 },
  });
  const fromMap = serializeSafetensors(
    new Map([["w", {
      dtype: "F32" as const,
      shape: [2, 3],
      data: backing.subarray(1, 7),
    }]]),
  );
  const fromView = serializeSafetensors({
    w: { dtype: "F32", shape: [2, 3], data: new DataView(f32.buffer) },
  });
  assert.deepEqual(fromMap, fromRecord);
  assert.deepEqual(fromView, fromRecord);
});

test("round trip: every dtype, several shapes, identical dtype/shape/bytes", () => {
  let seed = 7;
  const byte = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) & 0xff;
  const shapes = [[], [0], [1], [3, 5], [2, 0, 4], [2, 3, 4]];
  const tensors: Record<string, TensorInput> = {};
  for (const dtype of DTYPES) {
    shapes.forEach((shape, i) => {
      const n = shape.reduce((a, b) => a * b, 1);
      const data = Uint8Array.from({ length: n * DTYPE_SIZES[dtype] }, byte);
      tensors[`${dtype.toLowerCase()}.${i}`] = { dtype, shape, data };
    });
  }
  const out = serializeSafetensors(tensors, { format: "np" });
  const st = parseSafetensors(out, "roundtrip.safetensors");
  assert.equal(st.names().length, DTYPES.length * shapes.length);
  for (const [name, t] of Object.entries(tensors)) {
    const got = st.get(name);
    assert.equal(got.dtype, t.dtype);
    assert.deepEqual(got.shape, t.shape);
    assert.deepEqual(got.bytes, t.data);
    // Typed views are aligned (no copy) thanks to the layout.
    assert.equal(st.toTypedArray(name).buffer, out.buffer, name);
  }
  // Serializing the parsed file again is byte-identical.
  const again = serializeSafetensors(
    new Map(
      st.names().map((n) => [n, { ...st.get(n), data: st.get(n).bytes }]),
    ),
    st.metadata,
  );
  assert.deepEqual(again, out);
});

test("round trip: typed values come back equal for each dtype", () => {
  const cases: [Dtype, ArrayBufferView][] = [
    ["I8", new Int8Array([-128, 0, 127])],
    ["U8", new Uint8Array([0, 200, 255])],
    ["I16", new Int16Array([-32768, 1, 32767])],
    ["U16", new Uint16Array([0, 40000, 65535])],
    ["I32", new Int32Array([-(2 ** 31), 5, 2 ** 31 - 1])],
    ["U32", new Uint32Array([0, 3e9, 2 ** 32 - 1])],
    ["F32", new Float32Array([-1.5, 0, 3.25])],
    ["F64", new Float64Array([Math.PI, -0, 1e300])],
    ["I64", new BigInt64Array([-(2n ** 63n), 0n, 2n ** 63n - 1n])],
    ["U64", new BigUint64Array([0n, 1n, 2n ** 64n - 1n])],
  ];
  const out = serializeSafetensors(
    Object.fromEntries(
      cases.map(([d, data]) => [d, { dtype: d, shape: [3], data }]),
    ),
  );
  const st = parseSafetensors(out);
  for (const [d, data] of cases) assert.deepEqual(st.toTypedArray(d), data, d);
  assert.deepEqual([...st.toFloat32("U32")], [0, 3e9, 2 ** 32]);
  assert.deepEqual([...st.toFloat32("I16")], [-32768, 1, 32767]);
});

test("BOOL, F16, BF16 and F8 round trip and convert to float32", () => {
  const out = serializeSafetensors({
    b: { dtype: "BOOL", shape: [3], data: new Uint8Array([0, 1, 1]) },
    h: { dtype: "F16", shape: [2], data: new Uint16Array([0x3c00, 0xc000]) },
    bf: { dtype: "BF16", shape: [2], data: new Uint16Array([0x3f80, 0xbfc0]) },
    e5: { dtype: "F8_E5M2", shape: [2], data: new Uint8Array([0x3c, 0xc0]) },
    e4: { dtype: "F8_E4M3", shape: [2], data: new Uint8Array([0x38, 0x7e]) },
  });
  const st = parseSafetensors(out);
  assert.deepEqual([...st.toFloat32("b")], [0, 1, 1]);
  assert.deepEqual([...st.toFloat32("h")], [1, -2]);
  assert.deepEqual([...st.toFloat32("bf")], [1, -1.5]);
  assert.deepEqual([...st.toFloat32("e5")], [1, -2]);
  assert.deepEqual([...st.toFloat32("e4")], [1, 448]);
  assert.deepEqual(st.toTypedArray("h"), new Uint16Array([0x3c00, 0xc000]));
});

test("rejects bad tensors, naming the tensor", () => {
  const ok = { dtype: "F32", shape: [2, 3], data: f32 };
  const bad = (t: Partial<Record<keyof TensorInput, unknown>>) => () =>
    serializeSafetensors({ w: { ...ok, ...t } as TensorInput });
  expectError(
    bad({ shape: [2, 2] }),
    /data has 24 bytes but shape \[2,2\] of F32 needs 16/,
    "w",
  );
  expectError(
    bad({ dtype: "F16" }),
    /data has 24 bytes but shape \[2,3\] of F16 needs 12/,
    "w",
  );
  expectError(bad({ dtype: "F4" }), /unknown dtype "F4"/, "w");
  expectError(
    bad({ shape: [-2, -3] }),
    /shape\[0\] must be a non-negative safe integer, got -2/,
    "w",
  );
  expectError(
    bad({ shape: [2, 1.5] }),
    /shape\[1\] must be a non-negative safe integer, got 1.5/,
    "w",
  );
  expectError(bad({ shape: "2,3" }), /shape must be an array/, "w");
  expectError(
    bad({ data: [0, 1, 2, 3, 4, 5] }),
    /data must be a typed array or DataView, got \[object Array\]/,
    "w",
  );
  expectError(
    bad({ shape: [2 ** 30, 2 ** 30, 2 ** 30] }),
    /needs more than Number.MAX_SAFE_INTEGER bytes/,
    "w",
  );
  expectError(
    () => serializeSafetensors({ __metadata__: ok as TensorInput }),
    /"__metadata__" is reserved/,
    "__metadata__",
  );
  expectError(
    () =>
      serializeSafetensors(
        {},
        { format: 1 } as unknown as Record<string, string>,
      ),
    /value of "format" must be a string, got number/,
    "__metadata__",
  );
});

test("fixtures: re-serializing an adapter file reproduces it byte for byte", async () => {
  for (
    const name of [
      "gpt2-tiny-lora-c_attn",
      "llama-tiny-dora-qv",
      "llama-tiny-lora-all-rslora-f16",
      "llama-tiny-lora-embed",
      "llama-tiny-lora-mlp-b",
      "llama-tiny-lora-qv",
    ]
  ) {
    const bytes = await fixture(`${name}/adapter_model.safetensors`);
    const st = parseSafetensors(bytes, name);
    const tensors = new Map(
      st.names().map((n) => [n, { ...st.get(n), data: st.get(n).bytes }]),
    );
    assert.deepEqual(serializeSafetensors(tensors, st.metadata), bytes, name);
  }
});

test("fixtures: expected.safetensors round-trips its tensors (but not its byte layout)", async () => {
  // These files list I64 and F32 tensors in plain name order, while the
  // reference writer (and ours) puts the 8-byte I64 tensors before the F32
  // ones. So only the tensors, not the bytes, can round-trip.
  const bytes = await fixture("llama-tiny/expected.safetensors");
  const st = parseSafetensors(bytes);
  assert.deepEqual(st.names(), [
    "input_ids",
    "logits",
    "next_input_ids",
    "next_logits",
  ]);
  const tensors = new Map(
    st.names().map((n) => [n, { ...st.get(n), data: st.get(n).bytes }]),
  );
  const out = serializeSafetensors(tensors, st.metadata);
  const again = parseSafetensors(out);
  assert.equal(
    out.length - again.header.dataOffset,
    bytes.length - st.header.dataOffset,
  );
  assert.deepEqual(again.names(), [
    "input_ids",
    "next_input_ids",
    "logits",
    "next_logits",
  ]);
  for (const name of st.names()) {
    const a = st.get(name);
    const b = again.get(name);
    assert.equal(b.dtype, a.dtype);
    assert.deepEqual(b.shape, a.shape);
    assert.deepEqual(b.bytes, a.bytes);
  }
});
