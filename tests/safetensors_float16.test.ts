// F16 / BF16 / F8 conversions (src/numeric), checked exhaustively against
// simple arithmetic reference formulas and, where the runtime has
// Float16Array, the portable bit-level code against the runtime's own
// conversion on every pattern.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SafetensorsError } from "../src/errors.ts";
import {
  bf16ToF32,
  f16BitsToF32,
  f16ToF32,
  f32ToF16,
  f32ToF16Bits,
  f8E4M3ToF32,
  f8E5M2ToF32,
  hasNativeFloat16,
} from "../src/numeric/mod.ts";
import { f16ToF32Portable, f32ToF16Portable } from "../src/numeric/float16_portable.ts";

/** F16 value by the textbook formula. */
function refF16(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * Math.pow(2, -14) * (m / 1024);
  if (e === 31) return m === 0 ? sign * Infinity : NaN;
  return sign * Math.pow(2, e - 15) * (1 + m / 1024);
}

/** BF16 value by the textbook formula. */
function refBF16(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 7) & 0xff;
  const m = h & 0x7f;
  if (e === 0) return sign * Math.pow(2, -126) * (m / 128);
  if (e === 255) return m === 0 ? sign * Infinity : NaN;
  return sign * Math.pow(2, e - 127) * (1 + m / 128);
}

const ALL16 = Uint16Array.from({ length: 65536 }, (_, i) => i);

function isF16NaN(h: number): boolean {
  return (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
}

/**
 * Reference float32 -> F16 rounding: find the neighbouring F16 values by
 * binary search over the (monotonic) positive bit patterns and compare with
 * their exact midpoint; ties go to the even pattern.
 */
function refF32ToF16(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65520) return sign | 0x7c00;
  let lo = 0;
  let hi = 0x7bff;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (refF16(mid) <= a) lo = mid;
    else hi = mid - 1;
  }
  if (refF16(lo) === a) return sign | lo;
  const midpoint = (refF16(lo) + refF16(lo + 1)) / 2;
  if (a < midpoint) return sign | lo;
  if (a > midpoint) return sign | (lo + 1);
  return sign | (lo % 2 === 0 ? lo : lo + 1);
}

test("f16ToF32 matches the reference formula on all 65536 bit patterns", () => {
  const out = f16ToF32(ALL16);
  for (let h = 0; h < 65536; h++) {
    const want = refF16(h);
    assert.ok(
      Object.is(out[h], Math.fround(want)),
      `0x${h.toString(16)}: ${out[h]} != ${want}`,
    );
    // Every F16 value is exact in float32.
    if (Number.isFinite(want)) assert.equal(out[h], want);
    assert.ok(Object.is(f16BitsToF32(h), want), `scalar 0x${h.toString(16)}`);
  }
});

test("f16ToF32 keeps NaN signs (the portable code also payloads) and signs of zero and infinity", () => {
  const src = new Uint16Array([0x7c01, 0xfe00, 0x7c00, 0xfc00, 0x0000, 0x8000]);
  for (const out of [f16ToF32(src), f16ToF32Portable(src)]) {
    const bits = new Uint32Array(out.buffer);
    assert.ok(Number.isNaN(out[0]) && bits[0] >>> 31 === 0);
    assert.ok(Number.isNaN(out[1]) && bits[1] >>> 31 === 1);
    assert.deepEqual([...out.subarray(2)], [Infinity, -Infinity, 0, -0]);
    assert.ok(Object.is(out[5], -0));
  }
  const bits = new Uint32Array(f16ToF32Portable(src).buffer);
  assert.equal(bits[0], 0x7f802000);
  assert.equal(bits[1], 0xffc00000);
});

/** float32 bits of `x` (one element). */
const f32Bits = (f: Float32Array) => new Uint32Array(f.buffer, f.byteOffset, f.length);

/** Equal bits, or both NaN of the same sign (the runtime quiets NaN payloads). */
function sameOrNaN(a: number, b: number, nanMask: number, nanTest: (x: number) => boolean): boolean {
  return a === b || (nanTest(a) && nanTest(b) && (a & nanMask) === (b & nanMask));
}

