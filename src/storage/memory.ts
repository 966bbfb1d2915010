/**
 * An in-memory {@linkcode FileSource}: for edge functions and browsers that
 * have no file system, and for tests.
 * @module
 */
import { FileNotFoundError } from "../errors.ts";
import type { FileSource } from "./file_source.ts";

/**
 * Wraps a map of file name to bytes as a {@linkcode FileSource}.
 *
 * @example
 * ```ts
 * import { memorySource } from "./memory.ts";
 * const src = memorySource("my-adapter", {
 *   "adapter_config.json": new TextEncoder().encode('{"peft_type":"LORA"}'),
 * });
 * console.log(await src.exists("adapter_config.json")); // true
 * ```
 */
export function memorySource(
  location: string,
  files: Record<string, Uint8Array>,
): FileSource {
  const table = new Map(Object.entries(files));
  return {
    location,
    read(file) {
      const bytes = table.get(file);
      if (!bytes) {
        return Promise.reject(
          new FileNotFoundError(`no file ${file} in ${location}`, { file }),
        );
      }
      return Promise.resolve(bytes);
    },
    exists: (file) => Promise.resolve(table.has(file)),
  };
}
