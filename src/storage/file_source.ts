/**
 * The one interface every stage after "resolve" reads files through: a
 * folder-like set of named files, local or remote. Keeping it this small lets
 * local disk, the Hub cache, URLs, in-memory data and any storage of your own
 * (R2, S3, KV, the Cache API) be swapped freely.
 * @module
 */

/**
 * A read-only folder of files (a model or adapter repository). Names are
 * `/`-separated and relative to the folder (`config.json`,
 * `onnx/model.onnx_data`). To plug in another storage, implement the three
 * members: `read` returns the whole file as a `Uint8Array` (a plain one, not
 * a view into a shared pool) and throws `FileNotFoundError` (from
 * `errors.ts`) for a missing file; `exists` answers `false` for a missing file
 * and throws only when it cannot tell (storage unreachable). Refuse names
 * that leave the folder (`insideFolder` in `paths.ts` does that check).
 *
 * @example
 * ```ts
 * import type { FileSource } from "./file_source.ts";
 * import { FileNotFoundError } from "../errors.ts";
 * // A source over the browser's (or a worker's) Cache API.
 * function cacheApiSource(cache: Cache, base: string): FileSource {
 *   return {
 *     location: base,
 *     async read(file) {
 *       const hit = await cache.match(new URL(file, base));
 *       if (!hit) throw new FileNotFoundError("not in the cache", { file });
 *       return new Uint8Array(await hit.arrayBuffer());
 *     },
 *     exists: async (file) => (await cache.match(new URL(file, base))) !== undefined,
 *   };
 * }
 * ```
 */
export interface FileSource {
  /** Where the files come from: a path, a URL or `org/name@revision` (may be absolute: not for clients). */
  readonly location: string;
  /**
   * Reads a whole file given its path relative to the source's root
   * (`onnx/model.onnx`). Throws `FileNotFoundError` naming the file.
   */
  read(file: string): Promise<Uint8Array>;
  /** Whether the file exists. Never throws for a missing file. */
  exists(file: string): Promise<boolean>;
  /**
   * Opens a file for reads of byte ranges, some of them synchronous (sources
   * over local files and the Hub's disk cache have it): a model's weights
   * are then read from the file as onnxruntime copies them, never held whole
   * in JavaScript.
   * Resolves to undefined where this runtime cannot read synchronously (the
   * file is then `read` whole); throws like `read`.
   */
  openRanges?(file: string): Promise<RangeFile | undefined>;
}

/**
 * A file opened by {@linkcode FileSource.openRanges}. Reads check that the
 * file is still the one opened (not replaced or rewritten since) and throw
 * `FileAccessError` (from `errors.ts`) naming it when it is not.
 *
 * @example
 * ```ts
 * import type { RangeFile } from "./file_source.ts";
 * declare const file: RangeFile;
 * const header = new Uint8Array(8);
 * file.readInto(0, header);
 * console.log(file.size);
 * ```
 */
export interface RangeFile {
  /** The file's length in bytes. */
  readonly size: number;
  /** Fills `into` with the file's bytes from `offset`, synchronously. */
  readInto(offset: number, into: Uint8Array): void;
  /** The whole file, in a buffer of its own (the caller may detach it). */
  readAll(): Promise<Uint8Array>;
}
