/**
 * Weight quantization arithmetic, following ONNX Runtime's operator specs:
 *
 * - q4, for `com.microsoft.MatMulNBits` (bits 4; any 2-8 bits are read back): the `[K, N]` weight is cut
 *   into blocks of `blockSize` consecutive K values per output column; each
 *   block has a float scale and a 4-bit zero point (asymmetric, the range
 *   always includes 0, as ONNX Runtime's default `is_symmetric=False`).
 *   Codes are stored as `B[N, nBlocks, blockSize / 2]`, two per byte, the
 *   first K index in the low nibble; zero points as `[N, ceil(nBlocks / 2)]`,
 *   packed the same way. Dequantized: `(q - zp) * scale`.
 * - q8, for `MatMulInteger` (dynamic quantization): int8 codes `[K, N]`,
 *   symmetric per output column (`scale = max|w| / 127`, zero point 0).
 *   Dequantized: `q * scale`.
 *
 * Dequantization here computes exactly what the operators compute (an
 * integer times a float32 scale, rounded once to float32).
 * @module
 */
import type { WeightLayout } from "../kernels/types.ts";

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

/**
 * Quantizes a float weight (K inputs, N outputs, stored in `layout`) to q4
 * blocks. `blockSize` must be a power of two >= 16 (MatMulNBits' rule).
 *
 * @example
 * ```ts
 * import { dequantizeNBits, quantizeQ4 } from "./quant_math.ts";
 * const w = Float32Array.from({ length: 64 * 8 }, (_, i) => Math.sin(i));
 * const q = quantizeQ4(w, 64, 8, 32, "in_out");
 * console.log(q.packed.length, dequantizeNBits(q, "in_out").length); // 256 512
 * ```
 */
export function quantizeQ4(
  w: Float32Array,
  k: number,
  n: number,
  blockSize: number,
  layout: WeightLayout,
): NBitsWeight {
  checkDims(w, k, n);
  if (!Number.isSafeInteger(blockSize) || blockSize < 16 || (blockSize & (blockSize - 1)) !== 0) {
    throw new RangeError(`blockSize must be a power of two >= 16, got ${blockSize}`);
  }
  const blocks = blockCount(k, blockSize);
  const blob = blockSize / 2;
  const zpRow = Math.ceil(blocks / 2);
  const packed = new Uint8Array(n * blocks * blob);
  const scales = new Float32Array(n * blocks);
  const zeroPoints = new Uint8Array(n * zpRow);
  for (let col = 0; col < n; col++) {
    for (let b = 0; b < blocks; b++) {
      const start = b * blockSize;
      const end = Math.min(k, start + blockSize);
      let lo = 0;
      let hi = 0;
      for (let i = start; i < end; i++) {
        const v = at(w, layout, i, col, k, n);
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      // An all-zero block keeps scale 1: every code equals the zero point.
      const scale = hi > lo ? Math.fround((hi - lo) / 15) : 1;
      const zp = Math.min(15, Math.max(0, Math.round(-lo / scale)));
      scales[col * blocks + b] = scale;
      zeroPoints[col * zpRow + (b >> 1)] |= zp << ((b & 1) * 4);
      for (let j = 0; j < blockSize; j++) {
        const i = start + j;
        // Padding past K dequantizes to 0 (code = zero point).
        const q = i < end ? Math.min(15, Math.max(0, Math.round(at(w, layout, i, col, k, n) / scale) + zp)) : zp;
        packed[(col * blocks + b) * blob + (j >> 1)] |= q << ((j & 1) * 4);
      }
    }
  }
  return { k, n, bits: 4, blockSize, packed, scales, zeroPoints };
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
 * import { dequantizeNBits, quantizeQ4 } from "./quant_math.ts";
 * const q = quantizeQ4(new Float32Array(32).fill(0.5), 16, 2, 16, "out_in");
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
 * Quantizes a float weight (K inputs, N outputs, stored in `layout`) to
 * int8, symmetric per output column.
 *
 * @example
 * ```ts
 * import { dequantizeQ8, quantizeQ8 } from "./quant_math.ts";
 * const q = quantizeQ8(new Float32Array([1, -2, 0.5, 4]), 2, 2, "in_out");
 * console.log(q.values, dequantizeQ8(q, "in_out")); // Int8Array [127, -64, 64, 127] ...
 * ```
 */
export function quantizeQ8(w: Float32Array, k: number, n: number, layout: WeightLayout): Q8Weight {
  checkDims(w, k, n);
  const values = new Int8Array(k * n);
  const scales = new Float32Array(n);
  for (let col = 0; col < n; col++) {
    let max = 0;
    for (let i = 0; i < k; i++) max = Math.max(max, Math.abs(at(w, layout, i, col, k, n)));
    const scale = max > 0 ? Math.fround(max / 127) : 1;
    scales[col] = scale;
    for (let i = 0; i < k; i++) {
      values[i * n + col] = Math.min(127, Math.max(-127, Math.round(at(w, layout, i, col, k, n) / scale)));
    }
  }
  return { k, n, values, scales, zeroPoints: new Int8Array(n) };
}

/**
 * The float weight a q8 weight stands for, in `layout`.
 *
 * @example
 * ```ts
 * import { dequantizeQ8, quantizeQ8 } from "./quant_math.ts";
 * console.log(dequantizeQ8(quantizeQ8(new Float32Array([2, 0]), 1, 2, "in_out"), "in_out")); // [2, 0]
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
