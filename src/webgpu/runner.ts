/**
 * A small runner for compute shaders on one `GPUDevice`: compiled pipelines
 * (cached per runner), buffer upload and readback, and dispatch. The runner
 * holds no GPU memory between calls except its pipelines.
 * @module
 */

/** A storage or uniform buffer bound at a binding index, in order from 0. */
export type Bindings = readonly GPUBuffer[];

/**
 * Runs WGSL compute shaders on a device.
 *
 * @example
 * ```ts
 * import { GpuRunner } from "./runner.ts";
 * declare const device: GPUDevice;
 * const runner = new GpuRunner(device);
 * const buffer = runner.upload(new Float32Array([1, 2, 3]));
 * const values = await runner.readBack([{ buffer, length: 3 }]);
 * buffer.destroy();
 * ```
 */
export class GpuRunner {
  readonly #pipelines = new Map<string, GPUComputePipeline>();

  /** @param device The device every buffer and pipeline belongs to. */
  constructor(readonly device: GPUDevice) {}

  /** The compiled pipeline of a shader's `main` (compiled once per runner). */
  pipeline(code: string): GPUComputePipeline {
    let pipeline = this.#pipelines.get(code);
    if (!pipeline) {
      const module = this.device.createShaderModule({ code });
      pipeline = this.device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
      this.#pipelines.set(code, pipeline);
    }
    return pipeline;
  }

  /** A storage buffer holding a copy of `data` (also a copy source and destination). */
  upload(data: Float32Array): GPUBuffer {
    const buffer = this.device.createBuffer({
      size: Math.max(4, data.byteLength),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    });
    if (data.byteLength > 0) this.device.queue.writeBuffer(buffer, 0, data as Float32Array<ArrayBuffer>);
    return buffer;
  }

  /** A zero-filled storage buffer of `length` floats. */
  zeros(length: number): GPUBuffer {
    return this.device.createBuffer({
      size: Math.max(4, length * 4),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    });
  }

  /** A uniform buffer with these 32-bit words (padded to 16 bytes). */
  uniform(words: Uint32Array): GPUBuffer {
    const size = Math.ceil(words.byteLength / 16) * 16;
    const buffer = this.device.createBuffer({ size, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    this.device.queue.writeBuffer(buffer, 0, words as Uint32Array<ArrayBuffer>);
    return buffer;
  }

  /** Records one dispatch of `code` with buffers bound at 0, 1, 2, ... */
  dispatch(pass: GPUComputePassEncoder, code: string, bindings: Bindings, x: number, y = 1): void {
    const pipeline = this.pipeline(code);
    const bindGroup = this.device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: bindings.map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(x, y);
  }

  /** Encodes a compute pass with `record`, and submits it. */
  submit(record: (pass: GPUComputePassEncoder) => void): void {
    const encoder = this.device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    record(pass);
    pass.end();
    this.device.queue.submit([encoder.finish()]);
  }

  /**
   * Copies buffers back (after all submitted work), into `into` when given
   * (one target per buffer, `length` floats each) or into fresh arrays.
   */
  async readBack(
    sources: ReadonlyArray<{ buffer: GPUBuffer; length: number; into?: Float32Array }>,
  ): Promise<Float32Array[]> {
    const encoder = this.device.createCommandEncoder();
    const staging = sources.map(({ buffer, length }) => {
      const size = Math.max(4, length * 4);
      const target = this.device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      encoder.copyBufferToBuffer(buffer, 0, target, 0, size);
      return target;
    });
    this.device.queue.submit([encoder.finish()]);
    try {
      await Promise.all(staging.map((s) => s.mapAsync(GPUMapMode.READ)));
      return sources.map(({ length, into }, n) => {
        const values = new Float32Array(staging[n].getMappedRange(), 0, length);
        const out = into ?? new Float32Array(length);
        out.set(values);
        return out;
      });
    } finally {
      for (const s of staging) s.destroy();
    }
  }
}
