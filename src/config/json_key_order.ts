/**
 * Key order of a nested JSON object, read from the JSON text.
 *
 * PEFT's `rank_pattern` / `alpha_pattern` are Python dicts, and
 * `get_pattern_key` returns the *first* key that matches, in file order.
 * `JSON.parse` loses that order for integer-like keys (`"2"`, `"10"`), which
 * JS objects always list first, ascending. This scanner recovers the order
 * from the text itself.
 *
 * @module
 */

function skipWhitespace(text: string, at: number): number {
  while (at < text.length && " \t\n\r".includes(text[at])) at++;
  return at;
}

/** End index (exclusive) of the JSON string token starting at `at`. */
function stringEnd(text: string, at: number): number {
  let j = at + 1;
  while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
  return j + 1;
}

/** End index (exclusive) of the JSON value starting at `at` (text is valid JSON). */
function valueEnd(text: string, at: number): number {
  const c = text[at];
  if (c === '"') return stringEnd(text, at);
  if (c === "{" || c === "[") {
    let depth = 0;
    let j = at;
    while (j < text.length) {
      const d = text[j];
      if (d === '"') {
        j = stringEnd(text, j);
        continue;
      }
      if (d === "{" || d === "[") depth++;
      if (d === "}" || d === "]") depth--;
      j++;
      if (depth === 0) return j;
    }
    return j;
  }
  let j = at;
  while (j < text.length && !",}] \t\n\r".includes(text[j])) j++;
  return j;
}

/** Calls `visit(key, valueStart)` for each member of the object at `at`, in order. */
function forEachMember(text: string, at: number, visit: (key: string, valueAt: number) => void): void {
  let j = skipWhitespace(text, at + 1);
  while (j < text.length && text[j] === '"') {
    const keyEnd = stringEnd(text, j);
    const key = JSON.parse(text.slice(j, keyEnd)) as string;
    const valueAt = skipWhitespace(text, skipWhitespace(text, keyEnd) + 1); // past ":"
    visit(key, valueAt);
    j = skipWhitespace(text, valueEnd(text, valueAt));
    if (text[j] === ",") j = skipWhitespace(text, j + 1);
  }
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
 * import { jsonObjectKeyOrder } from "./json_key_order.ts";
 * jsonObjectKeyOrder('{"rank_pattern": {"net.2": 4, "2": 8}}', "rank_pattern"); // ["net.2", "2"]
 * Object.keys(JSON.parse('{"net.2": 4, "2": 8}')); // ["2", "net.2"]
 * ```
 */
export function jsonObjectKeyOrder(text: string, memberKey: string): string[] | undefined {
  const start = skipWhitespace(text, 0);
  if (text[start] !== "{") return undefined;
  let valueAt = -1;
  forEachMember(text, start, (key, at) => {
    if (key === memberKey) valueAt = at;
  });
  if (valueAt < 0 || text[valueAt] !== "{") return undefined;
  const keys: string[] = [];
  const seen = new Set<string>();
  forEachMember(text, valueAt, (key) => {
    if (!seen.has(key)) keys.push(key);
    seen.add(key);
  });
  return keys;
}
