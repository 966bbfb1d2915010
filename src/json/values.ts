/**
 * Helpers for values that came out of `JSON.parse`, shared by the config and
 * safetensors readers.
 *
 * @module
 */

/**
 * Is `value` a plain JSON object (not null, not an array, not a Map or class
 * instance)?
 *
 * @example
 * ```ts
 * import { isPlainObject } from "./values.ts";
 * console.log(isPlainObject({ a: 1 }), isPlainObject([1]), isPlainObject(null)); // true false false
 * ```
 */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * Short JSON rendering of a value for error messages (at most 80
 * characters).
 *
 * @example
 * ```ts
 * import { describeValue } from "./values.ts";
 * console.log(describeValue([1, "a"])); // [1,"a"]
 * ```
 */
export function describeValue(value: unknown): string {
  if (value === undefined) return "undefined";
  let s: string;
  try {
    s = JSON.stringify(value) ?? String(value);
  } catch {
    s = String(value);
  }
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}
