/**
 * The runtime boundary for timers: a watchdog timer must not keep a process
 * alive on its own (a response body nobody reads would otherwise hold a
 * script open until the timer fires).
 * @module
 */

/**
 * Lets the process exit while `timer` is pending: `unref()` on Node and Bun
 * timer objects, `Deno.unrefTimer` for Deno's numeric ids; a no-op elsewhere.
 *
 * @example
 * ```ts
 * import { unrefTimer } from "./timers.ts";
 * const timer = setInterval(() => {}, 1000);
 * unrefTimer(timer);
 * clearInterval(timer);
 * ```
 */
export function unrefTimer(timer: unknown): void {
  const handle = timer as { unref?: () => void };
  if (typeof handle?.unref === "function") return handle.unref();
  const deno = (globalThis as { Deno?: { unrefTimer?: (id: number) => void } }).Deno;
  if (typeof timer === "number") deno?.unrefTimer?.(timer);
}
