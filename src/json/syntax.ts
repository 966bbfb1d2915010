/**
 * A `JSON.parse` failure described without quoting the text: engines put
 * a piece of the input in their messages (`Unexpected token 'r',
 * "root:x:0:0"... is not valid JSON`), and a file's contents must never
 * reach an error a client may see.
 * @module
 */

/**
 * "syntax error at position N" (or just "syntax error"), from what
 * `JSON.parse` threw; never any of the input.
 *
 * @example
 * ```ts
 * import { jsonSyntaxError } from "./syntax.ts";
 * try {
 *   JSON.parse("root:x:0:0");
 * } catch (e) {
 *   console.log(jsonSyntaxError(e)); // "syntax error at position 0" (the position depends on the engine)
 * }
 * ```
 */
export function jsonSyntaxError(cause: unknown): string {
  const message = cause instanceof Error ? cause.message : "";
  const position = message.match(/at position (\d+)/) ?? message.match(/column (\d+)/);
  if (/Unexpected end|end of (JSON )?input|unterminated/i.test(message)) return "syntax error: the JSON ends early";
  return position ? `syntax error at position ${position[1]}` : "syntax error";
}
