/**
 * Checking a blob against the ETag it is named by, as the Hub defines them:
 * an LFS file's ETag is the SHA-256 of its bytes (64 hex digits), a regular
 * file's is its git blob id (SHA-1 of `blob <size>\0<bytes>`, 40 hex digits).
 * @module
 */
import { incrementalHash } from "../runtime/digest.ts";
import type { RangeFile } from "../storage/file_source.ts";

async function hex(algorithm: "SHA-1" | "SHA-256", bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest(algorithm, bytes as Uint8Array<ArrayBuffer>));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Whether `bytes` are the content `etag` names; `undefined` when the ETag is
 * neither a SHA-256 nor a git blob id (nothing to check against).
 *
 * @example
 * ```ts
 * import { matchesEtag } from "./verify.ts";
 * const empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
 * console.log(await matchesEtag(empty, new Uint8Array())); // true
 * ```
 */
export async function matchesEtag(etag: string, bytes: Uint8Array): Promise<boolean | undefined> {
  if (/^[0-9a-f]{64}$/.test(etag)) return await hex("SHA-256", bytes) === etag;
  if (/^[0-9a-f]{40}$/.test(etag)) {
    const head = new TextEncoder().encode(`blob ${bytes.length}\0`);
    const all = new Uint8Array(head.length + bytes.length);
    all.set(head);
    all.set(bytes, head.length);
    return await hex("SHA-1", all) === etag;
  }
  return undefined;
}

/** Bytes hashed per read when a file is checked range by range. */
const CHUNK = 8 << 20;

/**
 * {@linkcode matchesEtag} for a file opened for ranged reads: hashed chunk
 * by chunk through `file.readInto` (each read refusing a file changed since
 * it was opened), so the bytes checked are the opened file's and the file
 * is never held whole; where the runtime cannot hash incrementally, the
 * file is read whole and hashed.
 *
 * @example
 * ```ts
 * import { localSource } from "../storage/local.ts";
 * import { matchesEtagRanges } from "./verify.ts";
 * const file = await localSource("tests/fixtures/llama-tiny").openRanges!("config.json");
 * console.log(await matchesEtagRanges("0".repeat(64), file!)); // false
 * ```
 */
export async function matchesEtagRanges(etag: string, file: RangeFile): Promise<boolean | undefined> {
  const algorithm = /^[0-9a-f]{64}$/.test(etag) ? "SHA-256" : /^[0-9a-f]{40}$/.test(etag) ? "SHA-1" : undefined;
  if (algorithm === undefined) return undefined;
  const hash = await incrementalHash(algorithm);
  if (!hash) return await matchesEtag(etag, await file.readAll());
  if (algorithm === "SHA-1") hash.update(new TextEncoder().encode(`blob ${file.size}\0`));
  const chunk = new Uint8Array(Math.min(CHUNK, file.size));
  for (let at = 0; at < file.size; at += chunk.length) {
    const part = chunk.subarray(0, Math.min(chunk.length, file.size - at));
    file.readInto(at, part);
    hash.update(part);
  }
  return hash.hex() === etag;
}
