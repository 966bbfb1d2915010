/**
 * Python `re` patterns, run by JavaScript `RegExp`.
 *
 * PEFT matches module names with Python's `re.fullmatch` (string
 * `target_modules` / `exclude_modules`) and `re.match` (layer indices,
 * `rank_pattern` / `alpha_pattern` keys, `modules_to_save`). The two regex
 * dialects differ in ways that change results, so a pattern is translated
 * token by token rather than handed to `RegExp` as is:
 *
 * - `.` is `[^\n]` (Python) vs "not a line terminator" (JS); `$` also matches
 *   before a final `\n` in Python; `\A` / `\Z` do not exist in JS.
 * - `(?P<name>…)`, `(?P=name)`, `{,n}`, `(?#…)`, leading `(?imsx)` flags and
 *   verbose mode are Python-only syntax.
 * - `[]…]` starts a class containing `]` in Python, an empty class in JS.
 * - Python rejects unknown escapes such as `\e`; JS silently reads them as
 *   literals, so they are reported instead of mis-matching.
 * - Atomic groups, possessive quantifiers, conditionals and `\N{…}` have no
 *   JS equivalent and raise {@linkcode UnsupportedError}.
 *
 * Known residual difference: `\d`, `\w`, `\s`, `\b` are ASCII-only in JS but
 * Unicode-aware for Python `str` patterns. Module names are ASCII in practice.
 *
 * @module
 */
import { AdapterConfigError, type ErrorContext, UnsupportedError } from "../errors.ts";

/** Which Python entry point the pattern is used with: `re.match` or `re.fullmatch`. */
export type PythonMatchMode = "match" | "fullmatch";

/** A Python pattern rewritten as a JS `RegExp` source and flags (not yet anchored). */
export interface TranslatedRegex {
  /** JS pattern source, equivalent to the Python pattern at any position. */
  readonly source: string;
  /** JS flags (`"i"` or `""`); `m`, `s`, `x` are folded into the source. */
  readonly flags: string;
}

interface Flags {
  readonly i: boolean;
  readonly m: boolean;
  readonly s: boolean;
  readonly x: boolean;
}

const HEX = /^[0-9a-fA-F]+$/;

function isOct(c: string | undefined): boolean {
  return c !== undefined && c >= "0" && c <= "7";
}

function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= "0" && c <= "9";
}
const SIMPLE_ESCAPES: Readonly<Record<string, string>> = {
  a: "\\x07",
  f: "\\f",
  n: "\\n",
  r: "\\r",
  t: "\\t",
  v: "\\v",
};
const CATEGORY_ESCAPES = "dDsSwW";

/** `\xHH` / `\uHHHH` for one UTF-16 code unit: safe in and out of classes. */
function codeUnitEscape(unit: number): string {
  return unit < 0x100 ? `\\x${unit.toString(16).padStart(2, "0")}` : `\\u${unit.toString(16).padStart(4, "0")}`;
}

function isAsciiLetter(c: string): boolean {
  return (c >= "a" && c <= "z") || (c >= "A" && c <= "Z");
}

function isHighSurrogate(c: string | undefined): boolean {
  return c !== undefined && c.charCodeAt(0) >= 0xd800 && c.charCodeAt(0) <= 0xdbff;
}

/**
 * Translate a Python `re` pattern (a `str` pattern, Python 3.11+ rules) to an
 * equivalent unanchored JS regex source.
 *
 * @throws {AdapterConfigError} when Python itself would reject the pattern.
 * @throws {UnsupportedError} for Python constructs JS regexes cannot express.
 *
 * @example
 * ```ts
 * import { translatePythonRegex } from "./python_regex.ts";
 * translatePythonRegex("(?P<x>q|v)_proj$").source; // "(?<x>q|v)_proj(?=\\n?$)"
 * ```
 */
