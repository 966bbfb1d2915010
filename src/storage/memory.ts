/**
 * An in-memory {@linkcode FileSource}: for edge functions and browsers that
 * have no file system, and for tests.
 * @module
 */
import { FileNotFoundError } from "../errors.ts";
import type { FileSource } from "./file_source.ts";

/**
 * What {@linkcode memorySource} takes for one file: any `Uint8Array`
 * (including a Node `Buffer`, a view into a larger pool), an `ArrayBuffer`,
 * or a `Blob` (read on first use).
 *
 * @example
 * ```ts
 * import type { MemoryFile } from "./memory.ts";
 * const files: Record<string, MemoryFile> = { "config.json": new Blob(["{}"]) };
 * ```
 */
export type MemoryFile = Uint8Array | ArrayBuffer | Blob;

/**
 * A plain `Uint8Array` holding exactly the file's bytes. A subclass (Node's
 * `Buffer`, whose `slice()` is a view, and whose `.buffer` is a shared pool)
 * is copied, so readers that call `bytes.slice().buffer` get the file only.
 */
function plainBytes(bytes: Uint8Array): Uint8Array {
  return Object.getPrototypeOf(bytes) === Uint8Array.prototype ? bytes : new Uint8Array(bytes);
}

/**
 * Wraps a map of file name to bytes as a {@linkcode FileSource}.
 *
 * @example
 * ```ts
 * import { memorySource } from "./memory.ts";
 * const src = memorySource("my-adapter", {
 *   "adapter_config.json": new TextEncoder().encode('{"peft_type":"LORA"}'),
 *   "adapter_model.safetensors": new Blob([new Uint8Array(8)]),
 * });
 * console.log(await src.exists("adapter_config.json")); // true
 * ```
 */
export function memorySource(
  location: string,
  files: Record<string, MemoryFile>,
): FileSource {
  const table = new Map<string, Uint8Array | Promise<Uint8Array> | Blob>();
  for (const [name, file] of Object.entries(files)) {
    table.set(
      name,
      file instanceof Uint8Array ? plainBytes(file) : file instanceof ArrayBuffer ? new Uint8Array(file) : file,
    );
  }
  return {
    location,
    read(file) {
      const entry = table.get(file);
      if (entry === undefined) {
        return Promise.reject(
          new FileNotFoundError(`no file ${file} in ${location}`, { file }),
        );
      }
      if (entry instanceof Uint8Array || entry instanceof Promise) return Promise.resolve(entry);
      const bytes = entry.arrayBuffer().then((buffer) => new Uint8Array(buffer));
      table.set(file, bytes);
      bytes.catch(() => table.set(file, entry));
      return bytes;
    },
    exists: (file) => Promise.resolve(table.has(file)),
  };
}
