/**
 * Choosing where sessions and kernels run: WebGPU, WebAssembly, or native
 * onnxruntime (onnxruntime-node's CPU execution provider, opt-in). This is
 * the only module that looks at `navigator.gpu`; everything else takes the
 * resolved {@linkcode Device} or a `GPUDevice`. Whether onnxruntime-node
 * loads is found out when its first session is set up
 * (`src/model/native_session.ts`).
 *
 * `"auto"` picks WebGPU only for a hardware adapter: a fallback (software)
 * adapter such as Mesa's lavapipe/llvmpipe runs the model slower than the
 * WASM SIMD build, so `"auto"` takes WASM there. `"webgpu"` takes any adapter,
 * software ones included, and throws {@linkcode DeviceUnavailableError} when
 * there is none.
 * @module
 */
import { DeviceUnavailableError, UnsupportedError } from "../errors.ts";

/**
 * What a caller may ask for: `"auto"` (default), `"webgpu"`, `"wasm"` or
 * `"native"` (never chosen by `"auto"`).
 *
 * @example
 * ```ts
 * import type { DeviceOption } from "./device.ts";
 * const device: DeviceOption = "auto";
 * ```
 */
export type DeviceOption = "auto" | "webgpu" | "wasm" | "native";

/**
 * Where sessions actually run.
 *
 * @example
 * ```ts
 * import type { Device } from "./device.ts";
 * const device: Device = "wasm";
 * ```
 */
export type Device = "webgpu" | "wasm" | "native";

/**
 * The part of `navigator.gpu` the choice uses; tests pass a fake.
 *
 * @example
 * ```ts
 * import type { GpuLike } from "./device.ts";
 * const none: GpuLike = { requestAdapter: () => Promise.resolve(null) };
 * ```
 */
export interface GpuLike {
  requestAdapter(options?: GPURequestAdapterOptions): Promise<GPUAdapter | null>;
}

/**
 * `navigator.gpu` where the runtime has it (Deno, browsers), else `null`
 * (Bun, Node).
 *
 * @example
 * ```ts
 * import { runtimeGpu } from "./device.ts";
 * console.log(runtimeGpu() ? "WebGPU API present" : "no WebGPU API");
 * ```
 */
export function runtimeGpu(): GpuLike | null {
  const nav = (globalThis as { navigator?: { gpu?: GpuLike } }).navigator;
  return nav?.gpu ?? null;
}

/**
 * Whether an adapter is a fallback (software) adapter, read where the runtime
 * exposes it: `adapter.info.isFallbackAdapter` (current spec) or the older
 * `adapter.isFallbackAdapter`.
 *
 * @example
 * ```ts
 * import { isFallbackAdapter } from "./device.ts";
 * const adapter = { info: { isFallbackAdapter: true } } as unknown as GPUAdapter;
 * console.log(isFallbackAdapter(adapter)); // true
 * ```
 */
export function isFallbackAdapter(adapter: GPUAdapter): boolean {
  const a = adapter as { info?: { isFallbackAdapter?: boolean }; isFallbackAdapter?: boolean };
  return Boolean(a.info?.isFallbackAdapter ?? a.isFallbackAdapter ?? false);
}

/**
 * What WebGPU offers here.
 *
 * @example
 * ```ts
 * import { probeWebGpu, type WebGpuProbe } from "./device.ts";
 * const probe: WebGpuProbe = await probeWebGpu();
 * console.log(probe.adapter ? probe.description : `no adapter: ${probe.description}`);
 * ```
 */
export interface WebGpuProbe {
  /** The adapter, when WebGPU gave one. */
  adapter?: GPUAdapter;
  /** Whether that adapter is a fallback (software) one; false without an adapter. */
  isFallbackAdapter: boolean;
  /** The adapter's description, or why there is no adapter. */
  description: string;
}

