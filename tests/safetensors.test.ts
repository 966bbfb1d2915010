// Reading and validating safetensors files: every validation rule gets a
// failing input built by mutating a valid file, plus header-only Blob reads
// and the real fixtures.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { Buffer } from "node:buffer";
import { SafetensorsError } from "../src/errors.ts";
import { f16BitsToF32, f32ToF16 } from "../src/numeric/mod.ts";
import { parseSafetensors, parseSafetensorsHeader, readSafetensorsHeader } from "../src/safetensors/mod.ts";

const FILE = "test.safetensors";

/** A file from header JSON (object or exact text) and data bytes, unpadded. */
function rawFile(
  header: unknown,
  data: number | Uint8Array = 0,
): Uint8Array<ArrayBuffer> {
  const json = typeof header === "string" ? header : JSON.stringify(header);
  return rawFileBytes(new TextEncoder().encode(json), data);
}

function rawFileBytes(
  head: Uint8Array,
  data: number | Uint8Array = 0,
): Uint8Array<ArrayBuffer> {
  const body = typeof data === "number" ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + head.length + body.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  out.set(body, 8 + head.length);
  return out;
}

/** A valid header: F32 [2,3] then I64 [2], 40 data bytes. */
function validHeader() {
  return {
    __metadata__: { format: "pt" },
    a: { dtype: "F32", shape: [2, 3], data_offsets: [0, 24] },
    b: { dtype: "I64", shape: [2], data_offsets: [24, 40] },
  } as Record<string, Record<string, unknown>>;
}

function expectError(fn: () => unknown, pattern: RegExp, key?: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(
      e instanceof SafetensorsError,
      `expected SafetensorsError, got ${e}`,
    );
    assert.match(e.message, pattern);
    assert.equal(e.file, FILE);
    assert.ok(e.message.startsWith(FILE), e.message);
    if (key !== undefined) assert.equal(e.key, key);
    return true;
  });
}

const parse = (bytes: Uint8Array) => parseSafetensors(bytes, FILE);

async function fixture(path: string): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(
    await readFile(new URL(`./fixtures/${path}`, import.meta.url)),
  );
}

const ADAPTERS = [
  "gpt2-tiny-lora-c_attn",
  "llama-tiny-dora-qv",
  "llama-tiny-lora-all-rslora-f16",
  "llama-tiny-lora-embed",
  "llama-tiny-lora-mlp-b",
  "llama-tiny-lora-qv",
];

// --- valid inputs -----------------------------------------------------------

test("a valid file parses: header, names, metadata, views", () => {
  const data = new Uint8Array(40).map((_, i) => i);
  const bytes = rawFile(validHeader(), data);
  const st = parse(bytes);
  assert.deepEqual(st.names(), ["a", "b"]);
  assert.deepEqual(st.metadata, { format: "pt" });
  assert.equal(st.header.dataOffset, 8 + st.header.headerLength);
  assert.deepEqual(st.header.tensors.get("b"), {
    dtype: "I64",
    shape: [2],
    dataOffsets: [24, 40],
  });
  const b = st.get("b");
  assert.equal(b.dtype, "I64");
  assert.deepEqual(b.shape, [2]);
  assert.deepEqual([...b.bytes], [...data.subarray(24, 40)]);
  // A view into the file, not a copy.
  assert.equal(b.bytes.buffer, bytes.buffer);
  assert.equal(b.bytes.byteOffset, st.header.dataOffset + 24);
});

test("float32View is a view of an aligned F32 tensor and a converted copy otherwise", () => {
  const values = new Float32Array([1.5, -2, 3.25, 0, 7, -0.5]);
  const header = { a: { dtype: "F32", shape: [6], data_offsets: [0, 24] } };
  // A header of 16 bytes puts the data at offset 24: aligned.
  const head = new TextEncoder().encode(
    JSON.stringify(header).padEnd(16 * Math.ceil(JSON.stringify(header).length / 16)),
  );
  const bytes = rawFileBytes(head, new Uint8Array(values.buffer));
  const st = parse(bytes);
  const view = st.float32View("a");
  assert.deepEqual(view, values);
  assert.equal(view.buffer, bytes.buffer, "no copy");
  assert.notEqual(st.toFloat32("a").buffer, bytes.buffer, "toFloat32 still copies");
  // One more byte of header: the data is no longer 4-aligned, so the values are copied out.
  const odd = rawFileBytes(new Uint8Array([...head, 0x20]), new Uint8Array(values.buffer));
  const copied = parse(odd).float32View("a");
  assert.deepEqual(copied, values);
  assert.notEqual(copied.buffer, odd.buffer);
  // Other dtypes convert.
  const f16 = parse(rawFile({ h: { dtype: "F16", shape: [1], data_offsets: [0, 2] } }, new Uint8Array([0x00, 0x3c])));
  assert.deepEqual(f16.float32View("h"), new Float32Array([1]));
});

