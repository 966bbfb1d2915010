/**
 * A lexical pass over JSON text that `JSON.parse` has already accepted,
 * finding what `JSON.parse` hides: duplicate object keys (it silently keeps
 * the last) and numbers not written as plain unsigned integers (`1.0`,
 * `1e3`, `-0` parse to integers, but the reference implementation, which
 * reads offsets and shapes as `usize`, rejects them).
 *
 * @module
 */

/** Where in the JSON document an issue is: keys and array indices from the root. */
export type JsonPath = (string | number)[];

/** What {@linkcode scanJson} found; both fields absent for a clean document. */
export interface JsonScanResult {
  /** The first key that appears twice in one object, with the path of that object. */
  duplicate?: { path: JsonPath; key: string };
  /** The first number literal that is not a plain unsigned integer, with its path. */
  nonInteger?: { path: JsonPath; literal: string };
}

interface Frame {
  /** Keys seen so far; `null` for an array. */
  keys: Set<string> | null;
  /** Current key (object) or index (array) of the value being read. */
  at: string | number;
}

const PLAIN_UNSIGNED = /^(?:0|[1-9][0-9]*)$/;

function isWhitespace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/** Characters that can appear in a number literal once it has started. */
function isNumberChar(c: number): boolean {
  // digits, '+', '-', '.', 'e', 'E'
  return (c >= 0x30 && c <= 0x39) || c === 0x2b || c === 0x2d || c === 0x2e ||
    c === 0x65 || c === 0x45;
}

/**
 * Scans JSON text for duplicate keys and non-plain-integer numbers. The text
 * must already be valid JSON (check with `JSON.parse` first); the scan stops
 * at the first duplicate key.
 *
 * @example
 * ```ts
 * import { scanJson } from "./json_scan.ts";
 * const r = scanJson('{"a": {"x": 1.0}, "a": 2}');
 * console.log(r.duplicate); // { path: [], key: "a" }
 * console.log(scanJson('{"a": [1, 2.5]}').nonInteger); // { path: ["a", 1], literal: "2.5" }
 * ```
 */
export function scanJson(text: string): JsonScanResult {
  const result: JsonScanResult = {};
  const stack: Frame[] = [];
  const path = (): JsonPath => stack.map((f) => f.at);
  let i = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      stack.push({ keys: c === 0x7b ? new Set() : null, at: 0 });
      i++;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
      i++;
    } else if (c === 0x2c /* , */) {
      const top = stack[stack.length - 1];
      if (top.keys === null) top.at = (top.at as number) + 1;
      i++;
    } else if (c === 0x22 /* " */) {
      let end = i + 1;
      let escaped = false;
      while (text.charCodeAt(end) !== 0x22) {
        // Skip the escaped character, so `\"` does not end the string.
        if (text.charCodeAt(end) === 0x5c) {
          end++;
          escaped = true;
        }
        end++;
      }
      const raw = text.slice(i, end + 1);
      i = end + 1;
      let next = i;
      while (isWhitespace(text.charCodeAt(next))) next++;
      const top = stack[stack.length - 1];
      if (top?.keys && text.charCodeAt(next) === 0x3a /* : */) {
        // Compare decoded keys: "a" and "\u0061" are the same key.
        const key: string = escaped ? JSON.parse(raw) : raw.slice(1, -1);
        if (top.keys.has(key)) {
          result.duplicate = { path: path().slice(0, -1), key };
          return result;
        }
        top.keys.add(key);
        top.at = key;
      }
    } else if (c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
      let end = i;
      while (end < text.length && isNumberChar(text.charCodeAt(end))) end++;
      const literal = text.slice(i, end);
      if (!result.nonInteger && !PLAIN_UNSIGNED.test(literal)) {
        result.nonInteger = { path: path(), literal };
      }
      i = end;
    } else {
      // Whitespace, ':', and the letters of true/false/null.
      i++;
    }
  }
  return result;
}
