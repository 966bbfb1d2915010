/**
 * Weight quantization arithmetic, as ONNX Runtime's operators read it and as
 * its quantization tools write it (so a merged weight re-quantized here gets
 * the bytes the tool would have written for it):
 *
 * - N-bit blocks, for `com.microsoft.MatMulNBits` (the `model_q4` files of
 *   `MatMulNBitsQuantizer`, whose arithmetic is MLAS' `BlockwiseQuantizer`):
 *   the `[K, N]` weight is cut into blocks of `blockSize` consecutive K values
 *   per output column, each with a float scale and, when asymmetric, a zero
 *   point (symmetric files have none: it is `2^(bits-1)`). Codes are stored as
 *   `B[N, nBlocks, blockSize * bits / 8]`, the first K index in the low bits;
 *   zero points as `[N, ceil(nBlocks * bits / 8)]`, packed the same way.
 *   Dequantized: `(q - zp) * scale`.
 * - 8-bit, for `MatMulInteger` and the embedding `Gather` + `DequantizeLinear`
 *   of `quantize_dynamic` (arithmetic of `quant_utils.quantize_data`): int8
 *   or uint8 codes `[K, N]`, one scale and zero point per tensor or per output
 *   column. Dequantized: `(q - zp) * scale`.
 *
 * Dequantization computes exactly what the operators compute (an integer
 * times a float scale, rounded once to float32). Quantization repeats the
 * tools' float32 steps one by one (`Math.fround` after each), with their
 * rounding: C's `roundf` (halves away from zero) in MLAS, numpy's `round`
 * (halves to even) in `quant_utils`.
 * @module
 */
import type { WeightLayout } from "../kernels/types.ts";
import { f16BitsToF32, f32ToF16Bits } from "../numeric/mod.ts";

/**
 * A block-quantized `[K, N]` weight in `MatMulNBits` layout.
 *
 * @example
 * ```ts
 * import type { NBitsWeight } from "./quant_math.ts";
 * const w: NBitsWeight = { k: 16, n: 1, bits: 4, blockSize: 16, packed: new Uint8Array(8), scales: new Float32Array(1) };
 * ```
 */
export interface NBitsWeight {
  k: number;
  n: number;
  /** Bits per code, 2 to 8. */
  bits: number;
  blockSize: number;
  /** `[N, nBlocks, blockSize * bits / 8]` packed codes. */
  packed: Uint8Array;
  /** `[N, nBlocks]` scales. */
  scales: Float32Array;
  /** `[N, ceil(nBlocks * bits / 8)]` packed zero points; absent means `2^(bits-1)`. */
  zeroPoints?: Uint8Array;
}

/**
 * An 8-bit `[K, N]` weight for `MatMulInteger`, per tensor or per output column.
 *
 * @example
 * ```ts
 * import type { Q8Weight } from "./quant_math.ts";
 * const w: Q8Weight = { k: 1, n: 2, values: new Int8Array([127, -127]), scales: new Float32Array([0.5]), zeroPoints: new Int8Array(1) };
 * ```
 */
export interface Q8Weight {
  k: number;
  n: number;
  /** `[K, N]` codes (int8, or uint8 in some exports). */
  values: Int8Array | Uint8Array;
  /** `[N]` (per column) or `[1]` (per tensor) scales. */
  scales: Float32Array;
  /** Same length as `scales`; the same element type as `values`. */
  zeroPoints: Int8Array | Uint8Array;
}

/**
 * Number of K blocks of a block-quantized weight.
 *
 * @example
 * ```ts
 * import { blockCount } from "./quant_math.ts";
 * console.log(blockCount(80, 32)); // 3
 * ```
 */
export function blockCount(k: number, blockSize: number): number {
  return Math.ceil(k / blockSize);
}

/** Element `(k, n)` of a weight stored in `layout` with K inputs and N outputs. */
function at(w: Float32Array, layout: WeightLayout, k: number, n: number, kDim: number, nDim: number): number {
  return layout === "in_out" ? w[k * nDim + n] : w[n * kDim + k];
}

function checkDims(w: Float32Array, k: number, n: number) {
  if (!Number.isSafeInteger(k) || !Number.isSafeInteger(n) || k <= 0 || n <= 0 || w.length !== k * n) {
    throw new RangeError(`weight of ${w.length} values does not match K=${k}, N=${n}`);
  }
}

