/**
 * A WebGPU device the caller owns: requested on first use, shared by the
 * kernels made from it, and destroyed by {@linkcode WebGpuContext.destroy}.
 * Nothing GPU-related lives in module state.
 * @module
 */
import { type GpuLike, requestGpuDevice, runtimeGpu } from "./device.ts";
import { createWebGpuKernels, type WebGpuLoraKernels } from "./kernels.ts";

/**
 * Holds one lazily requested `GPUDevice`. If the device is lost, the next
 * {@linkcode WebGpuContext.device} call requests a new one.
 *
 * @example
 * ```ts
 * import { WebGpuContext } from "./context.ts";
 * const gpu = new WebGpuContext();
 * const kernels = await gpu.kernels();
 * const w = new Float32Array(6); // [in=3, out=2], as an ONNX MatMul stores it
 * await kernels.mergeWeight(w, new Float32Array([1, 2, 3]), new Float32Array([1, -1]), { outFeatures: 2, inFeatures: 3, rank: 1 }, 2, "in_out");
 * gpu.destroy();
 * ```
 */
export class WebGpuContext {
  readonly #gpu: GpuLike | null;
  #device?: Promise<GPUDevice>;

  /** @param gpu `navigator.gpu` by default (a fake in tests). */
  constructor(gpu: GpuLike | null = runtimeGpu()) {
    this.#gpu = gpu;
  }

  /**
   * The device, requested on the first call.
   * @throws {DeviceUnavailableError} when WebGPU has no adapter or device.
   */
  device(): Promise<GPUDevice> {
    if (!this.#device) {
      const pending = requestGpuDevice(this.#gpu);
      this.#device = pending;
      pending.then(
        (device) => device.lost.then(() => this.#device === pending && (this.#device = undefined)),
        () => this.#device === pending && (this.#device = undefined),
      );
    }
    return this.#device;
  }

  /** WGSL LoRA kernels on this context's device. */
  async kernels(): Promise<WebGpuLoraKernels> {
    return createWebGpuKernels(await this.device());
  }

  /** Destroys the device, if one was requested; a later call requests a new one. */
  destroy(): void {
    const pending = this.#device;
    this.#device = undefined;
    pending?.then((device) => device.destroy(), () => {});
  }
}
