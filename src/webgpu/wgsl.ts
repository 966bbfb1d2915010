/**
 * WGSL compute shaders for the LoRA merge. Every shader works on one row
 * chunk of the stored weight `W[rows, cols]` (the chunk fits one storage
 * binding); `rowOffset` is the chunk's first row in the whole weight.
 *
 * The stored layout decides what rows and columns are:
 * - `"out_in"`: rows are output features `o`, columns input features `i`;
 * - `"in_out"`: rows are `i`, columns `o`.
 *
 * `(B @ A)` read in stored order is `L[row, k] * R[k, col]` summed over `k`,
 * with `L`/`R` given by strides: for `"out_in"` `L = B` and `R = A`, for
 * `"in_out"` `L = A^T` and `R = B^T`. So one merge shader serves both layouts.
 * @module
 */

/** Side of the square workgroup of the merge shader. */
export const MERGE_TILE = 16;

/** Threads per workgroup of the 1-D shaders. */
export const LINEAR_WORKGROUP = 256;

/** Uniform block shared by the merge and norm shaders: 8 u32, then scale and padding (48 bytes). */
const LORA_PARAMS = /* wgsl */ `
struct Params {
  rows: u32,      // rows of this chunk
  cols: u32,      // columns of W
  rank: u32,
  rowOffset: u32, // first row of this chunk in W
  lRow: u32,      // L[row, k] = l[row * lRow + k * lK]
  lK: u32,
  rK: u32,        // R[k, col] = r[k * rK + col * rCol]
  rCol: u32,
  scale: f32,
  pad0: u32,
  pad1: u32,
  pad2: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
`;

/**
 * `W[row, col] += scale * sum_k L[row, k] * R[k, col]`, one thread per
 * element of a 16 x 16 workgroup tile; threads along `x` walk the contiguous
 * columns. `L` and `R` (rank-sized rows) are read straight from storage: at
 * LoRA ranks they stay in cache, and the pass is bound by reading and writing
 * `W` on a GPU. (A workgroup-memory tiling with barriers ran 7x slower at
 * rank 1 and 2.4x slower at rank 16 on Mesa's lavapipe, 1.3x faster at rank
 * 64; not measured on a hardware GPU.) The sum runs over `k` in order, in
 * float32. Dispatch `(ceil(cols/16), ceil(rows/16))`.
 *
 * @example
 * ```ts
 * import { MERGE_WGSL } from "./wgsl.ts";
 * import { requestGpuDevice } from "./device.ts";
 * const device = await requestGpuDevice();
 * const module = device.createShaderModule({ code: MERGE_WGSL });
 * ```
 */
export const MERGE_WGSL = /* wgsl */ `${LORA_PARAMS}
@group(0) @binding(1) var<storage, read_write> w: array<f32>;
@group(0) @binding(2) var<storage, read> l: array<f32>;
@group(0) @binding(3) var<storage, read> r: array<f32>;

@compute @workgroup_size(${MERGE_TILE}, ${MERGE_TILE})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let row = gid.y;
  let col = gid.x;
  if (row >= p.rows || col >= p.cols) {
    return;
  }
  let lBase = (row + p.rowOffset) * p.lRow;
  let rBase = col * p.rCol;
  var acc = 0.0;
  for (var k = 0u; k < p.rank; k++) {
    acc += l[lBase + k * p.lK] * r[k * p.rK + rBase];
  }
  let index = row * p.cols + col;
  w[index] = w[index] + p.scale * acc;
}
`;

/**
 * DoRA norms for the `"out_in"` layout (rows are output features): one
 * workgroup per row; its 256 threads stride over the columns, each summing
 * `v * v` of `v = W + scale * (B @ A)` in float32, then a tree reduction.
 * Writes `sumsq[rowOffset + row]`. Dispatch `(rows)` with `rows <= 65535`.
 *
 * @example
 * ```ts
 * import { NORMS_ROWS_WGSL } from "./wgsl.ts";
 * import { requestGpuDevice } from "./device.ts";
 * const device = await requestGpuDevice();
 * const module = device.createShaderModule({ code: NORMS_ROWS_WGSL });
 * ```
 */