test("names are in data order, not header order", () => {
  const h = {
    z: { dtype: "U8", shape: [1], data_offsets: [0, 1] },
    a: { dtype: "U8", shape: [1], data_offsets: [1, 2] },
  };
  assert.deepEqual(parse(rawFile(h, 2)).names(), ["z", "a"]);
  const swapped = {
    a: { dtype: "U8", shape: [1], data_offsets: [1, 2] },
    z: { dtype: "U8", shape: [1], data_offsets: [0, 1] },
  };
  assert.deepEqual(parse(rawFile(swapped, 2)).names(), ["z", "a"]);
});

test("empty header, scalars and zero-size tensors are valid", () => {
  assert.equal(parse(rawFile("{}")).names().length, 0);
  assert.equal(parse(rawFile("{}")).metadata, undefined);
  const h = {
    s: { dtype: "F64", shape: [], data_offsets: [0, 8] },
    e1: { dtype: "F32", shape: [0, 4], data_offsets: [8, 8] },
    e2: { dtype: "I8", shape: [0], data_offsets: [8, 8] },
    t: { dtype: "U8", shape: [2], data_offsets: [8, 10] },
  };
  const data = new Uint8Array(10);
  new DataView(data.buffer).setFloat64(0, 2.5, true);
  const st = parse(rawFile(h, data));
  assert.deepEqual([...st.toFloat32("s")], [2.5]);
  assert.equal(st.get("e1").bytes.length, 0);
  assert.deepEqual(st.get("e1").shape, [0, 4]);
});

test("whitespace around the JSON is allowed (space padding, leading newline)", () => {
  const json = JSON.stringify(validHeader());
  for (const text of [json + "      ", "  " + json, "\n\t" + json + " \r\n"]) {
    assert.deepEqual(parse(rawFile(text, 40)).names(), ["a", "b"]);
  }
});

test("__metadata__: null is read as absent, like the reference", () => {
  const h = validHeader() as Record<string, unknown>;
  h.__metadata__ = null;
  assert.equal(parse(rawFile(h, 40)).metadata, undefined);
});

// --- size and length prefix ----------------------------------------------------

test("rejects a file shorter than 8 bytes", () => {
  expectError(
    () => parse(new Uint8Array(5)),
    /5 bytes, shorter than the 8-byte/,
  );
  expectError(
    () => parse(new Uint8Array(0)),
    /0 bytes, shorter than the 8-byte/,
  );
});

test("rejects a header length past the end of the file", () => {
  const bytes = rawFile(validHeader(), 40);
  new DataView(bytes.buffer).setUint32(0, bytes.length, true);
  expectError(
    () => parse(bytes),
    new RegExp(`header length ${bytes.length} runs past the end`),
  );
});

test("rejects a header length over 100,000,000 bytes, even before the file size", () => {
  const bytes = rawFile(validHeader(), 40);
  new DataView(bytes.buffer).setUint32(0, 100_000_001, true);
  expectError(
    () => parse(bytes),
    /header length 100000001 exceeds the 100000000-byte limit/,
  );
  const huge = rawFile(validHeader(), 40);
  new DataView(huge.buffer).setBigUint64(0, 2n ** 63n + 5n, true);
  expectError(() => parse(huge), /header length 9223372036854775813 exceeds/);
});

test("rejects a file truncated inside the header", () => {
  const bytes = rawFile(validHeader(), 40);
  const headerEnd = new DataView(bytes.buffer).getUint32(0, true) + 8;
  expectError(
    () => parse(bytes.subarray(0, headerEnd - 3)),
    /runs past the end of the file/,
  );
});

test("rejects a file truncated inside the data (data ends past the file end)", () => {
  const bytes = rawFile(validHeader(), 40);
  expectError(
    () => parse(bytes.subarray(0, bytes.length - 1)),
    /past the end of the \d+-byte file \(truncated by 1 bytes\?\)/,
    "b",
  );
});

