/**
 * The LoRA merge kernels on a WebGPU device: the merge, DoRA norms and
 * rescale of {@linkcode LoraKernels}, as WGSL compute shaders. GPU work is
 * asynchronous, so these methods return promises.
 *
 * Results are float32 sums in a different order than the float64 reference:
 * each `(B @ A)` entry is a float32 sum over the rank (error below
 * `rank * 2^-24` relative to `sum |B||A|`); scaling is a single multiply and
 * exact.
 * @module
 */
import type { LoraDims, WeightLayout } from "../kernels/types.ts";
import { checkArray, checkLoraArgs, checkScaleOutputsArgs } from "../kernels/validate.ts";
import { LoraJob } from "./lora_job.ts";
import { GpuRunner } from "./runner.ts";

/**
 * {@linkcode LoraKernels} on a GPU: the weight-sized methods are async.
 *
 * @example
 * ```ts
 * import { createWebGpuKernels, type WebGpuLoraKernels } from "./kernels.ts";
 * declare const device: GPUDevice;
 * const k: WebGpuLoraKernels = createWebGpuKernels(device);
 * const w = new Float32Array(6); // [out=2, in=3]
 * await k.mergeLora(w, new Float32Array([1, 2, 3]), new Float32Array([1, -1]),
 *   { outFeatures: 2, inFeatures: 3, rank: 1 }, 2, "out_in");
 * console.log(w); // [2, 4, 6, -2, -4, -6]
 * ```
 */
export interface WebGpuLoraKernels {
  /** Always `"webgpu"`. */
  readonly backend: "webgpu";
  /** The device the shaders run on. */
  readonly device: GPUDevice;
  /** `W += scale * B @ A` in place, in `W`'s layout. */
  mergeLora(
    w: Float32Array,
    a: Float32Array,
    b: Float32Array,
    dims: LoraDims,
    scale: number,
    layout: WeightLayout,
  ): Promise<void>;
  /** Per output feature L2 norm of `W + scale * B @ A`; `w` is unchanged. */
  doraNorms(
    w: Float32Array,
    a: Float32Array,
    b: Float32Array,
    dims: LoraDims,
    scale: number,
    layout: WeightLayout,
  ): Promise<Float32Array>;
  /** Multiplies output feature `o`'s weights by `factors[o]` in place. */
  scaleOutputs(w: Float32Array, factors: Float32Array, dims: LoraDims, layout: WeightLayout): Promise<void>;
  /**
   * The whole merge of one weight with one upload and one readback of `w`:
   * `W += scale * B @ A`, then with `magnitude` (DoRA) each output feature
   * times `magnitude[o] / ||W_o + scale * (B @ A)_o||` (norms of the merged
   * weight, as PEFT and `src/lora/merge.ts` compute them).
   */
  mergeWeight(
    w: Float32Array,
    a: Float32Array,
    b: Float32Array,
    dims: LoraDims,
    scale: number,
    layout: WeightLayout,
    magnitude?: Float32Array,
  ): Promise<void>;
}

/**
 * Options of {@linkcode createWebGpuKernels}.
 *
 * @example
 * ```ts
 * import type { WebGpuKernelOptions } from "./kernels.ts";
 * const options: WebGpuKernelOptions = { maxChunkRows: 4096 };
 * ```
 */
export interface WebGpuKernelOptions {
  /**
   * Most stored rows per storage buffer. Default: as many as the device's
   * `maxStorageBufferBindingSize` allows (and 65535). Smaller values only
   * test the chunked path.
   */
  maxChunkRows?: number;
}

/** Square roots of float32 sums of squares, rounded to float32 like the reference. */
function sqrtAll(sumsq: Float32Array): Float32Array {
  return sumsq.map((s) => Math.sqrt(s));
}

