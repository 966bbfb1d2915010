/**
 * FourierFT (PEFT's `tuners/fourierft`): `fourierft_spectrum` (`[n]`) holds
 * the values of `n` frequencies of a `[out, in]` spectrum, placed at the
 * first `n` entries of `randperm(out·in)` seeded with `random_loc_seed`
 * (row `idx // in`, column `idx % in`; not saved, regenerated as torch
 * does). `ΔW = Re(ifft2(spectrum)) · scaling`.
 * @module
 */
import { getPatternKey } from "../../config/mod.ts";
import { AdapterConfigError } from "../../errors.ts";
import { field, parseTunerConfig, type TunerConfig } from "../config.ts";
import { addScaled, required } from "../dense.ts";
import type { ModuleUpdate, TunerMethod } from "../method.ts";
import { torchRandperm } from "./randperm.ts";

function parse(values: Readonly<Record<string, unknown>>, file?: string): TunerConfig {
  const pattern = values.n_frequency_pattern ?? {};
  if (typeof pattern !== "object" || Array.isArray(pattern)) {
    throw new AdapterConfigError("n_frequency_pattern must be an object", { key: "n_frequency_pattern", file });
  }
  field(values, "scaling", 150);
  field(values, "random_loc_seed", 777);
  return parseTunerConfig("FOURIERFT", values, { file });
}

function frequencies(config: TunerConfig, module: string): number {
  const pattern = (config.fields.n_frequency_pattern ?? {}) as Record<string, unknown>;
  const key = getPatternKey(Object.keys(pattern), module);
  const n = key === undefined ? field(config.fields, "n_frequency", 1000) : pattern[key];
  if (typeof n !== "number" || !Number.isInteger(n) || n <= 0) {
    throw new AdapterConfigError(`\`n_frequency\` should be a positive integer value but the value passed is ${n}`, {
      key: module,
    });
  }
  return n;
}

/**
 * `Re(ifft2(X))` of a real `[rows, cols]` spectrum with `values` at
 * `(r_f, c_f)`: `(1 / rows·cols) Σ_f x_f cos(2π(r_f m / rows + c_f n / cols))`.
 *
 * @example
 * ```ts
 * import { inverseDft2Real } from "./mod.ts";
 * inverseDft2Real(new Float32Array([4]), [0], [0], 2, 2); // [1, 1, 1, 1]
 * ```
 */
export function inverseDft2Real(
  values: Float32Array,
  rowsOf: ArrayLike<number>,
  colsOf: ArrayLike<number>,
  rows: number,
  cols: number,
): Float32Array {
  const out = new Float32Array(rows * cols);
  const acc = new Float64Array(rows * cols);
  for (let f = 0; f < values.length; f++) {
    const x = values[f];
    for (let m = 0; m < rows; m++) {
      // Phases reduced mod 2π through integer products, so large indices keep their precision.
      const pm = ((rowsOf[f] * m) % rows) / rows;
      for (let n = 0; n < cols; n++) {
        const phase = 2 * Math.PI * (pm + ((colsOf[f] * n) % cols) / cols);
        acc[m * cols + n] += x * Math.cos(phase);
      }
    }
  }
  const norm = rows * cols;
  for (let i = 0; i < acc.length; i++) out[i] = acc[i] / norm;
  return out;
}

function merge(m: ModuleUpdate, config: TunerConfig) {
  const { outFeatures: out, inFeatures: inn } = m;
  const n = frequencies(config, m.module);
  if (n > out * inn) {
    throw new AdapterConfigError(
      `\`n_frequency\` should be less than or equal to the product of the input and output dimensions but the value ` +
        `passed is ${n} and the product is ${out * inn}`,
      { key: m.module },
    );
  }
  const spectrum = required(m, "fourierft_spectrum", [n]).values;
  const perm = torchRandperm(out * inn, field(config.fields, "random_loc_seed", 777)).subarray(0, n);
  const rows = Array.from(perm, (i) => Math.floor(i / inn));
  const cols = Array.from(perm, (i) => i % inn);
  const delta = inverseDft2Real(spectrum, rows, cols, out, inn);
  return { weight: addScaled(m.weight(), delta, field(config.fields, "scaling", 150)) };
}

/**
 * The FourierFT method.
 *
 * @example
 * ```ts
 * import { fourierft } from "./mod.ts";
 * fourierft.params; // ["fourierft_spectrum"]
 * ```
 */
export const fourierft: TunerMethod = { params: ["fourierft_spectrum"], parse, merge };