test("rejects bytes after the last tensor (data shorter than the file)", () => {
  expectError(
    () => parse(rawFile(validHeader(), 41)),
    /\(1 unaccounted bytes at the end\)/,
    "b",
  );
  expectError(() => parse(rawFile("{}", 3)), /3 unaccounted bytes/);
});

test("parseSafetensorsHeader needs only the header bytes, and says when it has fewer", () => {
  const bytes = rawFile(validHeader(), 40);
  const headerEnd = 8 + new DataView(bytes.buffer).getUint32(0, true);
  const header = parseSafetensorsHeader(
    bytes.slice(0, headerEnd),
    bytes.length,
    FILE,
  );
  assert.deepEqual([...header.tensors.keys()], ["a", "b"]);
  expectError(
    () => parseSafetensorsHeader(bytes.slice(0, headerEnd - 1), bytes.length, FILE),
    new RegExp(
      `only ${headerEnd - 1} bytes given but the header needs ${headerEnd}`,
    ),
  );
});

// --- header text ---------------------------------------------------------------

test("rejects a header that is not UTF-8", () => {
  const head = new TextEncoder().encode('{"a\xff":1}');
  head[3] = 0xff;
  expectError(() => parse(rawFileBytes(head)), /is not valid UTF-8/);
});

test("rejects a header starting with a byte order mark", () => {
  const head = new TextEncoder().encode("\uFEFF{}");
  expectError(() => parse(rawFileBytes(head)), /not valid JSON/);
});

test("rejects a header that is not JSON", () => {
  expectError(() => parse(rawFile("{not json}")), /header is not valid JSON/);
  expectError(() => parse(rawFile("{}x")), /header is not valid JSON/);
  // The reference pads with spaces; NUL padding is not JSON whitespace.
  expectError(() => parse(rawFile("{}\0\0")), /header is not valid JSON/);
  expectError(() => parse(rawFile("")), /header is not valid JSON/);
});

test("rejects a header that is JSON but not an object", () => {
  expectError(
    () => parse(rawFile("[]")),
    /must be a JSON object, got \[\]/,
  );
  expectError(() => parse(rawFile("null")), /must be a JSON object, got null/);
  expectError(() => parse(rawFile('"x"')), /must be a JSON object, got "x"/);
});

// --- tensor entries ---------------------------------------------------------------

function mutated(
  mutate: (h: Record<string, Record<string, unknown>>) => void,
  data = 40,
) {
  const h = validHeader();
  mutate(h);
  return rawFile(h, data);
}

test("rejects an entry that is not an object", () => {
  expectError(
    () => parse(mutated((h) => (h.a = [1] as never))),
    /entry must be an object .* got \[1\]/,
    "a",
  );
  expectError(
    () => parse(mutated((h) => (h.a = "F32" as never))),
    /got "F32"/,
    "a",
  );
});

test("rejects unknown and missing entry fields", () => {
  expectError(
    () => parse(mutated((h) => (h.a.extra = 1))),
    /unexpected field "extra"/,
    "a",
  );
  expectError(
    () => parse(mutated((h) => delete h.a.shape)),
    /missing field "shape"/,
    "a",
  );
  expectError(
    () => parse(mutated((h) => delete h.b.dtype)),
    /missing field "dtype"/,
    "b",
  );
  expectError(
    () => parse(mutated((h) => delete h.b.data_offsets)),
    /missing field "data_offsets"/,
    "b",
  );
});