/** The float type a scale is stored in (the tools round the scale to it before coding with it). */
export type ScaleType = "float32" | "float16";

/**
 * How a weight is block-quantized for `MatMulNBits`, as `MatMulNBitsQuantizer`
 * chooses it (`bits`, `block_size`, `is_symmetric`).
 *
 * @example
 * ```ts
 * import type { NBitsFormat } from "./quant_math.ts";
 * const q4: NBitsFormat = { bits: 4, blockSize: 32, symmetric: true };
 * ```
 */
export interface NBitsFormat {
  /** 2, 4 or 8. */
  bits: number;
  /** A power of two >= 16. */
  blockSize: number;
  /** Symmetric blocks have no zero points (the operator's default `2^(bits-1)`). */
  symmetric: boolean;
  /** Default float32; float16 for `q4f16` files. */
  scaleType?: ScaleType;
}

const FLT_MAX = 3.4028234663852886e38;
const f16 = (x: number) => f16BitsToF32(f32ToF16Bits(x));
const toScaleType = (type: ScaleType | undefined) => type === "float16" ? f16 : Math.fround;

/** C's `roundf`: halves away from zero. */
function roundHalfAway(x: number): number {
  return x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
}

/** numpy's `round`: halves to even. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function packInto(bytes: Uint8Array, offset: number, index: number, bits: number, value: number) {
  const bit = index * bits;
  const byte = offset + (bit >> 3);
  const shift = bit & 7;
  const mask = ((1 << bits) - 1) << shift;
  bytes[byte] = (bytes[byte] & ~mask) | (value << shift);
}

/**
 * Quantizes a float weight (K inputs, N outputs, stored in `layout`) to
 * `MatMulNBits` blocks the way `MatMulNBitsQuantizer` does (MLAS'
 * `BlockwiseQuantizer`), byte for byte: symmetric blocks take
 * `scale = -m / 2^(bits-1)` where `m` is the value of largest magnitude;
 * asymmetric ones `scale = (max(hi, 0) - min(lo, 0)) / (2^bits - 1)` and
 * `zp = roundf(-min / scale)`; each code is `roundf(v * (1 / scale) + zp)`,
 * clamped. Codes past K in the last block are 0 and unused zero-point slots
 * `2^(bits-1)`, as MLAS leaves them.
 *
 * @example
 * ```ts
 * import { dequantizeNBits, quantizeNBits } from "./quant_math.ts";
 * const w = Float32Array.from({ length: 64 * 8 }, (_, i) => Math.sin(i));
 * const q = quantizeNBits(w, 64, 8, { bits: 4, blockSize: 32, symmetric: false }, "in_out");
 * console.log(q.packed.length, dequantizeNBits(q, "in_out").length); // 256 512
 * ```
 */
