/**
 * Incremental hashing, for checking a file too large to hold whole just to
 * hash it. WebCrypto hashes whole buffers only; `node:crypto` (Deno, Bun,
 * Node) takes the bytes chunk by chunk, so it is loaded lazily here and is
 * absent in browsers and edge runtimes.
 * @module
 */

/**
 * A hash being computed over bytes given in order.
 *
 * @example
 * ```ts
 * import { incrementalHash, type IncrementalHash } from "./digest.ts";
 * const hash: IncrementalHash | undefined = await incrementalHash("SHA-256");
 * hash?.update(new TextEncoder().encode("abc"));
 * console.log(hash?.hex()); // "ba7816bf..."
 * ```
 */
export interface IncrementalHash {
  /** Hashes the next bytes. */
  update(bytes: Uint8Array): void;
  /** The digest in lower-case hex; the hash takes no bytes afterwards. */
  hex(): string;
}

interface NodeCrypto {
  createHash(algorithm: string): { update(bytes: Uint8Array): unknown; digest(encoding: "hex"): string };
}

/**
 * An incremental hash, or undefined where this runtime has no
 * `node:crypto` (hash whole bytes with WebCrypto there).
 *
 * @example
 * ```ts
 * import { incrementalHash } from "./digest.ts";
 * const hash = await incrementalHash("SHA-1");
 * if (hash) {
 *   for (const part of ["a", "bc"]) hash.update(new TextEncoder().encode(part));
 *   console.log(hash.hex()); // "a9993e36..."
 * }
 * ```
 */
export async function incrementalHash(algorithm: "SHA-1" | "SHA-256"): Promise<IncrementalHash | undefined> {
  const crypto = await import("node:crypto").then((m) => m as unknown as NodeCrypto, () => undefined);
  if (typeof crypto?.createHash !== "function") return undefined;
  const hash = crypto.createHash(algorithm === "SHA-1" ? "sha1" : "sha256");
  return {
    update: (bytes) => void hash.update(bytes),
    hex: () => hash.digest("hex"),
  };
}