export function translatePythonRegex(pattern: string, context: ErrorContext = {}): TranslatedRegex {
  const bad = (message: string): never => {
    throw new AdapterConfigError(`invalid Python regex ${JSON.stringify(pattern)}: ${message}`, context);
  };
  const unsupported = (what: string): never => {
    throw new UnsupportedError(
      `Python regex ${JSON.stringify(pattern)} uses ${what}, which JavaScript regexes cannot express`,
      context,
    );
  };

  const n = pattern.length;
  let i = 0;
  const out: string[] = [];

  // Global inline flags are only legal at the very start (Python >= 3.11).
  const global = { i: false, m: false, s: false, x: false, a: false, u: false };
  for (let m = /^\(\?([aiLmsux]+)\)/.exec(pattern); m; m = /^\(\?([aiLmsux]+)\)/.exec(pattern.slice(i))) {
    for (const f of m[1]) {
      if (f === "L") bad("cannot use LOCALE flag with a str pattern");
      global[f as keyof typeof global] = true;
    }
    if (global.a && global.u) bad("ASCII and UNICODE flags are incompatible");
    i += m[0].length;
  }
  let flags: Flags = { i: global.i, m: global.m, s: global.s, x: global.x };
  const stack: Flags[] = [];
  const groupNames = new Set<string>();
  let groupCount = 0;
  const openGroups: number[] = []; // capture numbers still open (0 for non-capturing)
  let canRepeat = false;

  const readHex = (at: number, len: number, what: string): number => {
    const digits = pattern.slice(at, at + len);
    if (digits.length !== len || !HEX.test(digits)) bad(`incomplete escape \\${what}${digits}`);
    return parseInt(digits, 16);
  };

  /** Escape at `i` (pattern[i] === "\\"); returns [js, next index, isAnchor]. */
  const escape = (inClass: boolean): [string, number, boolean] => {
    const c = pattern[i + 1];
    if (c === undefined) return bad("bad escape (end of pattern)");
    if (c in SIMPLE_ESCAPES) return [SIMPLE_ESCAPES[c], i + 2, false];
    if (CATEGORY_ESCAPES.includes(c)) return [`\\${c}`, i + 2, false];
    if (c === "x") return [codeUnitEscape(readHex(i + 2, 2, "x")), i + 4, false];
    if (c === "u") return [codeUnitEscape(readHex(i + 2, 4, "u")), i + 6, false];
    if (c === "U") {
      const cp = readHex(i + 2, 8, "U");
      if (cp > 0x10ffff) bad(`bad escape \\U${pattern.slice(i + 2, i + 10)}`);
      if (cp <= 0xffff) return [codeUnitEscape(cp), i + 10, false];
      if (inClass) unsupported("an astral code point inside a character class");
      const s = String.fromCodePoint(cp);
      return [`(?:${codeUnitEscape(s.charCodeAt(0))}${codeUnitEscape(s.charCodeAt(1))})`, i + 10, false];
    }
    if (c === "N") unsupported("\\N{...} named characters");
    if (inClass) {
      if (c === "b") return ["\\x08", i + 2, false];
      if (isOct(c)) {
        let j = i + 2;
        while (j < i + 4 && isOct(pattern[j])) j++;
        const value = parseInt(pattern.slice(i + 1, j), 8);
        if (value > 0o377) bad(`octal escape value \\${pattern.slice(i + 1, j)} outside of range 0-0o377`);
        return [codeUnitEscape(value), j, false];
      }
      if (isDigit(c) || isAsciiLetter(c)) bad(`bad escape \\${c}`);
    } else {
      if (c === "A") return ["^", i + 2, true];
      if (c === "Z" || c === "z") return ["$", i + 2, true];
      if (c === "b" || c === "B") return [`\\${c}`, i + 2, true];
      if (c === "0") {
        let j = i + 2;
        while (j < i + 4 && isOct(pattern[j])) j++;
        return [codeUnitEscape(parseInt(pattern.slice(i + 1, j), 8)), j, false];
      }
      if (isDigit(c)) {
        // Python: octal escape *or* group reference (sre_parse._escape).
        const d2 = pattern[i + 2];
        const d3 = pattern[i + 3];
        if (isDigit(d2)) {
          if (isOct(c) && isOct(d2) && isOct(d3)) {
            const value = parseInt(c + d2 + d3, 8);
            if (value > 0o377) bad(`octal escape value \\${c}${d2}${d3} outside of range 0-0o377`);
            return [codeUnitEscape(value), i + 4, false];
          }
        }
        const digits = isDigit(d2) ? c + d2 : c;
        const group = parseInt(digits, 10);
        if (group === 0 || group > groupCount) bad(`invalid group reference ${group}`);
        if (openGroups.includes(group)) bad("cannot refer to an open group");
        return [`(?:\\${group})`, i + 1 + digits.length, false];
      }
      if (isAsciiLetter(c)) bad(`bad escape \\${c}`);
    }
    // Any other escaped character is itself, literally.
    if (isHighSurrogate(c) && i + 2 < n) {
      if (inClass) unsupported("an astral character inside a character class");
      return [`(?:${codeUnitEscape(c.charCodeAt(0))}${codeUnitEscape(pattern.charCodeAt(i + 2))})`, i + 3, false];
    }
    return [codeUnitEscape(c.charCodeAt(0)), i + 2, false];
  };

  const charClass = (): void => {
    let s = "[";
    i++;
    if (pattern[i] === "^") {
      s += "^";
      i++;
    }
    if (pattern[i] === "]") { // Python: a leading "]" is a literal
      s += "\\]";
      i++;
    }
    while (i < n && pattern[i] !== "]") {
      const c = pattern[i];
      if (c === "\\") {
        const [js, next] = escape(true);
        s += js;
        i = next;
      } else {
        if (isHighSurrogate(c)) unsupported("an astral character inside a character class");
        s += c === "[" ? "\\[" : c;
        i++;
      }
    }
    if (i >= n) bad("unterminated character set");
    out.push(`${s}]`);
    i++;
    canRepeat = true;
  };

  const quantifierTail = (): void => {
    if (pattern[i] === "?") { // lazy
      out.push("?");
      i++;
    } else if (pattern[i] === "+") unsupported("a possessive quantifier");
    canRepeat = false;
  };

  const openGroup = (): void => {
    stack.push(flags);
    if (pattern[i + 1] !== "?") {
      groupCount++;
      openGroups.push(groupCount);
      out.push("(");
      i++;
      canRepeat = false;
      return;
    }
    const rest = pattern.slice(i + 2);
    const named = /^P<([^>]*)>/.exec(rest);
    const backref = /^P=([^)]*)\)/.exec(rest);
    const scoped = /^([aiLmsux]*)(?:-([imsx]*))?([:)])/.exec(rest);
    openGroups.push(0);
    if (rest.startsWith(":")) {
      out.push("(?:");
      i += 3;
    } else if (named) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(named[1])) bad(`bad character in group name ${JSON.stringify(named[1])}`);
      if (groupNames.has(named[1])) bad(`redefinition of group name ${JSON.stringify(named[1])}`);
      groupNames.add(named[1]);
      groupCount++;
      openGroups[openGroups.length - 1] = groupCount;
      out.push(`(?<${named[1]}>`);
      i += 2 + named[0].length;
    } else if (backref) {
      stack.pop();
      openGroups.pop();
      if (!groupNames.has(backref[1])) bad(`unknown group name ${JSON.stringify(backref[1])}`);
      out.push(`(?:\\k<${backref[1]}>)`);
      i += 2 + backref[0].length;
      canRepeat = true;
      return;
    } else if (/^(=|!|<=|<!)/.test(rest)) {
      const look = /^(=|!|<=|<!)/.exec(rest)![1];
      out.push(`(?${look}`);
      i += 2 + look.length;
    } else if (rest.startsWith("#")) {
      stack.pop();
      openGroups.pop();
      const end = pattern.indexOf(")", i);
      if (end < 0) bad("missing ), unterminated comment");
      i = end + 1;
      return; // a comment is nothing: canRepeat is unchanged
    } else if (rest.startsWith(">")) {
      return unsupported("an atomic group (?>...)");
    } else if (rest.startsWith("(")) {
      return unsupported("a conditional group (?(...)...)");
    } else if (scoped && scoped[3] === ")" && !scoped[2]) {
      return bad("global flags not at the start of the expression");
    } else if (scoped && scoped[3] === ":" && (scoped[1] || scoped[2] !== undefined)) {
      const [whole, on, off = ""] = scoped;
      if (on.includes("L")) bad("bad inline flags: cannot use 'L' flag with a str pattern");
      if (off === "" && whole.includes("-")) bad("missing flag");
      const next = { ...flags } as { i: boolean; m: boolean; s: boolean; x: boolean };
      for (const f of on) if (f in next) next[f as keyof Flags] = true;
      for (const f of off) {
        if (on.includes(f)) bad("bad inline flags: flag turned on and off");
        next[f as keyof Flags] = false;
      }
      out.push(next.i === flags.i ? "(?:" : next.i ? "(?i:" : "(?-i:");
      flags = next;
      i += 2 + whole.length;
    } else {
      return bad(`unknown extension ?${rest.slice(0, 2)}`);
    }
    canRepeat = false;
  };

  while (i < n) {
    const c = pattern[i];
    if (flags.x && /\s/.test(c)) {
      i++;
      continue;
    }
    if (flags.x && c === "#") {
      const end = pattern.indexOf("\n", i);
      i = end < 0 ? n : end + 1;
      continue;
    }
    switch (c) {
      case "\\": {
        const [js, next, anchor] = escape(false);
        out.push(js);
        i = next;
        canRepeat = !anchor;
        break;
      }
      case "[":
        charClass();
        break;
      case "(":
        openGroup();
        break;
      case ")": {
        if (stack.length === 0) bad("unbalanced parenthesis");
        flags = stack.pop()!;
        openGroups.pop();
        out.push(")");
        i++;
        canRepeat = true;
        break;
      }
      case ".":
        out.push(flags.s ? "[\\s\\S]" : "[^\\n]");
        i++;
        canRepeat = true;
        break;
      case "^":
        out.push(flags.m ? "(?:^|(?<=\\n))" : "^");
        i++;
        canRepeat = false;
        break;
      case "$":
        out.push(flags.m ? "(?=\\n|$)" : "(?=\\n?$)");
        i++;
        canRepeat = false;
        break;
      case "*":
      case "+":
      case "?":
        if (!canRepeat) bad(out.length === 0 ? "nothing to repeat" : "multiple repeat or nothing to repeat");
        out.push(c);
        i++;
        quantifierTail();
        break;
      case "{": {
        // Python: {m}, {m,}, {,n}, {m,n} are quantifiers; anything else is a literal "{".
        const q = pattern[i + 1] === "}" ? null : /^\{(\d*)(?:(,)(\d*))?\}/.exec(pattern.slice(i));
        if (!q) {
          out.push("\\{");
          i++;
          canRepeat = true;
          break;
        }
        const [whole, lo, comma, hi = ""] = q;
        if (!canRepeat) bad("multiple repeat or nothing to repeat");
        if (lo && hi && Number(hi) < Number(lo)) bad("min repeat greater than max repeat");
        out.push(comma ? `{${lo || "0"},${hi}}` : `{${lo}}`);
        i += whole.length;
        quantifierTail();
        break;
      }
      case "}":
        out.push("\\}");
        i++;
        canRepeat = true;
        break;
      case "]":
        out.push("\\]");
        i++;
        canRepeat = true;
        break;
      case "|":
        out.push("|");
        i++;
        canRepeat = false;
        break;
      default:
        if (isHighSurrogate(c) && i + 1 < n) { // one Python code point, one atom
          out.push(`(?:${c}${pattern[i + 1]})`);
          i += 2;
        } else {
          out.push(c);
          i++;
        }
        canRepeat = true;
    }
  }
  if (stack.length > 0) bad("missing ), unterminated subpattern");
  return { source: out.join(""), flags: global.i ? "i" : "" };
}

