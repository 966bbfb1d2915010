/**
 * Which kernels a base's adapters are merged with: the WGSL kernels when the
 * base runs on WebGPU, else the CPU kernels (wasm SIMD, or the TypeScript
 * fallback where WebAssembly SIMD is missing). A base creates them once, on
 * first need, and every adapter applied to it shares them.
 * @module
 */
import { loadKernels, type LoraKernels } from "../kernels/kernels.ts";
import { cpuMerger, type WeightMerger } from "../lora/merge.ts";
import { WebGpuContext } from "../webgpu/context.ts";
import type { Device } from "../webgpu/device.ts";
import type { RuntimeOptions } from "./runtime_options.ts";

/**
 * The kernels of one base model, and how to free them.
 *
 * @example
 * ```ts
 * import { createModelKernels, type ModelKernels } from "./kernel_choice.ts";
 * const kernels: ModelKernels = await createModelKernels("wasm");
 * console.log(kernels.cpu.backend, kernels.merger.backend);
 * kernels.release();
 * ```
 */
export interface ModelKernels {
  /** CPU kernels (conversions, DoRA scales for dynamic mode). */
  cpu: LoraKernels;
  /** What merges weights: the CPU kernels, or WGSL on a WebGPU device. */
  merger: WeightMerger;
  /** Frees the GPU device, if one was requested. */
  release(): void;
}

/**
 * Creates the kernels for a device: one wasm instance (from
 * `runtime.kernelModule` when given; the TypeScript kernels, with one
 * warning, where compiling WebAssembly is forbidden), plus one `GPUDevice`
 * on WebGPU.
 *
 * @example
 * ```ts
 * import { createModelKernels } from "./kernel_choice.ts";
 * const kernels = await createModelKernels("wasm");
 * console.log(kernels.merger.backend); // "wasm-simd" where SIMD128 is supported
 * kernels.release();
 * ```
 */
export async function createModelKernels(
  device: Device,
  runtime: Pick<RuntimeOptions, "kernelModule" | "onWarning"> = {},
): Promise<ModelKernels> {
  const cpu = await loadKernels({ module: runtime.kernelModule, onWarning: runtime.onWarning });
  if (device !== "webgpu") return { cpu, merger: cpuMerger(cpu), release: () => {} };
  const context = new WebGpuContext();
  try {
    return { cpu, merger: await context.kernels(), release: () => context.destroy() };
  } catch (error) {
    context.destroy();
    throw error;
  }
}
