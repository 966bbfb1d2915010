/**
 * The `"wasm-simd"` kernel backend: the Rust crate in `wasm/lora-kernel`,
 * compiled to SIMD128 WebAssembly and embedded as base64, behind the
 * {@linkcode LoraKernels} interface.
 *
 * Memory: each call allocates its operands in the instance's own linear
 * memory (a stack-like arena that resets when the call frees them), copies
 * inputs in, runs, copies results out, frees. The weight `W` is never copied
 * whole: it streams through a 256 KiB window, a block of rows at a time
 * (which also keeps the block in cache while it is merged); `A`, `B` (and
 * `B^T` for "in_out") are copied once per call. The memory, which WebAssembly cannot shrink, grows to
 * the largest call served and is reused after that.
 *
 * @module
 */

import { KernelError } from "../errors.ts";
import { decodeBase64 } from "./base64.ts";
import { LORA_KERNEL_WASM_BASE64 } from "./lora_kernel_wasm.ts";
import type { LoraDims, LoraKernels, WeightLayout } from "./types.ts";
import { checkLoraArgs, checkScaleOutputsArgs } from "./validate.ts";

/** What the wasm module exports (see `wasm/lora-kernel/src/lib.rs`); pointers are byte offsets. */
interface KernelExports {
  memory: WebAssembly.Memory;
  alloc(bytes: number): number;
  dealloc(ptr: number, bytes: number): void;
  transpose(src: number, rows: number, cols: number, dst: number): void;
  merge_out_in(
    w: number,
    a: number,
    b: number,
    rows: number,
    inf: number,
    rank: number,
    scale: number,
  ): void;
  merge_in_out(
    w: number,
    rows: number,
    a: number,
    aStride: number,
    bt: number,
    out: number,
    rank: number,
    scale: number,
  ): void;
  dora_squares_out_in(
    w: number,
    a: number,
    b: number,
    rows: number,
    inf: number,
    rank: number,
    scale: number,
    acc: number,
  ): void;
  dora_squares_in_out(
    w: number,
    rows: number,
    a: number,
    aStride: number,
    bt: number,
    out: number,
    rank: number,
    scale: number,
    acc: number,
  ): void;
  scale_rows(w: number, rows: number, cols: number, f: number): void;
  scale_cols(w: number, rows: number, cols: number, f: number): void;
}

const EXPORTED_FUNCTIONS = [
  "alloc",
  "dealloc",
  "transpose",
  "merge_out_in",
  "merge_in_out",
  "dora_squares_out_in",
  "dora_squares_in_out",
  "scale_rows",
  "scale_cols",
] as const;

/** Floats of `W` per streamed block (256 KiB: stays in L2 while it is merged). */
const WINDOW_FLOATS = 1 << 16;
/**
 * Slack bytes in the `W` window so its start can sit half a 4 KiB page away
 * from the rows it reads (`A` or `B^T`): the kernel stores to `W` and then
 * loads those rows, and x86 stalls a load whose address equals a recent
 * store's modulo 4 KiB ("4K aliasing"), which costs about 20% when rows are
 * a multiple of 4 KiB long.
 */
const ALIAS_PAD = 4096;

/** The address in `[block, block + 4096)` that is 2 KiB past `other` modulo 4 KiB. */
function offsetFrom(block: number, other: number): number {
  return block + ((((other + 2048 - block) % 4096) + 4096) % 4096);
}

/**
 * How `W` streams through the window: its rows (output features for
 * "out_in", input features for "in_out"), their length, and how many rows
 * one block holds.
 */
function rowBlocks(dims: LoraDims, layout: WeightLayout): { rowLen: number; rowCount: number; blockRows: number } {
  const { outFeatures: out, inFeatures: inf } = dims;
  const [rowLen, rowCount] = layout === "out_in" ? [inf, out] : [out, inf];
  return { rowLen, rowCount, blockRows: Math.max(1, Math.min(rowCount, Math.floor(WINDOW_FLOATS / rowLen))) };
}