/**
 * Compile a Python pattern into a `RegExp` whose `.test()` answers what
 * Python's `re.match` (anchored at the start) or `re.fullmatch` (whole
 * string) would.
 *
 * @throws {AdapterConfigError} for patterns Python rejects.
 * @throws {UnsupportedError} for Python constructs JS cannot express.
 *
 * @example
 * ```ts
 * import { compilePythonRegex } from "./python_regex.ts";
 * const re = compilePythonRegex(".*\\.(q|v)_proj", "fullmatch");
 * re.test("model.layers.0.self_attn.q_proj"); // true
 * re.test("model.layers.0.self_attn.q_proj.lora_A"); // false
 * ```
 */
export function compilePythonRegex(pattern: string, mode: PythonMatchMode, context: ErrorContext = {}): RegExp {
  const { source, flags } = translatePythonRegex(pattern, context);
  // Neither "m" nor "s" is ever set on the JS side, so ^ and $ are string anchors.
  const anchored = mode === "fullmatch" ? `^(?:${source})$` : `^(?:${source})`;
  try {
    return new RegExp(anchored, flags);
  } catch (e) {
    throw new AdapterConfigError(
      `invalid Python regex ${JSON.stringify(pattern)}: ${(e as Error).message}`,
      { ...context, cause: e },
    );
  }
}
