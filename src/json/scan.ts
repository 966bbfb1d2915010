/**
 * One lexical pass over JSON text that `JSON.parse` has already accepted,
 * finding what `JSON.parse` hides:
 * - duplicate object keys (it silently keeps the last);
 * - numbers not written as plain unsigned integers (`1.0`, `1e3`, `-0` parse
 *   to integers, but the safetensors reference implementation, which reads
 *   offsets and shapes as `usize`, rejects them);
 * - the source order of an object's keys (JS objects list integer-like keys
 *   first, ascending, while PEFT's `get_pattern_key` takes the first match
 *   in file order).
 *
 * @module
 */

/**
 * Where in the JSON document something is: keys and array indices from the root.
 *
 * @example
 * ```ts
 * import type { JsonPath } from "./scan.ts";
 * const path: JsonPath = ["w", "data_offsets", 1];
 * ```
 */
export type JsonPath = (string | number)[];

/**
 * What {@linkcode scanJson} found; both fields absent for a clean document.
 *
 * @example
 * ```ts
 * import type { JsonScanResult } from "./scan.ts";
 * const clean: JsonScanResult = {};
 * ```
 */
export interface JsonScanResult {
  /** The first key that appears twice in one object, with the path of that object. */
  duplicate?: { path: JsonPath; key: string };
  /** The first number literal that is not a plain unsigned integer, with its path. */
  nonInteger?: { path: JsonPath; literal: string };
}

/** What {@linkcode walkJson} reports, in document order. */
interface JsonVisitor {
  /** A value starts at `path`. */
  value?(path: JsonPath, kind: "object" | "array" | "string" | "number" | "literal", literal: string): void;
  /** A key of the object at `path`; `repeated` when the object already had it. */
  key?(path: JsonPath, key: string, repeated: boolean): void;
}

interface Frame {
  /** Keys seen so far; `null` for an array. */
  keys: Set<string> | null;
  /** Current key (object) or index (array) of the value being read. */
  at: string | number;
  /** An object waiting for its next key (after `{` or `,`). */
  wantsKey: boolean;
}

const PLAIN_UNSIGNED = /^(?:0|[1-9][0-9]*)$/;

/** Characters that can appear in a number literal once it has started: digits, `+ - . e E`. */
function isNumberChar(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || c === 0x2b || c === 0x2d || c === 0x2e || c === 0x65 || c === 0x45;
}

/** Index just past the string token that starts at `at` (text[at] is `"`). */
function stringEnd(text: string, at: number): number {
  let end = at + 1;
  while (end < text.length && text.charCodeAt(end) !== 0x22) end += text.charCodeAt(end) === 0x5c ? 2 : 1;
  return end + 1;
}

/** Walks valid JSON text once, reporting every value and key with its path. */
function walkJson(text: string, visit: JsonVisitor): void {
  const stack: Frame[] = [];
  const path = (): JsonPath => stack.map((f) => f.at);
  let i = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    const top = stack[stack.length - 1];
    if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      visit.value?.(path(), c === 0x7b ? "object" : "array", text[i]);
      stack.push({ keys: c === 0x7b ? new Set() : null, at: 0, wantsKey: c === 0x7b });
      i++;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
      i++;
    } else if (c === 0x2c /* , */) {
      if (top.keys === null) top.at = (top.at as number) + 1;
      else top.wantsKey = true;
      i++;
    } else if (c === 0x22 /* " */) {
      const end = stringEnd(text, i);
      const raw = text.slice(i, end);
      if (top?.keys && top.wantsKey) {
        // Compare decoded keys: "a" and "\u0061" are the same key.
        const key: string = raw.includes("\\") ? JSON.parse(raw) : raw.slice(1, -1);
        const repeated = top.keys.has(key);
        top.keys.add(key);
        top.wantsKey = false;
        visit.key?.(path().slice(0, -1), key, repeated);
        top.at = key;
      } else {
        visit.value?.(path(), "string", raw);
      }
      i = end;
    } else if (c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
      let end = i;
      while (end < text.length && isNumberChar(text.charCodeAt(end))) end++;
      visit.value?.(path(), "number", text.slice(i, end));
      i = end;
    } else if (c === 0x74 /* t */ || c === 0x66 /* f */ || c === 0x6e /* n */) {
      const literal = c === 0x74 ? "true" : c === 0x66 ? "false" : "null";
      visit.value?.(path(), "literal", literal);
      i += literal.length;
    } else {
      // Whitespace and ':'.
      i++;
    }
  }
}

/**
 * Scans JSON text for duplicate keys and non-plain-integer numbers. The text
 * must already be valid JSON (check with `JSON.parse` first).
 *
 * @example
 * ```ts
 * import { scanJson } from "./scan.ts";
 * const r = scanJson('{"a": {"x": 1.0}, "a": 2}');
 * console.log(r.duplicate); // { path: [], key: "a" }
 * console.log(scanJson('{"a": [1, 2.5]}').nonInteger); // { path: ["a", 1], literal: "2.5" }
 * ```
 */
export function scanJson(text: string): JsonScanResult {
  const result: JsonScanResult = {};
  walkJson(text, {
    key(path, key, repeated) {
      if (repeated && !result.duplicate) result.duplicate = { path, key };
    },
    value(path, kind, literal) {
      if (kind === "number" && !result.nonInteger && !PLAIN_UNSIGNED.test(literal)) {
        result.nonInteger = { path, literal };
      }
    },
  });
  return result;
}

/**
 * Keys, in source order, of the object stored under `memberKey` in the
 * top-level JSON object `text`. As in Python's `json` (and `JSON.parse`), a
 * repeated member takes its value from the last occurrence, and a repeated key
 * keeps the position of its first occurrence. Returns `undefined` when the
 * member is absent or not an object. `text` must be valid JSON.
 *
 * @example
 * ```ts
 * import { jsonObjectKeyOrder } from "./scan.ts";
 * jsonObjectKeyOrder('{"rank_pattern": {"net.2": 4, "2": 8}}', "rank_pattern"); // ["net.2", "2"]
 * Object.keys(JSON.parse('{"net.2": 4, "2": 8}')); // ["2", "net.2"]
 * ```
 */
export function jsonObjectKeyOrder(text: string, memberKey: string): string[] | undefined {
  let keys: string[] | undefined;
  const isMember = (path: JsonPath) => path.length === 1 && path[0] === memberKey;
  walkJson(text, {
    value(path, kind) {
      if (isMember(path)) keys = kind === "object" ? [] : undefined;
    },
    key(path, key, repeated) {
      if (keys && !repeated && isMember(path)) keys.push(key);
    },
  });
  return keys;
}