export const NORMS_ROWS_WGSL = /* wgsl */ `${LORA_PARAMS}
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> l: array<f32>;
@group(0) @binding(3) var<storage, read> r: array<f32>;
@group(0) @binding(4) var<storage, read_write> sumsq: array<f32>;

const N: u32 = ${LINEAR_WORKGROUP}u;
var<workgroup> partial: array<f32, ${LINEAR_WORKGROUP}>;

@compute @workgroup_size(${LINEAR_WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let row = wg.x;
  let grow = row + p.rowOffset;
  var acc = 0.0;
  for (var col = t; col < p.cols; col += N) {
    var d = 0.0;
    for (var k = 0u; k < p.rank; k++) {
      d += l[grow * p.lRow + k * p.lK] * r[k * p.rK + col * p.rCol];
    }
    let v = w[row * p.cols + col] + p.scale * d;
    acc += v * v;
  }
  partial[t] = acc;
  workgroupBarrier();
  for (var width = N / 2u; width > 0u; width /= 2u) {
    if (t < width) {
      partial[t] += partial[t + width];
    }
    workgroupBarrier();
  }
  if (t == 0u) {
    sumsq[grow] = partial[0];
  }
}
`;

/**
 * DoRA norms for the `"in_out"` layout (columns are output features): one
 * thread per column sums `v * v` down the chunk's rows in float32 and adds it
 * to `sumsq[col]`, so chunks (dispatched in order) accumulate.
 * Dispatch `(ceil(cols / 256))`; clear `sumsq` before the first chunk.
 *
 * @example
 * ```ts
 * import { NORMS_COLS_WGSL } from "./wgsl.ts";
 * import { requestGpuDevice } from "./device.ts";
 * const device = await requestGpuDevice();
 * const module = device.createShaderModule({ code: NORMS_COLS_WGSL });
 * ```
 */
export const NORMS_COLS_WGSL = /* wgsl */ `${LORA_PARAMS}
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> l: array<f32>;
@group(0) @binding(3) var<storage, read> r: array<f32>;
@group(0) @binding(4) var<storage, read_write> sumsq: array<f32>;

@compute @workgroup_size(${LINEAR_WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let col = gid.x;
  if (col >= p.cols) {
    return;
  }
  var acc = 0.0;
  for (var row = 0u; row < p.rows; row++) {
    let grow = row + p.rowOffset;
    var d = 0.0;
    for (var k = 0u; k < p.rank; k++) {
      d += l[grow * p.lRow + k * p.lK] * r[k * p.rK + col * p.rCol];
    }
    let v = w[row * p.cols + col] + p.scale * d;
    acc += v * v;
  }
  sumsq[col] += acc;
}
`;

/**
 * `W[row, col] *= factors[o]`, `o` being `rowOffset + row` when rows are
 * output features (`outIsRow = 1`), else `col`. One thread per element,
 * `index = gid.x + gid.y * strideX` (a 2-D grid for more than 65535
 * workgroups). A single float32 multiply: exact against the reference.
 *
 * @example
 * ```ts
 * import { SCALE_WGSL } from "./wgsl.ts";
 * import { requestGpuDevice } from "./device.ts";
 * const device = await requestGpuDevice();
 * const module = device.createShaderModule({ code: SCALE_WGSL });
 * ```
 */
export const SCALE_WGSL = /* wgsl */ `
struct ScaleParams {
  rows: u32,
  cols: u32,
  rowOffset: u32,
  outIsRow: u32,
  strideX: u32,
  pad0: u32,
  pad1: u32,
  pad2: u32,
}
@group(0) @binding(0) var<uniform> p: ScaleParams;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;
@group(0) @binding(2) var<storage, read> factors: array<f32>;

@compute @workgroup_size(${LINEAR_WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let index = gid.x + gid.y * p.strideX;
  if (index >= p.rows * p.cols) {
    return;
  }
  let row = index / p.cols;
  let col = index - row * p.cols;
  let o = select(col, row + p.rowOffset, p.outIsRow == 1u);
  w[index] = w[index] * factors[o];
}
`;
