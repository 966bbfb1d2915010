/**
 * Typed reads of single fields from a snake_case config record. Every failure
 * is an {@linkcode AdapterConfigError} keyed by the field name.
 *
 * @module
 */
import { AdapterConfigError } from "../errors.ts";
import { describeValue, isPlainObject } from "../json/values.ts";
import { PatternMap } from "./regex.ts";

/** A config record being read, and the file it came from (for messages). */
export interface FieldSource {
  /** snake_case field values. */
  readonly values: Readonly<Record<string, unknown>>;
  /** File name used in error messages. */
  readonly file?: string;
}

/**
 * Throw an {@linkcode AdapterConfigError} about field `key`.
 *
 * @example
 * ```ts
 * import { failField } from "./fields.ts";
 * try { failField({ values: {}, file: "a.json" }, "r", "must be positive"); } catch (e) { console.log((e as Error).message); } // "a.json: r: must be positive"
 * ```
 */
export function failField(src: FieldSource, key: string, message: string): never {
  throw new AdapterConfigError(message, { file: src.file, key });
}

function isNumber(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value);
}

/**
 * A boolean field; absent or `null` gives `fallback` (PEFT treats `None` as false).
 *
 * @example
 * ```ts
 * import { readBoolean } from "./fields.ts";
 * readBoolean({ values: { use_dora: true } }, "use_dora", false); // true
 * ```
 */
export function readBoolean(src: FieldSource, key: string, fallback: boolean): boolean {
  const v = src.values[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "boolean") failField(src, key, `must be true or false, got ${describeValue(v)}`);
  return v;
}

/**
 * A finite number field; absent gives `fallback`.
 *
 * @example
 * ```ts
 * import { readNumber } from "./fields.ts";
 * readNumber({ values: {} }, "lora_alpha", 8); // 8
 * ```
 */
export function readNumber(src: FieldSource, key: string, fallback: number): number {
  const v = src.values[key];
  if (v === undefined) return fallback;
  if (!isNumber(v)) failField(src, key, `must be a finite number, got ${describeValue(v)}`);
  return v;
}

/**
 * A positive integer field; absent gives `fallback`.
 *
 * @example
 * ```ts
 * import { readPositiveInteger } from "./fields.ts";
 * readPositiveInteger({ values: { r: 16 } }, "r", 8); // 16
 * ```
 */
export function readPositiveInteger(src: FieldSource, key: string, fallback: number): number {
  const v = src.values[key];
  if (v === undefined) return fallback;
  if (!isNumber(v) || !Number.isInteger(v) || v <= 0) {
    failField(src, key, `must be a positive integer, got ${describeValue(v)}`);
  }
  return v;
}

/**
 * A string-or-null field; absent gives `null`.
 *
 * @example
 * ```ts
 * import { readStringOrNull } from "./fields.ts";
 * readStringOrNull({ values: { revision: "main" } }, "revision"); // "main"
 * ```
 */
export function readStringOrNull(src: FieldSource, key: string): string | null {
  const v = src.values[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== "string") failField(src, key, `must be a string or null, got ${describeValue(v)}`);
  return v;
}

/**
 * A list of strings, or `null`; absent gives `null`.
 *
 * @example
 * ```ts
 * import { readStringListOrNull } from "./fields.ts";
 * readStringListOrNull({ values: { modules_to_save: ["lm_head"] } }, "modules_to_save"); // ["lm_head"]
 * ```
 */
export function readStringListOrNull(src: FieldSource, key: string): string[] | null {
  const v = src.values[key];
  if (v === undefined || v === null) return null;
  if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) {
    failField(src, key, `must be a list of strings or null, got ${describeValue(v)}`);
  }
  return [...v];
}

/**
 * A string (a regex, for PEFT), a list of strings, or `null`; absent gives `null`.
 *
 * @example
 * ```ts
 * import { readStringOrStringList } from "./fields.ts";
 * readStringOrStringList({ values: { target_modules: ".*q_proj" } }, "target_modules"); // ".*q_proj"
 * ```
 */
export function readStringOrStringList(src: FieldSource, key: string): string[] | string | null {
  const v = src.values[key];
  if (typeof v === "string") return v;
  if (v === undefined || v === null) return null;
  if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) {
    failField(src, key, `must be a string, a list of strings, or null, got ${describeValue(v)}`);
  }
  return [...v];
}

/**
 * An integer, a list of integers, or `null`; absent gives `null`.
 *
 * @example
 * ```ts
 * import { readIntegerOrIntegerList } from "./fields.ts";
 * readIntegerOrIntegerList({ values: { layers_to_transform: [0, 2] } }, "layers_to_transform"); // [0, 2]
 * ```
 */
export function readIntegerOrIntegerList(src: FieldSource, key: string): number[] | number | null {
  const v = src.values[key];
  if (v === undefined || v === null) return null;
  if (isNumber(v) && Number.isInteger(v)) return v;
  if (!Array.isArray(v) || !v.every((x) => isNumber(x) && Number.isInteger(x))) {
    failField(src, key, `must be an integer, a list of integers, or null, got ${describeValue(v)}`);
  }
  return [...v];
}

/**
 * A JSON object or `null`; absent gives `fallback`.
 *
 * @example
 * ```ts
 * import { readObjectOrNull } from "./fields.ts";
 * readObjectOrNull({ values: { loftq_config: {} } }, "loftq_config", null); // {}
 * ```
 */
export function readObjectOrNull(
  src: FieldSource,
  key: string,
  fallback: Record<string, unknown> | null,
): Record<string, unknown> | null {
  const v = src.values[key];
  if (v === undefined) return fallback;
  if (v === null) return null;
  if (!isPlainObject(v)) failField(src, key, `must be an object or null, got ${describeValue(v)}`);
  return v;
}

/** Own keys of `obj`, those listed in `order` first and in that order. */
function orderedKeys(obj: Record<string, unknown>, order: readonly string[] | undefined): string[] {
  if (!order) return Object.keys(obj);
  const listed = order.filter((k) => Object.hasOwn(obj, k));
  return [...listed, ...Object.keys(obj).filter((k) => !listed.includes(k))];
}

/**
 * A `{pattern: number}` mapping, returned as a {@linkcode PatternMap} in `order` when given
 * (keys of the JSON text), else in the object's own key order. Absent or
 * `null` gives an empty map. Values must satisfy `check`.
 *
 * @example
 * ```ts
 * import { readPatternMap } from "./fields.ts";
 * const m = readPatternMap({ values: { rank_pattern: { q_proj: 16 } } }, "rank_pattern", Number.isInteger, "an integer");
 * m.get("q_proj"); // 16
 * ```
 */
export function readPatternMap(
  src: FieldSource,
  key: string,
  check: (value: number) => boolean,
  expected: string,
  order?: readonly string[],
): PatternMap {
  const v = src.values[key];
  if (v === undefined || v === null) return new PatternMap(key);
  const entries: [string, unknown][] = v instanceof Map
    ? [...v.entries()]
    : isPlainObject(v)
    ? orderedKeys(v, order).map((k) => [k, v[k]])
    : failField(src, key, `must be an object mapping module patterns to numbers, got ${describeValue(v)}`);
  const map = new PatternMap(key);
  for (const [pattern, value] of entries) {
    if (typeof pattern !== "string" || !isNumber(value) || !check(value)) {
      failField(
        src,
        key,
        `value for pattern ${JSON.stringify(pattern)} must be ${expected}, got ${describeValue(value)}`,
      );
    }
    map.set(pattern, value);
  }
  return map;
}
