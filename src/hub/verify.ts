/**
 * Checking a blob against the ETag it is named by, as the Hub defines them:
 * an LFS file's ETag is the SHA-256 of its bytes (64 hex digits), a regular
 * file's is its git blob id (SHA-1 of `blob <size>\0<bytes>`, 40 hex digits).
 * @module
 */
import { incrementalHash } from "../runtime/digest.ts";
import { eventLoopTurn } from "../runtime/timers.ts";
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

/**
 * A check of bytes given in order against the ETag that names them.
 *
 * @example
 * ```ts
 * import { etagCheck } from "./verify.ts";
 * const check = await etagCheck("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", 0);
 * console.log(check?.matches()); // true (or no check where the runtime cannot hash incrementally)
 * ```
 */
export interface EtagCheck {
  /** Hashes the next bytes. */
  update(bytes: Uint8Array): void;
  /** Whether all the bytes given are the content the ETag names (once, at the end). */
  matches(): boolean;
}

/**
 * A check of `size` bytes against `etag` fed chunk by chunk, as
 * {@linkcode matchesEtag} checks them whole; undefined where the ETag is
 * no hash (nothing to check) or this runtime cannot hash incrementally
 * (then hold the bytes and use `matchesEtag`).
 *
 * @example
 * ```ts
 * import { etagCheck } from "./verify.ts";
 * const bytes = new TextEncoder().encode("hello");
 * const check = await etagCheck("b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0", bytes.length);
 * check?.update(bytes);
 * console.log(check?.matches()); // true: the git blob id of "hello"
 * ```
 */
export async function etagCheck(etag: string, size: number): Promise<EtagCheck | undefined> {
  const algorithm = /^[0-9a-f]{64}$/.test(etag) ? "SHA-256" : /^[0-9a-f]{40}$/.test(etag) ? "SHA-1" : undefined;
  const hash = algorithm && await incrementalHash(algorithm);
  if (!hash) return undefined;
  if (algorithm === "SHA-1") hash.update(new TextEncoder().encode(`blob ${size}\0`));
  return { update: (bytes) => hash.update(bytes), matches: () => hash.hex() === etag };
}

/** Bytes hashed per read when a file is checked range by range. */
const CHUNK = 8 << 20;

/**
 * {@linkcode matchesEtag} for a file opened for ranged reads: hashed chunk
 * by chunk through `file.readInto` (each read refusing a file changed since
 * it was opened), so the bytes checked are the opened file's and the file
 * is never held whole; where the runtime cannot hash incrementally, the
 * file is read whole and hashed. The reads and the hashing are synchronous,
 * so the event loop gets a turn after each chunk: a server checking a
 * 600 MiB base keeps answering (blocked ~10 ms at a time, not ~0.5 s).
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
  if (!/^(?:[0-9a-f]{40}|[0-9a-f]{64})$/.test(etag)) return undefined; // no hash: nothing to check
  const check = await etagCheck(etag, file.size);
  if (!check) return await matchesEtag(etag, await file.readAll());
  const chunk = new Uint8Array(Math.min(CHUNK, file.size));
  for (let at = 0; at < file.size; at += chunk.length) {
    const part = chunk.subarray(0, Math.min(chunk.length, file.size - at));
    file.readInto(at, part);
    check.update(part);
    if (at + part.length < file.size) await eventLoopTurn();
  }
  return check.matches();
}
