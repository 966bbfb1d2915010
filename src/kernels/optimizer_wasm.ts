/**
 * The optimizer kernels on the embedded SIMD128 module (`adamw_step`,
 * `sgd_step`, `sum_squares`, `scale_in_place` in `wasm/lora-kernel`). An
 * instance of its own, so its arena never interleaves with merges. Each
 * call copies the tensor, its gradient and state into the module's memory
 * and the results back (LoRA tensors are small next to the graph run).
 * @module
 */
import { KernelError } from "../errors.ts";
import { decodeBase64 } from "./base64.ts";
import { LORA_KERNEL_WASM_BASE64 } from "./lora_kernel_wasm.ts";
import type { AdamWStep, OptimizerKernels, SgdStep } from "./optimizer_types.ts";

interface OptimizerExports {
  memory: WebAssembly.Memory;
  alloc(bytes: number): number;
  dealloc(ptr: number, bytes: number): void;
  adamw_step(
    p: number,
    g: number,
    m: number,
    v: number,
    n: number,
    decay: number,
    beta1: number,
    beta2: number,
    eps: number,
    stepSize: number,
    bc2Sqrt: number,
  ): void;
  sgd_step(
    p: number,
    g: number,
    buf: number,
    n: number,
    lr: number,
    momentum: number,
    dampening: number,
    weightDecay: number,
    nesterov: number,
    first: number,
  ): void;
  sum_squares(g: number, n: number): number;
  scale_in_place(g: number, n: number, f: number): void;
}

const NEEDED = ["alloc", "dealloc", "adamw_step", "sgd_step", "sum_squares", "scale_in_place"] as const;

/**
 * Instantiates the optimizer kernels from the embedded wasm module.
 *
 * @throws {KernelError} when the module lacks an optimizer export.
 * @example
 * ```ts
 * import { createWasmOptimizer } from "./optimizer_wasm.ts";
 * const k = await createWasmOptimizer();
 * console.log(k.backend, k.sumSquares(new Float32Array([3, 4]))); // "wasm-simd" 25
 * ```
 */
export async function createWasmOptimizer(): Promise<OptimizerKernels> {
  const module = await WebAssembly.compile(decodeBase64(LORA_KERNEL_WASM_BASE64));
  const instance = await WebAssembly.instantiate(module, {});
  const exports = instance.exports as Record<string, unknown>;
  for (const name of NEEDED) {
    if (typeof exports[name] !== "function") {
      throw new KernelError(`embedded wasm module lacks export ${name}`, { key: "optimizer" });
    }
  }
  return new WasmOptimizer(exports as unknown as OptimizerExports);
}

class WasmOptimizer implements OptimizerKernels {
  readonly backend = "wasm-simd" as const;
  readonly #wasm: OptimizerExports;

  constructor(wasm: OptimizerExports) {
    this.#wasm = wasm;
  }

  /** Copies `arrays` in, runs `body` on their addresses, copies the first `back` ones out, frees. */
  #with<T>(what: string, arrays: Float32Array[], back: number, body: (ptrs: number[]) => T): T {
    const n = arrays[0].length;
    for (const a of arrays) {
      if (a.length !== n) throw new KernelError(`${what}: tensors of different lengths (${a.length} vs ${n})`);
    }
    const bytes = n * 4;
    const ptrs: number[] = [];
    try {
      for (const a of arrays) {
        const p = this.#wasm.alloc(bytes);
        if (p === 0 && bytes > 0) throw new KernelError(`${what}: wasm memory cannot grow by ${bytes} bytes`);
        ptrs.push(p);
        new Float32Array(this.#wasm.memory.buffer, p, n).set(a);
      }
      const out = body(ptrs);
      for (let i = 0; i < back; i++) arrays[i].set(new Float32Array(this.#wasm.memory.buffer, ptrs[i], n));
      return out;
    } finally {
      for (let i = ptrs.length - 1; i >= 0; i--) this.#wasm.dealloc(ptrs[i], bytes);
    }
  }

  adamw(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, s: AdamWStep): void {
    // Order: the outputs p, m, v first (copied back), g last.
    this.#with("adamw", [p, m, v, g], 3, ([pp, pm, pv, pg]) =>
      this.#wasm.adamw_step(
        pp,
        pg,
        pm,
        pv,
        p.length,
        1 - s.lr * s.weightDecay,
        s.beta1,
        s.beta2,
        s.eps,
        s.lr / (1 - Math.pow(s.beta1, s.step)),
        Math.sqrt(1 - Math.pow(s.beta2, s.step)),
      ));
  }

  sgd(p: Float32Array, g: Float32Array, buf: Float32Array, s: SgdStep): void {
    this.#with("sgd", [p, buf, g], 2, ([pp, pb, pg]) =>
      this.#wasm.sgd_step(
        pp,
        pg,
        pb,
        p.length,
        s.lr,
        s.momentum,
        s.dampening,
        s.weightDecay,
        s.nesterov ? 1 : 0,
        s.first ? 1 : 0,
      ));
  }

  sumSquares(g: Float32Array): number {
    return this.#with("sumSquares", [g], 0, ([pg]) => this.#wasm.sum_squares(pg, g.length));
  }

  scale(g: Float32Array, f: number): void {
    this.#with("scale", [g], 1, ([pg]) => this.#wasm.scale_in_place(pg, g.length, f));
  }
}
