/**
 * Base64 decoding with the web-standard `atob` (Deno, Bun, Node, browsers).
 *
 * @module
 */

/**
 * Decodes standard (RFC 4648, padded) base64 to bytes.
 *
 * @example
 * ```ts
 * import { decodeBase64 } from "./base64.ts";
 * console.log(decodeBase64("AGFzbQ==")); // Uint8Array [0, 97, 115, 109]
 * ```
 */
export function decodeBase64(text: string): Uint8Array<ArrayBuffer> {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
