/**
 * The runtime boundary for environment variables. Deno, Bun and Node all
 * provide `process.env` (Deno when run with env access); browsers and some
 * edge runtimes have none, which reads as "unset".
 * @module
 */

/**
 * Reads an environment variable, or `undefined` where there is no
 * environment (or no permission to read it).
 *
 * @example
 * ```ts
 * import { readEnv } from "./env.ts";
 * const endpoint = readEnv("HF_ENDPOINT") ?? "https://huggingface.co";
 * ```
 */
export function readEnv(name: string): string | undefined {
  const proc = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  try {
    return proc?.env?.[name];
  } catch {
    // Deno without --allow-env throws on read: treat as unset.
    return undefined;
  }
}
