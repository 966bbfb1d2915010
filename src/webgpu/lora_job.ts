/**
 * One LoRA kernel call on the GPU: the weight uploaded in row chunks that
 * each fit a storage binding, `A` and `B` uploaded once, and the dispatches
 * of the merge, DoRA-norm and rescale shaders over every chunk.
 * @module
 */
import { KernelError } from "../errors.ts";
import type { LoraDims, WeightLayout } from "../kernels/types.ts";
import type { GpuRunner } from "./runner.ts";
import { LINEAR_WORKGROUP, MERGE_TILE, MERGE_WGSL, NORMS_COLS_WGSL, NORMS_ROWS_WGSL, SCALE_WGSL } from "./wgsl.ts";

/** Most workgroups in one dispatch dimension (the WebGPU default limit). */
const MAX_GROUPS = 65535;

/** A row range of the stored weight and the buffer holding it. */
interface Chunk {
  row0: number;
  rows: number;
  buffer: GPUBuffer;
}

/**
 * The stored weight `W[rows, cols]` of one call, on the GPU. Create, record
 * work, read back, then {@linkcode LoraJob.destroy}.
 *
 * @example
 * ```ts
 * import { LoraJob } from "./lora_job.ts";
 * import type { GpuRunner } from "./runner.ts";
 * declare const runner: GpuRunner;
 * const w = new Float32Array(6), a = new Float32Array(3), b = new Float32Array(2);
 * const job = new LoraJob(runner, w, { outFeatures: 2, inFeatures: 3, rank: 1 }, "out_in", a, b);
 * runner.submit((pass) => job.merge(pass, 2));
 * await job.readWeight(w);
 * job.destroy();
 * ```
 */
export class LoraJob {
  readonly #runner: GpuRunner;
  readonly #dims: LoraDims;
  readonly #layout: WeightLayout;
  readonly #rows: number;
  readonly #cols: number;
  readonly #chunks: Chunk[] = [];
  readonly #owned: GPUBuffer[] = [];
  readonly #l?: GPUBuffer;
  readonly #r?: GPUBuffer;

  /**
   * Uploads `w` (and `a`, `b` when given) in chunks of at most `maxChunkRows`
   * stored rows (and what the device's bindings allow). Arguments must be validated.
   * @throws {KernelError} when one stored row does not fit a storage binding.
   */
  constructor(
    runner: GpuRunner,
    w: Float32Array,
    dims: LoraDims,
    layout: WeightLayout,
    a?: Float32Array,
    b?: Float32Array,
    maxChunkRows = Infinity,
  ) {
    this.#runner = runner;
    this.#dims = dims;
    this.#layout = layout;
    this.#rows = layout === "out_in" ? dims.outFeatures : dims.inFeatures;
    this.#cols = layout === "out_in" ? dims.inFeatures : dims.outFeatures;
    const limits = runner.device.limits;
    const maxBytes = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
    const perChunk = Math.min(MAX_GROUPS, maxChunkRows, Math.floor(maxBytes / (this.#cols * 4)));
    if (perChunk < 1 || Math.ceil(this.#cols / MERGE_TILE) > MAX_GROUPS) {
      throw new KernelError(`a stored row of ${this.#cols} floats is too long for this GPU's storage bindings`, {
        key: "webgpu",
      });
    }
    try {
      for (let row0 = 0; row0 < this.#rows; row0 += perChunk) {
        const rows = Math.min(perChunk, this.#rows - row0);
        const buffer = this.#own(runner.upload(w.subarray(row0 * this.#cols, (row0 + rows) * this.#cols)));
        this.#chunks.push({ row0, rows, buffer });
      }
      if (a && b) {
        // out_in: L = B, R = A; in_out: L = A^T, R = B^T (strides in #params).
        this.#l = this.#own(runner.upload(layout === "out_in" ? b : a));
        this.#r = this.#own(runner.upload(layout === "out_in" ? a : b));
      }
    } catch (error) {
      this.destroy();
      throw error;
    }
  }

  #own(buffer: GPUBuffer): GPUBuffer {
    this.#owned.push(buffer);
    return buffer;
  }

  /** The uniform block of the merge and norm shaders for one chunk. */
  #params(chunk: Chunk, scale: number): GPUBuffer {
    const { inFeatures: inf, rank } = this.#dims;
    const strides = this.#layout === "out_in" ? [rank, 1, inf, 1] : [1, inf, 1, rank];
    const words = new Uint32Array(12);
    words.set([chunk.rows, this.#cols, rank, chunk.row0, ...strides]);
    new Float32Array(words.buffer)[8] = scale;
    return this.#own(this.#runner.uniform(words));
  }

  #loraBindings(chunk: Chunk, scale: number): GPUBuffer[] {
    if (!this.#l || !this.#r) throw new KernelError("this job has no LoRA pair", { key: "webgpu" });
    return [this.#params(chunk, scale), chunk.buffer, this.#l, this.#r];
  }

  /** Records `W += scale * B @ A` on every chunk. */
  merge(pass: GPUComputePassEncoder, scale: number): void {
    for (const chunk of this.#chunks) {
      const x = Math.ceil(this.#cols / MERGE_TILE);
      this.#runner.dispatch(pass, MERGE_WGSL, this.#loraBindings(chunk, scale), x, Math.ceil(chunk.rows / MERGE_TILE));
    }
  }

  /**
   * Records the DoRA sums of squares of `W + scale * B @ A` per output
   * feature into `sumsq` (a zero-filled buffer of `outFeatures` floats).
   */
  norms(pass: GPUComputePassEncoder, scale: number, sumsq: GPUBuffer): void {
    for (const chunk of this.#chunks) {
      const bindings = [...this.#loraBindings(chunk, scale), sumsq];
      if (this.#layout === "out_in") this.#runner.dispatch(pass, NORMS_ROWS_WGSL, bindings, chunk.rows);
      else this.#runner.dispatch(pass, NORMS_COLS_WGSL, bindings, Math.ceil(this.#cols / LINEAR_WORKGROUP));
    }
  }

  /** Records `W[o, :] *= factors[o]` on every chunk (`factors`: `outFeatures` floats). */
  scale(pass: GPUComputePassEncoder, factors: GPUBuffer): void {
    for (const chunk of this.#chunks) {
      const groups = Math.ceil((chunk.rows * this.#cols) / LINEAR_WORKGROUP);
      const x = Math.min(groups, MAX_GROUPS);
      const y = Math.ceil(groups / x);
      const words = new Uint32Array([
        chunk.rows,
        this.#cols,
        chunk.row0,
        this.#layout === "out_in" ? 1 : 0,
        x * LINEAR_WORKGROUP,
        0,
        0,
        0,
      ]);
      const params = this.#own(this.#runner.uniform(words));
      this.#runner.dispatch(pass, SCALE_WGSL, [params, chunk.buffer, factors], x, y);
    }
  }

  /** Copies the weight back into `w` after all submitted work. */
  async readWeight(w: Float32Array): Promise<void> {
    const cols = this.#cols;
    await this.#runner.readBack(this.#chunks.map(({ row0, rows, buffer }) => ({
      buffer,
      length: rows * cols,
      into: w.subarray(row0 * cols, (row0 + rows) * cols),
    })));
  }

  /** Frees every buffer of this job. */
  destroy(): void {
    for (const buffer of this.#owned) buffer.destroy();
    this.#owned.length = 0;
  }
}