test("portable F16 conversions equal the runtime's Float16Array on every pattern", {
  skip: !hasNativeFloat16(),
}, () => {
  // The expected values come from the runtime (V8 / JavaScriptCore), not from our math.
  type F16Ctor = new (buffer: ArrayBufferLike) => ArrayLike<number>;
  const Native = (globalThis as unknown as { Float16Array: F16Ctor }).Float16Array;
  const fromRuntime = Float32Array.from(new Native(ALL16.slice().buffer));
  const portable = f32Bits(f16ToF32Portable(ALL16));
  const runtime = f32Bits(fromRuntime);
  const isNaN32 = (x: number) => (x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0;
  for (let h = 0; h < 65536; h++) {
    assert.ok(
      sameOrNaN(portable[h], runtime[h], 0x80000000, isNaN32),
      `0x${h.toString(16)}: 0x${portable[h].toString(16)} != 0x${runtime[h].toString(16)}`,
    );
    if (!isF16NaN(h)) assert.equal(portable[h], runtime[h]);
  }
  // float32 -> F16: every tie point, its neighbours and 200003 random float32 patterns.
  const f = f16ToF32Portable(ALL16);
  const probe: number[] = [];
  const one = new Float32Array(1);
  for (let h = 0; h < 0x7c00; h++) {
    for (const sign of [1, -1]) {
      one[0] = sign * (f[h] + (f[h + 1] - f[h]) / 2);
      const mid = f32Bits(one)[0];
      probe.push(mid, mid + 1, mid - 1, f32Bits(new Float32Array([sign * f[h]]))[0]);
    }
  }
  let seed = 77;
  for (let i = 0; i < 200_003; i++) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    probe.push(seed);
  }
  probe.push(0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0x477ff000, 0x477fefff, 0x33000000, 0x33000001);
  const values = new Float32Array(Uint32Array.from(probe).buffer);
  const halves = new Uint16Array(values.length);
  new (Native as unknown as new (b: ArrayBufferLike) => { set(v: ArrayLike<number>): void })(halves.buffer).set(values);
  const mine = f32ToF16Portable(values);
  for (let i = 0; i < values.length; i++) {
    assert.ok(
      sameOrNaN(mine[i], halves[i], 0x8000, isF16NaN),
      `0x${probe[i].toString(16)}: 0x${mine[i].toString(16)} != 0x${halves[i].toString(16)}`,
    );
  }
  // The public functions take the native path here and agree too.
  assert.deepEqual(f32Bits(f16ToF32(ALL16)), runtime);
  assert.deepEqual(f32ToF16(values), halves);
});

test("bf16ToF32 matches the reference formula on all 65536 bit patterns", () => {
  const out = bf16ToF32(ALL16);
  for (let h = 0; h < 65536; h++) {
    const want = refBF16(h);
    assert.ok(
      Object.is(out[h], want),
      `0x${h.toString(16)}: ${out[h]} != ${want}`,
    );
  }
});

test("f32ToF16 inverts f16ToF32 on every F16 value; NaN stays NaN", () => {
  const back = f32ToF16(f16ToF32(ALL16));
  for (let h = 0; h < 65536; h++) {
    if (isF16NaN(h)) {
      assert.ok(
        isF16NaN(back[h]),
        `NaN 0x${h.toString(16)} -> 0x${back[h].toString(16)}`,
      );
      assert.equal(back[h] & 0x8000, h & 0x8000);
    } else {
      assert.equal(back[h], h, `0x${h.toString(16)}`);
    }
  }
  assert.ok(isF16NaN(f32ToF16Bits(NaN)));
  // A float32 NaN whose payload lies only in the dropped low bits stays NaN.
  const sneaky = new Float32Array(new Uint32Array([0x7f800001]).buffer);
  assert.ok(isF16NaN(f32ToF16(sneaky)[0]));
});

test("f32ToF16 rounds every exact tie between neighbouring F16 values to even", () => {
  const f16 = f16ToF32(ALL16);
  const ties: number[] = [];
  const want: number[] = [];
  for (let h = 0; h < 0x7bff; h++) {
    for (const s of [0, 0x8000]) {
      const a = f16[h | s];
      const b = f16[(h + 1) | s];
      const mid = (a + b) / 2;
      assert.equal(Math.fround(mid), mid); // midpoints are exact in float32
      ties.push(mid);
      want.push((h % 2 === 0 ? h : h + 1) | s);
    }
  }
  const got = f32ToF16(new Float32Array(ties));
  for (let i = 0; i < ties.length; i++) {
    assert.equal(got[i], want[i], `tie ${ties[i]}`);
  }
});

test("f32ToF16 rounds just above and below every tie to the nearer value", () => {
  const f16 = f16ToF32(ALL16);
  const mids = new Float32Array(0x7bff);
  for (let h = 0; h < 0x7bff; h++) mids[h] = (f16[h] + f16[h + 1]) / 2;
  const bits = new Uint32Array(mids.buffer);
  const below = new Float32Array(
    new Uint32Array(bits.map((b) => b - 1)).buffer,
  );
  const above = new Float32Array(
    new Uint32Array(bits.map((b) => b + 1)).buffer,
  );
  const lo = f32ToF16(below);
  const hi = f32ToF16(above);
  for (let h = 0; h < 0x7bff; h++) {
    // mids[0] is 2^-25, whose predecessor is a positive float32 just below it.
    assert.equal(lo[h], h, `below tie ${h}`);
    assert.equal(hi[h], h + 1, `above tie ${h}`);
  }
});

