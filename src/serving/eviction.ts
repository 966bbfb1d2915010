/**
 * Which adapters to evict so a new one fits: least recently used first,
 * only among those loaded and idle (no request uses them, none still loading).
 * @module
 */

/**
 * What eviction needs to know of a held adapter.
 *
 * @example
 * ```ts
 * import type { Evictable } from "./eviction.ts";
 * const idle: Evictable = { status: "ready", inUse: 0, tick: 3, bytes: 1024 };
 * ```
 */
export interface Evictable {
  /** `loading` until its load finishes. */
  readonly status: "loading" | "ready";
  /** Requests using it now. */
  readonly inUse: number;
  /** When it was last used, as a counter (larger is more recent). */
  readonly tick: number;
  /** Bytes it holds (0 while loading). */
  readonly bytes: number;
}

/**
 * The adapters to evict, least recently used first, so that `held` plus one
 * adapter of `bytes` fits within `maxCount` adapters and `maxBytes` bytes;
 * undefined when evicting every idle adapter is not enough.
 *
 * @example
 * ```ts
 * import { planEviction } from "./eviction.ts";
 * const a = { status: "ready", inUse: 0, tick: 1, bytes: 10 } as const;
 * const b = { status: "ready", inUse: 0, tick: 2, bytes: 10 } as const;
 * planEviction([a, b], 10, { maxCount: 2, maxBytes: Infinity }); // [a]
 * ```
 */
export function planEviction<T extends Evictable>(
  held: readonly T[],
  bytes: number,
  limits: { maxCount: number; maxBytes: number; drainingBytes?: number },
): T[] | undefined {
  let count = held.length + 1;
  let total = (limits.drainingBytes ?? 0) + bytes + held.reduce((sum, other) => sum + other.bytes, 0);
  const idle = held.filter((other) => other.status === "ready" && other.inUse === 0).sort((a, b) => a.tick - b.tick);
  const victims: T[] = [];
  while (count > limits.maxCount || total > limits.maxBytes) {
    const victim = idle.shift();
    if (!victim) return undefined;
    victims.push(victim);
    count--;
    total -= victim.bytes;
  }
  return victims;
}