/** Largest total allocation one call may ask for (wasm32 memory is at most 4 GiB). */
const MAX_CALL_BYTES = 2 ** 32 - 2 ** 26;

/**
 * Compiles the embedded kernel module. Runtimes that forbid compiling
 * WebAssembly from bytes (workerd: "Wasm code generation disallowed by
 * embedder") reject this; they can import `wasm/lora_kernel.wasm` as a
 * module instead and pass it to {@linkcode createWasmKernels}.
 *
 * @example
 * ```ts
 * import { compileEmbeddedKernel } from "./wasm_backend.ts";
 * const module = await compileEmbeddedKernel();
 * ```
 */
export function compileEmbeddedKernel(): Promise<WebAssembly.Module> {
  return WebAssembly.compile(decodeBase64(LORA_KERNEL_WASM_BASE64));
}

/**
 * Instantiates the kernel module (the embedded one, compiled here, unless a
 * precompiled `module` is given) and wraps it.
 *
 * @throws {KernelError} when the module does not export what the wrapper needs.
 * @example
 * ```ts
 * import { createWasmKernels } from "./wasm_backend.ts";
 * const k = await createWasmKernels();
 * console.log(k.backend); // "wasm-simd"
 * ```
 */
export async function createWasmKernels(module?: WebAssembly.Module): Promise<LoraKernels> {
  const instance = await WebAssembly.instantiate(module ?? await compileEmbeddedKernel(), {});
  const exports = instance.exports as Record<string, unknown>;
  for (const name of EXPORTED_FUNCTIONS) {
    if (typeof exports[name] !== "function") {
      throw new KernelError(`kernel wasm module lacks export ${name}`, {
        key: "loadKernels",
      });
    }
  }
  if (!(exports.memory instanceof WebAssembly.Memory)) {
    throw new KernelError("kernel wasm module exports no memory", {
      key: "loadKernels",
    });
  }
  return new WasmSimdKernels(exports as unknown as KernelExports);
}

class WasmSimdKernels implements LoraKernels {
  readonly backend = "wasm-simd" as const;
  readonly #wasm: KernelExports;

  constructor(wasm: KernelExports) {
    this.#wasm = wasm;
  }

  mergeLora(
    w: Float32Array,
    a: Float32Array,
    b: Float32Array,
    dims: LoraDims,
    scale: number,
    layout: WeightLayout,
  ): void {
    checkLoraArgs("mergeLora", w, a, b, dims, scale, layout);
    this.#streamMerge("mergeLora", w, a, b, dims, scale, layout, false);
  }

