/**
 * Cross-process file locks, compatible with Python's `filelock` (which
 * `huggingface_hub` uses on `.locks/<repo folder>/<etag>.lock`): on Unix
 * both take an exclusive `flock` on the lock file, which is left in place.
 * Deno has `flock` (`Deno.FsFile.lock`); Node and Bun have no file-lock
 * API, so there the lock is a no-op and correctness rests on what the cache
 * does anyway: every writer uses its own temp file, renamed atomically.
 * @module
 */
import { localFs } from "./fs.ts";

/**
 * Releases a lock taken with {@linkcode lockFile}.
 *
 * @example
 * ```ts
 * import { lockFile, type Unlock } from "./file_lock.ts";
 * const unlock: Unlock = await lockFile("/tmp/demo.lock");
 * await unlock();
 * ```
 */
export type Unlock = () => Promise<void>;

interface DenoLockable {
  lock(exclusive?: boolean): Promise<void>;
  close(): void;
}

interface DenoFiles {
  open(path: string, options: { read?: boolean; write?: boolean; create?: boolean }): Promise<DenoLockable>;
}

/**
 * Takes an exclusive lock on `path` (created, with its folder, when
 * missing), waiting while another process holds it.
 *
 * @example
 * ```ts
 * import { lockFile } from "./file_lock.ts";
 * const unlock = await lockFile("/tmp/peft-edge-demo/.locks/x.lock");
 * try {
 *   // ... write the blob ...
 * } finally {
 *   await unlock();
 * }
 * ```
 */
export async function lockFile(path: string): Promise<Unlock> {
  const deno = (globalThis as { Deno?: DenoFiles & { version?: unknown } }).Deno;
  const slash = path.lastIndexOf("/");
  if (slash > 0) await (await localFs()).mkdirp(path.slice(0, slash));
  if (!deno?.open || (globalThis as { Bun?: unknown }).Bun !== undefined) return () => Promise.resolve();
  const file = await deno.open(path, { read: true, write: true, create: true });
  try {
    await file.lock(true);
  } catch (error) {
    file.close();
    throw error;
  }
  // Closing the file releases the flock.
  return () => Promise.resolve(file.close());
}
