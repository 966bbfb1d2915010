/**
 * The admin bearer token check, in constant time: both sides are hashed
 * with SHA-256 and the digests compared byte by byte without stopping
 * early, so neither the token's content nor its length leaks through timing.
 * @module
 */

async function digest(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}

/**
 * Whether two secrets are equal, taking the same time wherever they differ.
 *
 * @example
 * ```ts
 * import { secretsEqual } from "./auth.ts";
 * await secretsEqual("s3cret", "s3cret"); // true
 * await secretsEqual("s3cret", "guess");  // false
 * ```
 */
export async function secretsEqual(presented: string, expected: string): Promise<boolean> {
  const [a, b] = await Promise.all([digest(presented), digest(expected)]);
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/**
 * The token of an `Authorization: Bearer <token>` header, or undefined.
 *
 * @example
 * ```ts
 * import { bearerToken } from "./auth.ts";
 * bearerToken("Bearer abc"); // "abc"
 * bearerToken("Basic abc");  // undefined
 * ```
 */
export function bearerToken(header: string | null | undefined): string | undefined {
  const match = header?.match(/^Bearer[ \t]+(\S+)[ \t]*$/i);
  return match?.[1];
}
