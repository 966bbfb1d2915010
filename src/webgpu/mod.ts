/**
 * WebGPU support: choosing the device sessions run on, a caller-owned
 * `GPUDevice`, and WGSL compute kernels for the LoRA merge and DoRA norms.
 *
 * @example
 * ```ts
 * import { chooseDevice, WebGpuContext } from "./mod.ts";
 * if (await chooseDevice("auto") === "webgpu") {
 *   const gpu = new WebGpuContext();
 *   const kernels = await gpu.kernels();
 *   // await kernels.mergeWeight(w, a, b, dims, scale, layout, magnitude);
 *   gpu.destroy();
 * }
 * ```
 * @module
 */
export {
  chooseDevice,
  type Device,
  type DeviceOption,
  type GpuLike,
  isFallbackAdapter,
  probeWebGpu,
  requestGpuDevice,
  runtimeGpu,
  type WebGpuProbe,
} from "./device.ts";
export { WebGpuContext } from "./context.ts";
export { createWebGpuKernels, type WebGpuKernelOptions, type WebGpuLoraKernels } from "./kernels.ts";
export { uploadToOrtGpu } from "./ort_tensors.ts";
