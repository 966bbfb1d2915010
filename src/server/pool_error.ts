/**
 * {@linkcode PoolError}: why the adapter pool refused a request, by kind,
 * independent of HTTP (the routes map kinds to statuses).
 * @module
 */

/**
 * What went wrong: no such model; a name already taken or an adapter still
 * loading; no room (every loaded adapter in use, or too many requests); an
 * adapter larger than the whole byte budget.
 *
 * @example
 * ```ts
 * import type { PoolErrorKind } from "./pool_error.ts";
 * const kind: PoolErrorKind = "capacity";
 * ```
 */
export type PoolErrorKind = "not_found" | "conflict" | "capacity" | "busy" | "too_large";

/**
 * An error of the adapter pool.
 *
 * @example
 * ```ts
 * import { PoolError } from "./pool_error.ts";
 * try {
 *   throw new PoolError("not_found", "no model named python");
 * } catch (e) {
 *   if (e instanceof PoolError && e.kind === "not_found") console.log(e.message);
 * }
 * ```
 */
export class PoolError extends Error {
  /** A refusal of this kind. */
  constructor(readonly kind: PoolErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "PoolError";
  }
}
