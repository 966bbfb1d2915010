/**
 * Which kernels a model's adapters are merged with: the WGSL kernels when the
 * base runs on WebGPU, else the CPU kernels (wasm SIMD, or the TypeScript
 * fallback where WebAssembly SIMD is missing).
 * @module
 */
import { loadKernels, type LoraKernels } from "../kernels/kernels.ts";
import { cpuMerger, type WeightMerger } from "../lora/merger.ts";
import { WebGpuContext } from "../webgpu/context.ts";
import type { BaseModel } from "./base_model.ts";

/** The kernels a PeftModel uses, and how to free them. */
export interface ModelKernels {
  /** CPU kernels (conversions, DoRA scales for dynamic mode). */
  cpu: LoraKernels;
  /** What merges weights: the CPU kernels, or WGSL on a WebGPU device. */
  merger: WeightMerger;
  /** Frees the GPU device, if one was requested. */
  release(): void;
}

/**
 * Picks the kernels for a base model's device.
 *
 * @example
 * ```ts
 * import { kernelsFor } from "./kernel_choice.ts";
 * // const { merger, release } = await kernelsFor(base); ... release();
 * ```
 */
export async function kernelsFor(base: BaseModel): Promise<ModelKernels> {
  const cpu = await loadKernels();
  if (base.device !== "webgpu") return { cpu, merger: cpuMerger(cpu), release: () => {} };
  const context = new WebGpuContext();
  return { cpu, merger: await context.kernels(), release: () => context.destroy() };
}