export function quantizeNBits(
  w: Float32Array,
  k: number,
  n: number,
  format: NBitsFormat,
  layout: WeightLayout,
): NBitsWeight {
  checkDims(w, k, n);
  const { bits, blockSize, symmetric } = format;
  if (bits !== 2 && bits !== 4 && bits !== 8) throw new RangeError(`bits must be 2, 4 or 8, got ${bits}`);
  if (!Number.isSafeInteger(blockSize) || blockSize < 16 || (blockSize & (blockSize - 1)) !== 0) {
    throw new RangeError(`blockSize must be a power of two >= 16, got ${blockSize}`);
  }
  const toScale = toScaleType(format.scaleType);
  const maxCode = (1 << bits) - 1;
  const mid = 1 << (bits - 1);
  const blocks = blockCount(k, blockSize);
  const blob = (blockSize * bits) / 8;
  const zpRow = Math.ceil((blocks * bits) / 8);
  const packed = new Uint8Array(n * blocks * blob);
  const scales = new Float32Array(n * blocks);
  let zeroPoints: Uint8Array | undefined;
  if (!symmetric) {
    zeroPoints = new Uint8Array(n * zpRow);
    for (let i = 0; i < zeroPoints.length * (8 / bits); i++) packInto(zeroPoints, 0, i, bits, mid);
  }
  for (let col = 0; col < n; col++) {
    for (let b = 0; b < blocks; b++) {
      const start = b * blockSize;
      const end = Math.min(k, start + blockSize);
      let lo = FLT_MAX;
      let hi = -FLT_MAX;
      for (let i = start; i < end; i++) {
        const v = at(w, layout, i, col, k, n);
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      let scale: number;
      let zp = mid;
      if (symmetric) {
        const m = Math.abs(hi) > Math.abs(lo) ? hi : lo;
        scale = toScale(Math.fround(-m / mid));
      } else {
        lo = Math.min(lo, 0);
        hi = Math.max(hi, 0);
        const s = Math.fround(Math.fround(hi - lo) / maxCode);
        const z = s !== 0 ? Math.fround(0 - Math.fround(lo / s)) : lo;
        zp = z < 0 ? 0 : z > maxCode ? maxCode : roundHalfAway(z);
        packInto(zeroPoints!, col * zpRow, b, bits, zp);
        scale = toScale(s);
      }
      scales[col * blocks + b] = scale;
      const reciprocal = scale !== 0 ? Math.fround(1 / scale) : 0;
      for (let i = start; i < end; i++) {
        const v = Math.fround(Math.fround(at(w, layout, i, col, k, n) * reciprocal) + zp);
        const q = Math.min(maxCode, Math.max(0, roundHalfAway(v)));
        packInto(packed, (col * blocks + b) * blob, i - start, bits, q);
      }
    }
  }
  return { k, n, bits, blockSize, packed, scales, zeroPoints };
}

/** Reads `bits` bits at bit offset `bit` of a little-endian bit stream (low bits first). */
function readBits(bytes: Uint8Array, offset: number, bit: number, bits: number): number {
  let value = 0;
  for (let got = 0; got < bits;) {
    const byte = offset + ((bit + got) >> 3);
    const shift = (bit + got) & 7;
    const take = Math.min(bits - got, 8 - shift);
    value |= ((bytes[byte] >> shift) & ((1 << take) - 1)) << got;
    got += take;
  }
  return value;
}

/**
 * The float weight an N-bit `MatMulNBits` weight stands for, in `layout`.
 * Handles every `bits` from 2 to 8 and absent zero points (default
 * `2^(bits-1)`), as the operator spec allows.
 *
 * @example
 * ```ts
 * import { dequantizeNBits, quantizeNBits } from "./quant_math.ts";
 * const q = quantizeNBits(new Float32Array(32).fill(0.5), 16, 2, { bits: 4, blockSize: 16, symmetric: true }, "out_in");
 * console.log(dequantizeNBits(q, "out_in")[0]); // 0.5
 * ```
 */
export function dequantizeNBits(q: NBitsWeight, layout: WeightLayout): Float32Array {
  const { k, n, bits, blockSize } = q;
  const blocks = blockCount(k, blockSize);
  const blob = (blockSize * bits) / 8;
  const zpRow = Math.ceil((blocks * bits) / 8);
  const out = new Float32Array(k * n);
  for (let col = 0; col < n; col++) {
    for (let b = 0; b < blocks; b++) {
      const scale = q.scales[col * blocks + b];
      const zp = q.zeroPoints ? readBits(q.zeroPoints, col * zpRow, b * bits, bits) : 1 << (bits - 1);
      for (let j = 0; j < blockSize && b * blockSize + j < k; j++) {
        const code = readBits(q.packed, (col * blocks + b) * blob, j * bits, bits);
        const i = b * blockSize + j;
        out[layout === "in_out" ? i * n + col : col * k + i] = Math.fround((code - zp) * scale);
      }
    }
  }
  return out;
}

/**
 * How an 8-bit weight is quantized by `quantize_dynamic`: int8 weights are
 * symmetric (zero point 0), uint8 ones asymmetric, and the embedding table
 * (quantized as an activation) uint8 asymmetric; per tensor, or per output
 * column with `per_channel=True`.
 *
 * @example
 * ```ts
 * import type { Q8Format } from "./quant_math.ts";
 * const weights: Q8Format = { signed: true, symmetric: true, perColumn: false };
 * ```
 */
export interface Q8Format {
  /** int8 codes (else uint8). */
  signed: boolean;
  symmetric: boolean;
  /** One scale and zero point per output column (else one for the tensor). */
  perColumn: boolean;
  /** Default float32. */
  scaleType?: ScaleType;
}

/** `quant_utils.compute_scale_zp` for one group of values: [scale, zero point]. */
function scaleZeroPoint(lo: number, hi: number, format: Q8Format): [number, number] {
  const [qmin, qmax] = format.signed ? (format.symmetric ? [-127, 127] : [-128, 127]) : [0, 255];
  lo = Math.min(lo, 0);
  hi = Math.max(hi, 0);
  if (format.symmetric) {
    const absmax = Math.max(Math.abs(lo), Math.abs(hi));
    [lo, hi] = [-absmax, absmax];
  }
  // The range is a float32 difference; the scale is computed in float64, then stored in the scale type.
  const scale = Math.fround(hi - lo) / (qmax - qmin);
  if (scale < 1.1754943508222875e-38) return [1, 0];
  const zp = format.symmetric ? roundHalfEven((qmin + qmax) / 2) : roundHalfEven(qmin - lo / scale);
  return [toScaleType(format.scaleType)(scale), zp];
}

/**
 * Quantizes a float weight (K inputs, N outputs, stored in `layout`) to 8
 * bits the way `quantize_dynamic` does (`quant_utils.quantize_data`), code for
 * code: `q = round(v / scale) + zp` (halves to even), clipped to the type.
 *
 * @example
 * ```ts
 * import { dequantizeQ8, quantizeQ8 } from "./quant_math.ts";
 * const q = quantizeQ8(new Float32Array([1, -2, 0.5, 4]), 2, 2, { signed: true, symmetric: true, perColumn: true }, "in_out");
 * console.log(q.values, dequantizeQ8(q, "in_out")); // Int8Array [127, -64, 64, 127] ...
 * ```
 */
export function quantizeQ8(w: Float32Array, k: number, n: number, format: Q8Format, layout: WeightLayout): Q8Weight {
  checkDims(w, k, n);
  const groups = format.perColumn ? n : 1;
  const [qmin, qmax] = format.signed ? [-128, 127] : [0, 255];
  const values = format.signed ? new Int8Array(k * n) : new Uint8Array(k * n);
  const scales = new Float32Array(groups);
  const zeroPoints = format.signed ? new Int8Array(groups) : new Uint8Array(groups);
  const lo = new Float64Array(groups).fill(FLT_MAX);
  const hi = new Float64Array(groups).fill(-FLT_MAX);
  for (let i = 0; i < k; i++) {
    for (let col = 0; col < n; col++) {
      const g = format.perColumn ? col : 0;
      const v = at(w, layout, i, col, k, n);
      if (v < lo[g]) lo[g] = v;
      if (v > hi[g]) hi[g] = v;
    }
  }
  for (let g = 0; g < groups; g++) [scales[g], zeroPoints[g]] = scaleZeroPoint(lo[g], hi[g], format);
  for (let i = 0; i < k; i++) {
    for (let col = 0; col < n; col++) {
      const g = format.perColumn ? col : 0;
      const q = roundHalfEven(Math.fround(at(w, layout, i, col, k, n) / scales[g])) + zeroPoints[g];
      values[i * n + col] = Math.min(qmax, Math.max(qmin, q));
    }
  }
  return { k, n, values, scales, zeroPoints };
}

/**
 * The float weight a q8 weight stands for, in `layout`.
 *
 * @example
 * ```ts
 * import { dequantizeQ8, quantizeQ8 } from "./quant_math.ts";
 * const format = { signed: true, symmetric: true, perColumn: false };
 * console.log(dequantizeQ8(quantizeQ8(new Float32Array([2, 0]), 1, 2, format, "in_out"), "in_out")); // [2, 0]
 * ```
 */
export function dequantizeQ8(q: Q8Weight, layout: WeightLayout): Float32Array {
  const { k, n } = q;
  const out = new Float32Array(k * n);
  const perColumn = q.scales.length !== 1;
  for (let i = 0; i < k; i++) {
    for (let col = 0; col < n; col++) {
      const c = perColumn ? col : 0;
      const v = Math.fround((q.values[i * n + col] - q.zeroPoints[c]) * q.scales[c]);
      out[layout === "in_out" ? i * n + col : col * k + i] = v;
    }
  }
  return out;
}
