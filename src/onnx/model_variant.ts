/**
 * Which ONNX file of a Hub-style repo holds a given weight type, named as
 * transformers.js names them (`dtype`): `onnx/model.onnx` (fp32),
 * `onnx/model_fp16.onnx`, `onnx/model_quantized.onnx` (q8), `_int8`,
 * `_uint8`, `_q4`, `_q4f16`, `_bnb4`.
 * @module
 */
import { UnsupportedError } from "../errors.ts";

/**
 * A weight type as transformers.js's `dtype` option spells it.
 *
 * @example
 * ```ts
 * import type { ModelDtype } from "./model_variant.ts";
 * const dtype: ModelDtype = "q4f16";
 * ```
 */
export type ModelDtype = "fp32" | "fp16" | "q8" | "int8" | "uint8" | "q4" | "q4f16" | "bnb4";

/** transformers.js's `DEFAULT_DTYPE_SUFFIX_MAPPING`. */
const SUFFIX: Readonly<Record<ModelDtype, string>> = {
  fp32: "",
  fp16: "_fp16",
  q8: "_quantized",
  int8: "_int8",
  uint8: "_uint8",
  q4: "_q4",
  q4f16: "_q4f16",
  bnb4: "_bnb4",
};

/**
 * Every `dtype` value, in transformers.js's order.
 *
 * @example
 * ```ts
 * import { MODEL_DTYPES } from "./model_variant.ts";
 * MODEL_DTYPES.includes("q4"); // true
 * ```
 */
export const MODEL_DTYPES: readonly ModelDtype[] = Object.keys(SUFFIX) as ModelDtype[];

/**
 * The file of a model variant: `onnx/<name><suffix>.onnx`.
 *
 * @param name The file's stem: `model` (default), or e.g. `decoder_model_merged`.
 * @throws {UnsupportedError} for a dtype transformers.js does not know.
 *
 * @example
 * ```ts
 * import { onnxFileForDtype } from "./model_variant.ts";
 * onnxFileForDtype("q8"); // "onnx/model_quantized.onnx"
 * onnxFileForDtype("fp16", "decoder_model_merged"); // "onnx/decoder_model_merged_fp16.onnx"
 * ```
 */
export function onnxFileForDtype(dtype: string, name = "model"): string {
  if (!Object.hasOwn(SUFFIX, dtype)) {
    throw new UnsupportedError(`unknown dtype ${JSON.stringify(dtype)}; use one of ${MODEL_DTYPES.join(", ")}`, {
      key: "dtype",
    });
  }
  return `onnx/${name}${SUFFIX[dtype as ModelDtype]}.onnx`;
}

/**
 * The fp32 file a variant was converted from, when `file` is named as a
 * transformers.js dtype variant (`<stem><suffix>.onnx`, any folder), or
 * undefined for an fp32 name or another name.
 *
 * @example
 * ```ts
 * import { fp32Variant } from "./model_variant.ts";
 * fp32Variant("onnx/model_q4.onnx"); // "onnx/model.onnx"
 * fp32Variant("onnx/decoder_model_merged_quantized.onnx"); // "onnx/decoder_model_merged.onnx"
 * fp32Variant("onnx/model.onnx"); // undefined
 * ```
 */
export function fp32Variant(file: string): string | undefined {
  for (const suffix of Object.values(SUFFIX)) {
    const end = `${suffix}.onnx`;
    const stem = file.slice(file.lastIndexOf("/") + 1);
    if (suffix !== "" && stem.length > end.length && stem.endsWith(end)) return `${file.slice(0, -end.length)}.onnx`;
  }
  return undefined;
}
