/**
 * The ".bin only" case: a repo that has PyTorch pickle weights
 * (`adapter_model.bin`) but no safetensors. peft-edge never unpickles, so it
 * explains that instead of a bare "file not found". Works on any FileSource:
 * the adapter reader and the Hub source both use it, so the error is one.
 * @module
 */
import { UnsupportedError } from "../errors.ts";
import type { FileSource } from "./file_source.ts";

/**
 * The pickle file a safetensors file replaces: `adapter_model.safetensors`
 * -> `adapter_model.bin`, `model.safetensors` -> `pytorch_model.bin`;
 * `undefined` for other files.
 *
 * @example
 * ```ts
 * import { pickleCounterpart } from "./bin_only.ts";
 * pickleCounterpart("sub/adapter_model.safetensors"); // "sub/adapter_model.bin"
 * ```
 */
export function pickleCounterpart(file: string): string | undefined {
  if (!file.endsWith(".safetensors")) return undefined;
  const slash = file.lastIndexOf("/") + 1;
  const dir = file.slice(0, slash);
  const base = file.slice(slash, -".safetensors".length);
  return `${dir}${base === "model" ? "pytorch_model" : base}.bin`;
}

/**
 * When `file` (a `.safetensors` file) is missing from `source` but its pickle
 * counterpart exists, the error to throw; otherwise `undefined`.
 *
 * @example
 * ```ts
 * import { safetensorsOnlyError } from "./bin_only.ts";
 * import { memorySource } from "./memory.ts";
 * const src = memorySource("old-adapter", { "adapter_model.bin": new Uint8Array(1) });
 * const err = await safetensorsOnlyError(src, "adapter_model.safetensors");
 * if (err) throw err; // UnsupportedError: only safetensors is loaded ...
 * ```
 */
export async function safetensorsOnlyError(
  source: FileSource,
  file: string,
): Promise<UnsupportedError | undefined> {
  const pickle = pickleCounterpart(file);
  if (!pickle || !await source.exists(pickle).catch(() => false)) return undefined;
  return new UnsupportedError(
    `there is ${pickle} but no ${file}: peft-edge loads only safetensors weights ` +
      `(a .bin file is a Python pickle, which is never executed here). Convert it once in Python with ` +
      `PeftModel.from_pretrained(...).save_pretrained(dir, safe_serialization=True) and use the result.`,
    { file, detail: `source ${source.location}` },
  );
}