/**
 * Asks WebGPU for a high-performance adapter; never throws.
 *
 * @param gpu `navigator.gpu` by default; `null` for a runtime without the WebGPU API.
 * @example
 * ```ts
 * import { probeWebGpu } from "./device.ts";
 * const { adapter, isFallbackAdapter, description } = await probeWebGpu();
 * console.log(adapter !== undefined, isFallbackAdapter, description);
 * ```
 */
export async function probeWebGpu(gpu: GpuLike | null = runtimeGpu()): Promise<WebGpuProbe> {
  if (!gpu) return { isFallbackAdapter: false, description: "this runtime has no navigator.gpu (WebGPU API)" };
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  } catch (error) {
    return {
      isFallbackAdapter: false,
      description: `navigator.gpu.requestAdapter() failed: ${(error as Error)?.message ?? error}`,
    };
  }
  if (!adapter) {
    return {
      isFallbackAdapter: false,
      description: "navigator.gpu.requestAdapter() returned no adapter (no GPU driver)",
    };
  }
  const info = (adapter as { info?: { description?: string; vendor?: string } }).info;
  return {
    adapter,
    isFallbackAdapter: isFallbackAdapter(adapter),
    description: info?.description || info?.vendor || "WebGPU adapter",
  };
}

/**
 * Resolves a {@linkcode DeviceOption}: `"wasm"` and `"native"` as they are
 * (`"native"` is checked when its sessions are set up); `"webgpu"` when WebGPU
 * gives any adapter; `"auto"` to `"webgpu"` only for a hardware (non-fallback)
 * adapter, else `"wasm"`.
 *
 * @param gpu `navigator.gpu` by default; `null` for a runtime without the WebGPU API.
 * @throws {DeviceUnavailableError} for `"webgpu"` without an adapter.
 * @throws {UnsupportedError} for any other option value.
 * @example
 * ```ts
 * import { chooseDevice } from "./device.ts";
 * const device = await chooseDevice("auto"); // "wasm" on Bun or a software adapter
 * ```
 */
export async function chooseDevice(option: DeviceOption = "auto", gpu: GpuLike | null = runtimeGpu()): Promise<Device> {
  if (option === "wasm" || option === "native") return option;
  if (option !== "auto" && option !== "webgpu") {
    throw new UnsupportedError(`device must be "auto", "webgpu", "wasm" or "native", got ${JSON.stringify(option)}`, {
      key: "device",
    });
  }
  const probe = await probeWebGpu(gpu);
  if (option === "webgpu") {
    if (!probe.adapter) {
      throw new DeviceUnavailableError(`device "webgpu" is not available: ${probe.description}`, { key: "device" });
    }
    return "webgpu";
  }
  return probe.adapter && !probe.isFallbackAdapter ? "webgpu" : "wasm";
}

/**
 * Requests a `GPUDevice` for compute, with the adapter's largest storage
 * buffer limits (big weights fit in fewer chunks).
 *
 * @param gpu `navigator.gpu` by default; `null` for a runtime without the WebGPU API.
 * @throws {DeviceUnavailableError} when there is no adapter or no device.
 * @example
 * ```ts
 * import { requestGpuDevice } from "./device.ts";
 * const device = await requestGpuDevice();
 * device.destroy();
 * ```
 */
export async function requestGpuDevice(gpu: GpuLike | null = runtimeGpu()): Promise<GPUDevice> {
  const { adapter, description } = await probeWebGpu(gpu);
  if (!adapter) throw new DeviceUnavailableError(`WebGPU is not available: ${description}`, { key: "device" });
  try {
    return await adapter.requestDevice({
      requiredLimits: {
        maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
        maxBufferSize: adapter.limits.maxBufferSize,
      },
    });
  } catch (cause) {
    throw new DeviceUnavailableError(
      `the WebGPU adapter (${description}) gave no device: ${(cause as Error)?.message ?? cause}`,
      {
        key: "device",
        cause,
      },
    );
  }
}