  doraNorms(
    w: Float32Array,
    a: Float32Array,
    b: Float32Array,
    dims: LoraDims,
    scale: number,
    layout: WeightLayout,
  ): Float32Array {
    checkLoraArgs("doraNorms", w, a, b, dims, scale, layout);
    const squares = this.#streamMerge(
      "doraNorms",
      w,
      a,
      b,
      dims,
      scale,
      layout,
      true,
    );
    return Float32Array.from(squares, Math.sqrt);
  }

  scaleOutputs(
    w: Float32Array,
    factors: Float32Array,
    dims: LoraDims,
    layout: WeightLayout,
  ): void {
    checkScaleOutputsArgs("scaleOutputs", w, factors, dims, layout);
    const { outFeatures: out, inFeatures: inf } = dims;
    const { rowLen, blockRows } = rowBlocks(dims, layout);
    const sizes = [factors.byteLength, blockRows * rowLen * 4];
    this.#withBlocks("scaleOutputs", sizes, ([pf, pw]) => {
      this.#f32(pf, factors.length).set(factors);
      this.#eachBlock(w, dims, layout, pw, true, (r0, rows) => {
        if (layout === "out_in") this.#wasm.scale_rows(pw, rows, inf, pf + 4 * r0);
        else this.#wasm.scale_cols(pw, rows, out, pf);
      });
    });
  }

  /**
   * Streams `W` through a window of wasm memory, a block of its rows at a
   * time (rows are output features for "out_in", input features for
   * "in_out"). Merges each block; then either copies it back (`squares`
   * false) or adds its squares to per-output-feature sums, which it returns.
   */
  #streamMerge(
    fn: string,
    w: Float32Array,
    a: Float32Array,
    b: Float32Array,
    dims: LoraDims,
    scale: number,
    layout: WeightLayout,
    squares: boolean,
  ): Float64Array {
    const { outFeatures: out, inFeatures: inf, rank } = dims;
    const { rowLen, blockRows } = rowBlocks(dims, layout);
    const sizes = [
      a.byteLength,
      b.byteLength,
      layout === "in_out" ? b.byteLength : 0, // B^T
      blockRows * rowLen * 4 + ALIAS_PAD,
      squares ? out * 8 : 0,
    ];
    return this.#withBlocks(fn, sizes, ([pa, pb, pbt, window, pacc]) => {
      const ex = this.#wasm;
      const pw = offsetFrom(window, layout === "out_in" ? pa : pbt);
      this.#f32(pa, a.length).set(a);
      this.#f32(pb, b.length).set(b);
      if (layout === "in_out") ex.transpose(pb, out, rank, pbt);
      if (squares) new Float64Array(ex.memory.buffer, pacc, out).fill(0);
      this.#eachBlock(w, dims, layout, pw, !squares, (r0, rows) => {
        if (layout === "out_in") {
          const pbr = pb + 4 * r0 * rank;
          if (squares) ex.dora_squares_out_in(pw, pa, pbr, rows, inf, rank, scale, pacc + 8 * r0);
          else ex.merge_out_in(pw, pa, pbr, rows, inf, rank, scale);
        } else {
          const pac = pa + 4 * r0;
          if (squares) ex.dora_squares_in_out(pw, rows, pac, inf, pbt, out, rank, scale, pacc);
          else ex.merge_in_out(pw, rows, pac, inf, pbt, out, rank, scale);
        }
      });
      return squares ? new Float64Array(ex.memory.buffer, pacc, out).slice() : new Float64Array(0);
    });
  }

  /**
   * Copies `W` into the window at `pw` a block of rows at a time
   * ({@linkcode rowBlocks}), runs `body` on each (its first row, its row
   * count) and, when `copyBack`, copies the block back into `W`.
   */
  #eachBlock(
    w: Float32Array,
    dims: LoraDims,
    layout: WeightLayout,
    pw: number,
    copyBack: boolean,
    body: (r0: number, rows: number) => void,
  ): void {
    const { rowLen, rowCount, blockRows } = rowBlocks(dims, layout);
    for (let r0 = 0; r0 < rowCount; r0 += blockRows) {
      const block = w.subarray(r0 * rowLen, Math.min(rowCount, r0 + blockRows) * rowLen);
      this.#f32(pw, block.length).set(block);
      body(r0, block.length / rowLen);
      if (copyBack) block.set(this.#f32(pw, block.length));
    }
  }

  /** A float32 view of wasm memory (made fresh: growth detaches old views). */
  #f32(ptr: number, length: number): Float32Array {
    return new Float32Array(this.#wasm.memory.buffer, ptr, length);
  }

  /** Allocates one block per size, runs `body`, frees them in reverse order. */
  #withBlocks<T>(fn: string, sizes: number[], body: (ptrs: number[]) => T): T {
    const total = sizes.reduce((sum, n) => sum + n + 16, 0);
    if (total > MAX_CALL_BYTES) {
      throw new KernelError(
        `needs ${total} bytes of WebAssembly memory, more than wasm32 can address`,
        { key: fn },
      );
    }
    const ptrs: number[] = [];
    try {
      for (const size of sizes) {
        const ptr = this.#wasm.alloc(size) >>> 0;
        if (ptr === 0) {
          throw new KernelError(
            `WebAssembly memory could not grow to hold ${total} bytes`,
            {
              key: fn,
            },
          );
        }
        ptrs.push(ptr);
      }
      return body(ptrs);
    } finally {
      for (let i = ptrs.length - 1; i >= 0; i--) {
        this.#wasm.dealloc(ptrs[i], sizes[i]);
      }
    }
  }
}
