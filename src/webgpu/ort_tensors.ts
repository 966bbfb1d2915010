/**
 * Tensors that live on onnxruntime's own WebGPU device, for feeds that stay
 * the same across runs (e.g. adapter weights in dynamic mode): uploaded once,
 * fed to any WebGPU session without a copy, freed with `dispose()`.
 * @module
 */
import type { Tensor } from "../deps/ort.ts";
import { loadOrtWebGpu } from "../deps/ort_webgpu.ts";
import { UnsupportedError } from "../errors.ts";

const GPU_TYPES = new Set(["float32", "float16", "int32", "int64", "uint32", "uint8", "int8", "bool"]);

/**
 * Copies a CPU tensor into a buffer on onnxruntime's WebGPU device and
 * returns it as a GPU tensor (`location: "gpu-buffer"`). The caller owns it:
 * `dispose()` frees the buffer. Use it only with WebGPU sessions; getting
 * onnxruntime's device before its first WebGPU session creates that device.
 *
 * @throws {UnsupportedError} for a data type onnxruntime cannot hold in a GPU buffer, or an empty tensor.
 * @example
 * ```ts
 * import { uploadToOrtGpu } from "./ort_tensors.ts";
 * import { Tensor } from "../deps/ort.ts";
 * const a = await uploadToOrtGpu(new Tensor("float32", new Float32Array(8 * 64), [8, 64]));
 * const feeds = { lora_A: a }; // every run can reuse it without a copy
 * a.dispose();
 * ```
 */
export async function uploadToOrtGpu(tensor: Tensor): Promise<Tensor> {
  if (!GPU_TYPES.has(tensor.type)) {
    throw new UnsupportedError(`a ${tensor.type} tensor cannot live in an onnxruntime GPU buffer`, { key: "webgpu" });
  }
  const data = tensor.data as ArrayBufferView;
  if (data.byteLength === 0) {
    throw new UnsupportedError("an empty tensor cannot live in a GPU buffer", { key: "webgpu" });
  }
  const ortGpu = await loadOrtWebGpu();
  const device = (await ortGpu.env.webgpu.device) as GPUDevice;
  // writeBuffer needs a multiple of 4 bytes; onnxruntime reads only the tensor's own bytes.
  const size = Math.ceil(data.byteLength / 16) * 16;
  const bytes = new Uint8Array(size);
  bytes.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  const buffer = device.createBuffer({
    size,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  });
  device.queue.writeBuffer(buffer, 0, bytes);
  return ortGpu.Tensor.fromGpuBuffer(buffer, {
    dataType: tensor.type as "float32",
    dims: tensor.dims,
    dispose: () => buffer.destroy(),
  }) as unknown as Tensor;
}
