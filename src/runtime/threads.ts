/**
 * How many threads this runtime lets WebAssembly use: the runtime boundary
 * for `navigator.hardwareConcurrency`, `crossOriginIsolated` and Node's
 * `os.availableParallelism()`.
 * @module
 */

/** The globals consulted here. */
export interface ThreadGlobals {
  Deno?: unknown;
  Bun?: unknown;
  process?: { versions?: { node?: string } };
  navigator?: { hardwareConcurrency?: number };
  crossOriginIsolated?: boolean;
  Worker?: unknown;
  SharedArrayBuffer?: unknown;
  document?: unknown;
}

/**
 * Whether this is a server runtime (Deno, Bun, Node), not a page or a worker of one.
 *
 * @example
 * ```ts
 * import { isServerRuntime } from "./threads.ts";
 * console.log(isServerRuntime()); // true in Deno
 * ```
 */
export function isServerRuntime(g: ThreadGlobals = globalThis as ThreadGlobals): boolean {
  return g.Deno !== undefined || g.Bun !== undefined || g.process?.versions?.node !== undefined;
}

/**
 * The default number of WebAssembly threads: every core in Deno, Bun and
 * Node; in a browser every core when the page is cross-origin isolated
 * (threads need `SharedArrayBuffer`), else 1; 1 where there are no workers
 * or no `SharedArrayBuffer` at all (edge runtimes such as workerd).
 *
 * @example
 * ```ts
 * import { defaultNumThreads } from "./threads.ts";
 * console.log(await defaultNumThreads()); // e.g. 2 on a 2-core machine in Deno
 * ```
 */
export async function defaultNumThreads(): Promise<number> {
  const g = globalThis as ThreadGlobals;
  if (g.SharedArrayBuffer === undefined) return 1;
  if (isServerRuntime(g)) {
    const cores = g.navigator?.hardwareConcurrency;
    if (cores && cores > 0) return cores;
    try {
      // Node 20 has no global navigator.
      const os = await import("node:os");
      return Math.max(1, os.availableParallelism());
    } catch {
      return 1;
    }
  }
  if (g.Worker === undefined || g.crossOriginIsolated !== true) return 1;
  return Math.max(1, g.navigator?.hardwareConcurrency ?? 1);
}
