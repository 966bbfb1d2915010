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

/**
 * Resolves after one turn of the event loop in which pending I/O (incoming
 * requests, socket writes) and due timers have run: `setImmediate` on Bun
 * and Node (a whole loop iteration, about 10 µs), `setTimeout(0)` elsewhere
 * (about a millisecond or more). Deno has `setImmediate` too, but its
 * immediates run before I/O is polled: a local HTTP request took ~100 of
 * them to complete against one timer turn.
 *
 * @example
 * ```ts
 * import { eventLoopTurn } from "./timers.ts";
 * await eventLoopTurn(); // whatever was waiting on the event loop has had its turn
 * ```
 */
export function eventLoopTurn(): Promise<void> {
  const g = globalThis as { setImmediate?: (callback: () => void) => unknown; Deno?: unknown };
  if (typeof g.setImmediate === "function" && g.Deno === undefined) {
    return new Promise((resolve) => g.setImmediate!(resolve));
  }
  return new Promise((resolve) => setTimeout(resolve, 0));
}