/**
 * Creates the WebGPU kernels on `device`. The caller owns the device (and
 * destroys it); the kernels keep only their compiled pipelines. Concurrent
 * calls are independent (each uploads its own buffers).
 *
 * @param device A device from `requestGpuDevice`, a `WebGpuContext`, or onnxruntime's.
 * @param options Chunking.
 * @example
 * ```ts
 * import { createWebGpuKernels } from "./kernels.ts";
 * import { requestGpuDevice } from "./device.ts";
 * const device = await requestGpuDevice();
 * const kernels = createWebGpuKernels(device);
 * const norms = await kernels.doraNorms(new Float32Array([3, 4]), new Float32Array(2), new Float32Array(1),
 *   { outFeatures: 1, inFeatures: 2, rank: 1 }, 1, "out_in");
 * console.log(norms); // [5]
 * device.destroy();
 * ```
 */
export function createWebGpuKernels(
  device: GPUDevice,
  options: WebGpuKernelOptions = {},
): WebGpuLoraKernels {
  const runner = new GpuRunner(device);
  const maxRows = options.maxChunkRows ?? Infinity;
  const newJob = (w: Float32Array, dims: LoraDims, layout: WeightLayout, a?: Float32Array, b?: Float32Array) =>
    new LoraJob(runner, w, dims, layout, a, b, maxRows);

  async function run<T>(job: LoraJob, body: (job: LoraJob) => Promise<T>): Promise<T> {
    try {
      return await body(job);
    } finally {
      job.destroy();
    }
  }

  async function sumsqOf(job: LoraJob, out: number, scale: number, merge: boolean): Promise<Float32Array> {
    const sumsq = runner.zeros(out);
    try {
      runner.submit((pass) => {
        job.norms(pass, scale, sumsq);
        if (merge) job.merge(pass, scale);
      });
      return (await runner.readBack([{ buffer: sumsq, length: out }]))[0];
    } finally {
      sumsq.destroy();
    }
  }

  function applyFactors(job: LoraJob, factors: Float32Array): void {
    const buffer = runner.upload(factors);
    try {
      runner.submit((pass) => job.scale(pass, buffer));
    } finally {
      // Destroying a buffer after its submit is allowed: the queued work keeps it until it finishes.
      buffer.destroy();
    }
  }

  return Object.freeze(
    {
      backend: "webgpu" as const,
      device,
      async mergeLora(w, a, b, dims, scale, layout) {
        checkLoraArgs("mergeLora", w, a, b, dims, scale, layout);
        return await run(newJob(w, dims, layout, a, b), async (job) => {
          runner.submit((pass) => job.merge(pass, scale));
          await job.readWeight(w);
        });
      },
      async doraNorms(w, a, b, dims, scale, layout) {
        checkLoraArgs("doraNorms", w, a, b, dims, scale, layout);
        return await run(newJob(w, dims, layout, a, b), async (job) => {
          return sqrtAll(await sumsqOf(job, dims.outFeatures, scale, false));
        });
      },
      async scaleOutputs(w, factors, dims, layout) {
        checkScaleOutputsArgs("scaleOutputs", w, factors, dims, layout);
        return await run(newJob(w, dims, layout), async (job) => {
          applyFactors(job, factors);
          await job.readWeight(w);
        });
      },
      async mergeWeight(w, a, b, dims, scale, layout, magnitude) {
        checkLoraArgs("mergeWeight", w, a, b, dims, scale, layout);
        if (magnitude !== undefined) {
          checkArray(
            "mergeWeight",
            "magnitude",
            magnitude,
            Float32Array,
            dims.outFeatures,
            `[out] = [${dims.outFeatures}]`,
          );
        }
        return await run(newJob(w, dims, layout, a, b), async (job) => {
          if (magnitude) {
            const norms = sqrtAll(await sumsqOf(job, dims.outFeatures, scale, true));
            applyFactors(job, magnitude.map((m, o) => m / norms[o]));
          } else {
            runner.submit((pass) => job.merge(pass, scale));
          }
          await job.readWeight(w);
        });
      },
    } satisfies WebGpuLoraKernels,
  );
}