test("rejects unknown dtypes and non-string dtypes", () => {
  expectError(
    () => parse(mutated((h) => (h.a.dtype = "F4"))),
    /unknown dtype "F4" \(known: BOOL, U8/,
    "a",
  );
  expectError(
    () => parse(mutated((h) => (h.a.dtype = "f32"))),
    /unknown dtype "f32"/,
    "a",
  );
  expectError(
    () => parse(mutated((h) => (h.a.dtype = 4))),
    /dtype must be a string, got 4/,
    "a",
  );
});

test("rejects negative, fractional and non-numeric shape entries", () => {
  expectError(
    () => parse(mutated((h) => (h.a.shape = [-2, -3]))),
    /shape\[0\] must be a non-negative integer, got -2/,
    "a",
  );
  expectError(
    () => parse(mutated((h) => (h.a.shape = [4, 1.5]))),
    /shape\[1\] must be a non-negative integer, got 1.5/,
    "a",
  );
  expectError(
    () => parse(mutated((h) => (h.a.shape = ["2", 3]))),
    /shape\[0\] must be a non-negative integer, got "2"/,
    "a",
  );
  expectError(
    () => parse(mutated((h) => (h.a.shape = 6))),
    /shape must be an array, got 6/,
    "a",
  );
});

test("rejects integers written as 3.0, 3e0 or -0, which the reference reads as not usize", () => {
  const text = JSON.stringify(validHeader());
  const cases: [string, string, RegExp][] = [
    [
      '"shape":[2,3]',
      '"shape":[2,3.0]',
      /shape\[1\] is written 3.0; it must be a plain non-negative integer/,
    ],
    ['"shape":[2,3]', '"shape":[2,3e0]', /shape\[1\] is written 3e0/],
    [
      '"data_offsets":[0,24]',
      '"data_offsets":[-0,24]',
      /data_offsets\[0\] is written -0/,
    ],
    [
      '"data_offsets":[0,24]',
      '"data_offsets":[0,2.4E1]',
      /data_offsets\[1\] is written 2.4E1/,
    ],
  ];
  for (const [from, to, pattern] of cases) {
    assert.ok(text.includes(from));
    expectError(() => parse(rawFile(text.replace(from, to), 40)), pattern, "a");
  }
});

test("rejects shape entries and element counts past Number.MAX_SAFE_INTEGER", () => {
  const text = JSON.stringify(validHeader()).replace(
    '"shape":[2,3]',
    '"shape":[9007199254740993]',
  );
  expectError(
    () => parse(rawFile(text, 40)),
    /shape\[0\] = 9007199254740992 exceeds Number.MAX_SAFE_INTEGER/,
    "a",
  );
  expectError(
    () => parse(mutated((h) => (h.a.shape = [2 ** 26, 2 ** 26, 2 ** 26, 0]))),
    /has more than Number.MAX_SAFE_INTEGER elements/,
    "a",
  );
  expectError(
    () => parse(mutated((h) => (h.b.shape = [2 ** 51]))),
    /of I64 needs more than Number.MAX_SAFE_INTEGER bytes/,
    "b",
  );
});

test("rejects malformed data_offsets", () => {
  expectError(
    () => parse(mutated((h) => (h.a.data_offsets = [0]))),
    /data_offsets must be an array \[begin, end\], got \[0\]/,
    "a",
  );
  expectError(
    () => parse(mutated((h) => (h.a.data_offsets = [0, 24, 40]))),
    /data_offsets must be an array/,
    "a",
  );
  expectError(
    () => parse(mutated((h) => (h.a.data_offsets = { 0: 0, 1: 24 }))),
    /got \{"0":0,"1":24\}/,
    "a",
  );
  expectError(
    () => parse(mutated((h) => (h.a.data_offsets = [24, 0]))),
    /data_offsets \[24, 0\] has begin > end/,
    "a",
  );
  expectError(
    () => parse(mutated((h) => (h.a.data_offsets = [-24, 0]))),
    /data_offsets\[0\] must be a non-negative integer, got -24/,
    "a",
  );
});

test("rejects a byte length that does not match shape and dtype", () => {
  expectError(
    () => parse(mutated((h) => (h.a.shape = [2, 2]))),
    /data_offsets \[0, 24\] span 24 bytes but shape \[2,2\] of F32 needs 16/,
    "a",
  );
  expectError(
    () => parse(mutated((h) => (h.b.dtype = "I32"))),
    /span 16 bytes but shape \[2\] of I32 needs 8/,
    "b",
  );
});

// --- layout ----------------------------------------------------------------------

test("rejects data that does not start at offset 0", () => {
  const bytes = mutated((h) => {
    h.a.data_offsets = [8, 32];
    h.b.data_offsets = [32, 48];
  }, 48);
  expectError(() => parse(bytes), /data starts at offset 8, not 0/, "a");
});

test("rejects a gap between tensors", () => {
  const bytes = mutated((h) => (h.b.data_offsets = [32, 48]), 48);
  expectError(
    () => parse(bytes),
    /gap of 8 bytes: tensor "a" ends at 24 but this one starts at 32/,
    "b",
  );
});

test("rejects overlapping tensors", () => {
  const bytes = mutated((h) => (h.b.data_offsets = [16, 32]), 32);
  expectError(
    () => parse(bytes),
    /data_offsets \[16, 32\] overlap tensor "a", which ends at 24/,
    "b",
  );
  // Same range twice.
  const twice = mutated((h) => {
    h.b = { dtype: "F32", shape: [6], data_offsets: [0, 24] };
  }, 24);
  expectError(() => parse(twice), /overlap tensor "(a|b)", which ends at 24/);
});

// --- duplicates and metadata ---------------------------------------------------------

test("rejects duplicate tensor names (JSON.parse would keep the last)", () => {
  const a = '"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}';
  const a2 = '"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}';
  expectError(
    () => parse(rawFile(`{${a},${a2}}`, 2)),
    /header lists "a" more than once/,
    "a",
  );
  // The same name spelled with an escape is the same key.
  const escaped = a2.replace('"a"', '"\\u0061"');
  expectError(
    () => parse(rawFile(`{${a},${escaped}}`, 2)),
    /header lists "a" more than once/,
    "a",
  );
  // Names that differ only after an escaped quote are distinct.
  const q1 = '"x\\"y":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}';
  const q2 = '"x\\"z":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}';
  assert.deepEqual(parse(rawFile(`{${q1},${q2}}`, 2)).names(), ['x"y', 'x"z']);
});

test("rejects duplicate fields inside an entry and duplicate metadata keys", () => {
  const dupField = '{"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}}';
  expectError(
    () => parse(rawFile(dupField, 1)),
    /key "dtype" appears more than once/,
    "a",
  );
  const dupMeta = '{"__metadata__":{"k":"1","k":"2"}}';
  expectError(
    () => parse(rawFile(dupMeta)),
    /key "k" appears more than once/,
    "__metadata__",
  );
  const dupMetaBlock = '{"__metadata__":{},"__metadata__":{}}';
  expectError(
    () => parse(rawFile(dupMetaBlock)),
    /header lists "__metadata__" more than once/,
  );
});

test("rejects a __metadata__ that is not a string-to-string object", () => {
  expectError(
    () => parse(mutated((h) => (h.__metadata__ = ["pt"] as never))),
    /must be an object of string to string, got \["pt"\]/,
    "__metadata__",
  );
  expectError(
    () => parse(mutated((h) => (h.__metadata__ = "pt" as never))),
    /got "pt"/,
    "__metadata__",
  );
  expectError(
    () => parse(mutated((h) => (h.__metadata__ = { format: 1 }))),
    /value of "format" must be a string, got 1/,
    "__metadata__",
  );
  expectError(
    () => parse(mutated((h) => (h.__metadata__ = { n: null }))),
    /value of "n" must be a string, got null/,
    "__metadata__",
  );
  expectError(
    () => parse(mutated((h) => (h.__metadata__ = { o: {} }))),
    /value of "o" must be a string, got \{\}/,
    "__metadata__",
  );
});

test("errors without a file name have no file prefix", () => {
  assert.throws(() => parseSafetensors(new Uint8Array(3)), (e: unknown) => {
    assert.ok(e instanceof SafetensorsError);
    assert.equal(e.file, undefined);
    assert.match(e.message, /^file is 3 bytes/);
    return true;
  });
});

// --- accessors -------------------------------------------------------------------------

test("unknown tensor name: error names the key and suggests close names", () => {
  const st = parse(rawFile(validHeader(), 40));
  expectError(
    () => st.get("c"),
    /^test.safetensors: c: no such tensor; the file has 2 tensors, e.g. "a", "b"$/,
    "c",
  );
  expectError(() => st.toFloat32("bb"), /e.g. "b", "a"/, "bb");
  expectError(
    () => parse(rawFile("{}")).toTypedArray("x"),
    /the file has no tensors/,
    "x",
  );
  assert.equal(st.has("a"), true);
  assert.equal(st.has("c"), false);
});

test("toFloat32 and toTypedArray on data that is not aligned in the buffer", () => {
  const h = {
    f: { dtype: "F32", shape: [3], data_offsets: [0, 12] },
    h: { dtype: "F16", shape: [2], data_offsets: [12, 16] },
    d: { dtype: "F64", shape: [1], data_offsets: [16, 24] },
    i: { dtype: "I64", shape: [1], data_offsets: [24, 32] },
  };
  const data = new Uint8Array(32);
  const dv = new DataView(data.buffer);
  [1.5, -2, 1e-3].forEach((x, k) => dv.setFloat32(4 * k, x, true));
  dv.setUint16(12, 0x3c00, true);
  dv.setUint16(14, 0xc100, true);
  dv.setFloat64(16, 1 / 3, true);
  dv.setBigInt64(24, -7n, true);
  const file = rawFile(h, data);
  // Node Buffers too: Buffer#slice() is a view (its .buffer the whole pool), not a copy as Uint8Array#slice() is.
  const views = [0, 1, 2, 3, 5].flatMap((shift) => {
    const backing = new Uint8Array(file.length + shift + 7).fill(0xee);
    backing.set(file, shift);
    return [backing.subarray(shift, shift + file.length), Buffer.from(backing.buffer, shift, file.length)];
  });
  for (const view of views) {
    const st = parse(view);
    assert.deepEqual([...st.toFloat32("f")], [1.5, -2, Math.fround(1e-3)]);
    assert.deepEqual([...st.toFloat32("h")], [1, -2.5]);
    assert.deepEqual([...st.toFloat32("d")], [Math.fround(1 / 3)]);
    assert.deepEqual([...st.toFloat32("i")], [-7]);
    const i64 = st.toTypedArray("i");
    assert.ok(i64 instanceof BigInt64Array);
    assert.equal(i64[0], -7n);
    const f64 = st.toTypedArray("d");
    assert.ok(f64 instanceof Float64Array);
    assert.equal(f64[0], 1 / 3);
    const f16 = st.toTypedArray("h");
    assert.ok(f16 instanceof Uint16Array);
    assert.deepEqual([...f16], [0x3c00, 0xc100]);
    // toFloat32 always returns a fresh array.
    const f = st.toFloat32("f");
    f[0] = 99;
    assert.equal(st.toFloat32("f")[0], 1.5);
  }
});

test("toTypedArray is a view (no copy) when the data is aligned", () => {
  // Pad the header with spaces so the data starts at a multiple of 8.
  let json = JSON.stringify(validHeader());
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const bytes = rawFile(json, 40);
  const st = parse(bytes);
  assert.equal(st.header.dataOffset % 8, 0);
  const a = st.toTypedArray("a");
  assert.ok(a instanceof Float32Array);
  assert.equal(a.buffer, bytes.buffer);
});

// --- header-only Blob reads ---------------------------------------------------------------

test("readSafetensorsHeader reads only the header of a lazily backed blob", async () => {
  // 16 GiB of declared data that does not exist: any read past the header fails.
  const header = rawFile({
    __metadata__: { format: "pt" },
    big: {
      dtype: "F32",
      shape: [1024, 1024, 1024, 4],
      data_offsets: [0, 2 ** 34],
    },
  });
  const headerEnd = header.length;
  const slices: [number, number][] = [];
  const size = headerEnd + 2 ** 34;
  const lazy = {
    size,
    slice(start = 0, end = size): Blob {
      slices.push([start, end]);
      if (end > headerEnd) throw new Error(`data read: bytes ${start}..${end}`);
      return new Blob([header.slice(start, end)]);
    },
  };
  const parsed = await readSafetensorsHeader(lazy, "big.safetensors");
  assert.deepEqual(parsed.tensors.get("big")?.dataOffsets, [0, 2 ** 34]);
  assert.deepEqual(parsed.metadata, { format: "pt" });
  assert.equal(parsed.dataOffset, headerEnd);
  assert.deepEqual(slices, [[0, 8], [8, headerEnd]]);
});

test("readSafetensorsHeader on a Blob subclass never reads the whole blob", async () => {
  const bytes = await fixture("llama-tiny-lora-qv/adapter_model.safetensors");
  const reads: string[] = [];
  class CountingBlob extends Blob {
    override slice(start?: number, end?: number, type?: string): Blob {
      reads.push(`slice ${start}..${end}`);
      return super.slice(start, end, type);
    }
    override arrayBuffer(): Promise<ArrayBuffer> {
      reads.push("arrayBuffer");
      return super.arrayBuffer();
    }
    override stream(): ReadableStream<Uint8Array<ArrayBuffer>> {
      reads.push("stream");
      return super.stream();
    }
    override text(): Promise<string> {
      reads.push("text");
      return super.text();
    }
  }
  const blob = new CountingBlob([bytes]);
  const header = await readSafetensorsHeader(blob, "x");
  assert.deepEqual(header, parseSafetensors(bytes).header);
  const n = header.headerLength;
  assert.deepEqual(reads, ["slice 0..8", `slice 8..${8 + n}`]);
});

test("readSafetensorsHeader validates like parseSafetensorsHeader and names the File", async () => {
  const bytes = await fixture("llama-tiny-lora-qv/adapter_model.safetensors");
  await assert.rejects(
    readSafetensorsHeader(
      new File([bytes.subarray(0, bytes.length - 4)], "cut.safetensors"),
    ),
    /^SafetensorsError: cut.safetensors: .*truncated by 4 bytes/,
  );
  await assert.rejects(
    readSafetensorsHeader(new Blob([new Uint8Array(7)]), FILE),
    /7 bytes, shorter than/,
  );
  const tooBig = rawFile("{}");
  new DataView(tooBig.buffer).setUint32(0, 200_000_000, true);
  await assert.rejects(
    readSafetensorsHeader(new Blob([tooBig]), FILE),
    /exceeds the 100000000-byte limit/,
  );
});

// --- real fixtures --------------------------------------------------------------------------------

test("fixtures: every adapter parses, with the manifest's keys and F32/F16 data", async () => {
  const manifest = JSON.parse(
    new TextDecoder().decode(await fixture("manifest.json")),
  ) as Record<string, string[]>;
  for (const name of ADAPTERS) {
    const st = parse(await fixture(`${name}/adapter_model.safetensors`));
    assert.deepEqual(st.metadata, { format: "pt" }, name);
    assert.deepEqual([...st.names()].sort(), [...manifest[name]].sort(), name);
    const dtypes = new Set(st.names().map((k) => st.get(k).dtype));
    assert.deepEqual([...dtypes], [name.endsWith("f16") ? "F16" : "F32"], name);
    for (const key of st.names()) {
      const { shape } = st.get(key);
      const values = st.toFloat32(key);
      assert.equal(values.length, shape.reduce((a, b) => a * b, 1));
      assert.ok(values.every(Number.isFinite), `${name} ${key}`);
    }
  }
});

test("fixtures: the F16 adapter converts to float32 consistently across the file", async () => {
  const st = parse(
    await fixture("llama-tiny-lora-all-rslora-f16/adapter_model.safetensors"),
  );
  let nonZero = 0;
  for (const key of st.names()) {
    const bits = st.toTypedArray(key) as Uint16Array;
    const values = st.toFloat32(key);
    for (let i = 0; i < bits.length; i++) {
      assert.equal(values[i], f16BitsToF32(bits[i]));
      if (values[i] !== 0) nonZero++;
    }
    // Rounding back gives the stored bits: the values are exactly F16 values.
    assert.deepEqual(f32ToF16(values), bits);
  }
  assert.ok(nonZero > 1000);
  const lora = st.get(
    "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
  );
  assert.deepEqual(lora.shape, [4, 64]);
});

test("fixtures: expected.safetensors holds I64 input ids and F32 logits", async () => {
  for (const name of [...ADAPTERS, "llama-tiny", "gpt2-tiny"]) {
    const st = parse(await fixture(`${name}/expected.safetensors`));
    assert.deepEqual(st.names(), [
      "input_ids",
      "logits",
      "next_input_ids",
      "next_logits",
    ]);
    const ids = st.toTypedArray("input_ids");
    assert.ok(ids instanceof BigInt64Array);
    assert.equal(
      new TextDecoder().decode(Uint8Array.from(ids, Number)),
      "Hello, edge",
    );
    assert.deepEqual(
      [...st.toFloat32("input_ids")],
      [...new TextEncoder().encode("Hello, edge")],
    );
    assert.deepEqual(st.get("logits").shape, [1, 11, 256]);
    assert.equal(st.get("logits").dtype, "F32");
    assert.ok(st.toFloat32("logits").every(Number.isFinite));
    assert.deepEqual(st.get("next_logits").shape, [1, 1, 256]);
  }
});

test("fixtures: corrupting any header length byte or dropping the last byte is caught", async () => {
  const bytes = await fixture(
    "llama-tiny-lora-embed/adapter_model.safetensors",
  );
  for (let i = 0; i < 8; i++) {
    const copy = bytes.slice();
    copy[i] ^= 0x01;
    assert.throws(() => parse(copy), SafetensorsError);
  }
  assert.throws(
    () => parse(bytes.subarray(0, bytes.length - 1)),
    SafetensorsError,
  );
});
