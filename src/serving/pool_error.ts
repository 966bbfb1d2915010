/**
 * {@linkcode PoolError}: why the adapter pool refused a request, by kind,
 * independent of HTTP (src/server maps kinds to statuses).
 * @module
 */

/**
 * What went wrong: an unsafe adapter id or revision; no such model; a name
 * already taken or an adapter still loading; no room (every loaded adapter
 * in use); too many generations at once; an adapter larger than the whole
 * byte budget.
 *
 * @example
 * ```ts
 * import type { PoolErrorKind } from "./pool_error.ts";
 * const kind: PoolErrorKind = "capacity";
 * ```
 */
export type PoolErrorKind = "invalid" | "not_found" | "conflict" | "capacity" | "busy" | "too_large";

/**
 * An error of the adapter pool or of an adapter id.
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
  /** The request field at fault (`id`, `revision`), when one is. */
  readonly field?: string;

  /** A refusal of this kind; `field` names the input at fault. */
  constructor(readonly kind: PoolErrorKind, message: string, options: { cause?: unknown; field?: string } = {}) {
    super(message, { cause: options.cause });
    this.name = "PoolError";
    this.field = options.field;
  }
}
