/**
 * The one interface every stage after "resolve" reads files through: a
 * folder-like set of named files, local or remote. Keeping it this small lets
 * local disk, the Hub cache and in-memory test data be swapped freely.
 * @module
 */

/**
 * A read-only folder of files (a model or adapter repository).
 *
 * @example
 * ```ts
 * import { memorySource } from "./memory.ts";
 * const src = memorySource("demo", { "config.json": new TextEncoder().encode("{}") });
 * const bytes = await src.read("config.json");
 * ```
 */
export interface FileSource {
  /** Where the files come from, for messages: a path, or `org/name@revision`. */
  readonly location: string;
  /**
   * Reads a whole file given its path relative to the source's root
   * (`onnx/model.onnx`). Throws `FileNotFoundError` naming location and file.
   */
  read(file: string): Promise<Uint8Array>;
  /** Whether the file exists. Never throws for a missing file. */
  exists(file: string): Promise<boolean>;
}