test("f32ToF16 agrees with the reference on 200000 random float32 bit patterns", () => {
  let seed = 12345;
  const next = () => {
    // xorshift32: deterministic, no dependency.
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return seed >>> 0;
  };
  const bits = Uint32Array.from({ length: 200000 }, next);
  // Bias half the samples towards the F16 range, where rounding matters.
  for (let i = 0; i < bits.length; i += 2) {
    bits[i] = (bits[i] & 0x807fffff) | ((100 + (bits[i] >>> 23) % 45) << 23);
  }
  const values = new Float32Array(bits.buffer);
  const got = f32ToF16(values);
  for (let i = 0; i < values.length; i++) {
    const want = refF32ToF16(values[i]);
    if (Number.isNaN(values[i])) assert.ok(isF16NaN(got[i]));
    else assert.equal(got[i], want, `${values[i]} (0x${bits[i].toString(16)})`);
  }
});

test("f32ToF16 specific cases: ties to even, subnormals, overflow", () => {
  const cases: [number, number][] = [
    [1, 0x3c00],
    [1 + 2 ** -11, 0x3c00], // tie between 1 and 1+2^-10: even is 1
    [1 + 3 * 2 ** -11, 0x3c02], // tie between odd 0x3c01 and even 0x3c02
    [2049, 0x6800], // tie between 2048 and 2050
    [2051, 0x6802], // tie between 2050 and 2052
    [65504, 0x7bff], // largest finite
    [65519.99609375, 0x7bff], // just below the overflow tie
    [65520, 0x7c00], // tie with 65536: rounds to even = infinity
    [1e10, 0x7c00],
    [-1e10, 0xfc00],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -14 - 2 ** -25, 0x0400], // tie between 0x3ff and 0x400: even
    [2 ** -24, 0x0001], // smallest subnormal
    [-(2 ** -24), 0x8001],
    [2 ** -25, 0x0000], // tie between 0 and 2^-24: even is 0
    [3 * 2 ** -25, 0x0002], // 1.5 units: tie, even is 2
    [5 * 2 ** -25, 0x0002], // 2.5 units: tie, even is 2
    [2 ** -25 * (1 + 2 ** -23), 0x0001], // just above the tie
    [2 ** -30, 0x0000],
    [-(2 ** -30), 0x8000], // negative zero
    [0, 0x0000],
    [-0, 0x8000],
    [1e-45, 0x0000], // float32 subnormal
  ];
  for (const [x, want] of cases) {
    assert.equal(f32ToF16Bits(x), want, `scalar ${x}`);
    assert.equal(f32ToF16(new Float32Array([x]))[0], want, `array ${x}`);
  }
});

test("conversions write into a given dst, including subarrays, and check lengths", () => {
  const dst = new Float32Array(6);
  const view = dst.subarray(2, 4);
  assert.equal(f16ToF32(new Uint16Array([0x3c00, 0x4000]), view), view);
  assert.deepEqual([...dst], [0, 0, 1, 2, 0, 0]);
  assert.equal(bf16ToF32(new Uint16Array([0x3f80, 0x4000]), view), view);
  assert.deepEqual([...dst], [0, 0, 1, 2, 0, 0]);
  const h = new Uint16Array(4);
  assert.equal(f32ToF16(new Float32Array([1, -2]), h.subarray(1, 3)).length, 2);
  assert.deepEqual([...h], [0, 0x3c00, 0xc000, 0]);
  // A float32 source that is itself a subarray.
  assert.deepEqual([...f32ToF16(new Float32Array([0, 1, 2]).subarray(1))], [
    0x3c00,
    0x4000,
  ]);

  for (
    const fn of [
      () => f16ToF32(new Uint16Array(3), new Float32Array(2)),
      () => bf16ToF32(new Uint16Array(3), new Float32Array(4)),
      () => f32ToF16(new Float32Array(3), new Uint16Array(2)),
    ]
  ) {
    assert.throws(fn, (e: unknown) => {
      assert.ok(e instanceof SafetensorsError);
      assert.match(e.message, /: dst has \d elements but src has 3/);
      return true;
    });
  }
});

test("F8: E5M2 is the top byte of F16; E4M3 (FN) by formula, 0x7f/0xff NaN", () => {
  for (let b = 0; b < 256; b++) {
    assert.ok(
      Object.is(f8E5M2ToF32(b), refF16(b << 8)),
      `E5M2 0x${b.toString(16)}`,
    );
    const sign = b & 0x80 ? -1 : 1;
    const e = (b >> 3) & 0xf;
    const m = b & 7;
    const want = (b & 0x7f) === 0x7f ? NaN : e === 0 ? sign * 2 ** -6 * (m / 8) : sign * 2 ** (e - 7) * (1 + m / 8);
    assert.ok(Object.is(f8E4M3ToF32(b), want), `E4M3 0x${b.toString(16)}`);
  }
  assert.equal(f8E4M3ToF32(0x7e), 448);
  assert.equal(f8E4M3ToF32(0x38), 1);
  assert.equal(f8E5M2ToF32(0x7b), 57344);
  assert.equal(f8E5M2ToF32(0x7c), Infinity);
});
