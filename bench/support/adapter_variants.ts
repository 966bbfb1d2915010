/**
 * Adapter variants for the serving bench: copies of one PEFT LoRA adapter
 * whose `lora_B` tensors are multiplied by a factor each, written as
 * subfolders of a temp folder that a service can use as a local root.
 * Scaling B scales the adapter's delta (B·A), so every variant is a valid
 * adapter of the same size that generates differently.
 * @module
 */
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseSafetensors, serializeSafetensors, type TensorInput } from "../../src/safetensors/mod.ts";

/** A temp local root holding the variants `v0`, `v1`, ... */
export interface VariantRoot {
  /** The root folder (pass it in `localRoots`). */
  readonly dir: string;
  /** The variants' ids under the root, in order of `scales`. */
  readonly ids: readonly string[];
  /** Deletes the root and everything in it. */
  remove(): Promise<void>;
}

/**
 * Writes one variant of the adapter in `source` per factor in `scales`:
 * `v<i>` holds the adapter config unchanged and the weights with every
 * `lora_B` tensor times `scales[i]` (stored as F32; other tensors as they were).
 *
 * @example
 * ```ts
 * import { makeVariantRoot } from "./adapter_variants.ts";
 * const root = await makeVariantRoot("examples/demo/byte-llama-python-lora", [1, 1.5]);
 * console.log(root.dir, root.ids); // /tmp/peft-edge-bench-... ["v0", "v1"]
 * await root.remove();
 * ```
 */
export async function makeVariantRoot(source: string, scales: readonly number[]): Promise<VariantRoot> {
  const weights = parseSafetensors(await readFile(join(source, "adapter_model.safetensors")));
  const dir = await mkdtemp(join(tmpdir(), "peft-edge-bench-"));
  const remove = () => rm(dir, { recursive: true, force: true });
  try {
    const ids: string[] = [];
    for (const [i, scale] of scales.entries()) {
      const id = `v${i}`;
      const tensors: Record<string, TensorInput> = {};
      for (const name of weights.names()) {
        const view = weights.get(name);
        if (name.includes("lora_B")) {
          const data = weights.toFloat32(name).map((x) => x * scale);
          tensors[name] = { dtype: "F32", shape: view.shape, data };
        } else {
          tensors[name] = { dtype: view.dtype, shape: view.shape, data: view.bytes };
        }
      }
      await mkdir(join(dir, id));
      await copyFile(join(source, "adapter_config.json"), join(dir, id, "adapter_config.json"));
      await writeFile(join(dir, id, "adapter_model.safetensors"), serializeSafetensors(tensors, weights.metadata));
      ids.push(id);
    }
    return { dir, ids, remove };
  } catch (error) {
    await remove();
    throw error;
  }
}
