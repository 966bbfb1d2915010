/**
 * Argument checks shared by every kernel backend. Each check throws a
 * {@linkcode KernelError} naming the function (as `key`) and the argument at
 * fault, and runs before any array is read or written.
 *
 * @module
 */

import { KernelError } from "../errors.ts";
import type { LoraDims, WeightLayout } from "./types.ts";

/**
 * Throws unless `value` is a positive safe integer.
 *
 * @example
 * ```ts
 * import { checkPositiveInt } from "./validate.ts";
 * checkPositiveInt("mergeLora", "rank", 8); // ok
 * ```
 */
export function checkPositiveInt(
  fn: string,
  name: string,
  value: unknown,
): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
    throw new KernelError(
      `${name} must be a positive integer, got ${String(value)}`,
      { key: fn },
    );
  }
  return value;
}

/**
 * Throws unless `scale` is a finite number.
 *
 * @example
 * ```ts
 * import { checkScale } from "./validate.ts";
 * checkScale("mergeLora", 2); // ok
 * ```
 */
export function checkScale(fn: string, scale: unknown): number {
  if (typeof scale !== "number" || !Number.isFinite(scale)) {
    throw new KernelError(
      `scale must be a finite number, got ${String(scale)}`,
      { key: fn },
    );
  }
  return scale;
}

/**
 * Throws unless `layout` is `"out_in"` or `"in_out"`.
 *
 * @example
 * ```ts
 * import { checkLayout } from "./validate.ts";
 * checkLayout("mergeLora", "out_in"); // ok
 * ```
 */
export function checkLayout(fn: string, layout: unknown): WeightLayout {
  if (layout !== "out_in" && layout !== "in_out") {
    throw new KernelError(
      `layout must be "out_in" or "in_out", got ${String(layout)}`,
      { key: fn },
    );
  }
  return layout;
}

/**
 * Throws unless `dims` holds positive integer `outFeatures`, `inFeatures`
 * and `rank`.
 *
 * @example
 * ```ts
 * import { checkDims } from "./validate.ts";
 * checkDims("mergeLora", { outFeatures: 8, inFeatures: 4, rank: 2 }); // ok
 * ```
 */
export function checkDims(fn: string, dims: LoraDims): LoraDims {
  if (typeof dims !== "object" || dims === null) {
    throw new KernelError(`dims must be an object, got ${String(dims)}`, {
      key: fn,
    });
  }
  checkPositiveInt(fn, "dims.outFeatures", dims.outFeatures);
  checkPositiveInt(fn, "dims.inFeatures", dims.inFeatures);
  checkPositiveInt(fn, "dims.rank", dims.rank);
  return dims;
}

/**
 * Throws unless `array` is an instance of `type` with exactly `expected`
 * elements; `shape` describes the expected shape in the message.
 *
 * @example
 * ```ts
 * import { checkArray } from "./validate.ts";
 * checkArray("mergeLora", "a", new Float32Array(8), Float32Array, 8, "[rank, in] = [2, 4]");
 * ```
 */
export function checkArray(
  fn: string,
  name: string,
  array: unknown,
  type: Float32ArrayConstructor,
  expected: number,
  shape: string,
): asserts array is Float32Array {
  if (!(array instanceof type)) {
    throw new KernelError(`${name} must be a ${type.name}`, { key: fn });
  }
  if (array.length !== expected) {
    throw new KernelError(
      `${name} has ${array.length} elements but ${shape} needs ${expected}`,
      { key: fn },
    );
  }
}

/**
 * Checks the arguments of a merge or DoRA-norm call: dims, scale, layout,
 * and `w` / `a` / `b` lengths.
 *
 * @example
 * ```ts
 * import { checkLoraArgs } from "./validate.ts";
 * const dims = { outFeatures: 3, inFeatures: 2, rank: 1 };
 * checkLoraArgs("mergeLora", new Float32Array(6), new Float32Array(2), new Float32Array(3), dims, 1, "out_in");
 * ```
 */
export function checkLoraArgs(
  fn: string,
  w: Float32Array,
  a: Float32Array,
  b: Float32Array,
  dims: LoraDims,
  scale: number,
  layout: WeightLayout,
): void {
  const { outFeatures: out, inFeatures: inf, rank } = checkDims(fn, dims);
  checkScale(fn, scale);
  checkLayout(fn, layout);
  const wShape = layout === "out_in" ? `[out, in] = [${out}, ${inf}]` : `[in, out] = [${inf}, ${out}]`;
  checkArray(fn, "w", w, Float32Array, out * inf, wShape);
  checkArray(
    fn,
    "a",
    a,
    Float32Array,
    rank * inf,
    `[rank, in] = [${rank}, ${inf}]`,
  );
  checkArray(
    fn,
    "b",
    b,
    Float32Array,
    out * rank,
    `[out, rank] = [${out}, ${rank}]`,
  );
}

/**
 * Checks the arguments of a rescale call: dims, layout, `w` and one factor
 * per output feature (`dims.rank` is checked but unused).
 *
 * @example
 * ```ts
 * import { checkScaleOutputsArgs } from "./validate.ts";
 * const dims = { outFeatures: 3, inFeatures: 2, rank: 1 };
 * checkScaleOutputsArgs("scaleOutputs", new Float32Array(6), new Float32Array(3), dims, "in_out");
 * ```
 */
export function checkScaleOutputsArgs(
  fn: string,
  w: Float32Array,
  factors: Float32Array,
  dims: LoraDims,
  layout: WeightLayout,
): void {
  const { outFeatures: out, inFeatures: inf } = checkDims(fn, dims);
  checkLayout(fn, layout);
  checkArray(fn, "w", w, Float32Array, out * inf, `[${out} x ${inf}]`);
  checkArray(fn, "factors", factors, Float32Array, out, `[out] = [${out}]`);
}
