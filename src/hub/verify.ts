/**
 * Checking a blob against the ETag it is named by, as the Hub defines them:
 * an LFS file's ETag is the SHA-256 of its bytes (64 hex digits), a regular
 * file's is its git blob id (SHA-1 of `blob <size>\0<bytes>`, 40 hex digits).
 * @module
 */

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
