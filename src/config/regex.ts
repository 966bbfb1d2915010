/**
 * Python `re` patterns, run by a linear-time engine (`re2js`, RE2's
 * automata): a config's pattern cannot make matching take exponential time
 * (PEFT's `re` backtracks, so `rank_pattern: {"(.*)*#": 4}` never returns
 * there).
 *
 * PEFT matches module names with Python's `re.fullmatch` (string
 * `target_modules` / `exclude_modules`) and `re.match` (layer indices,
 * `rank_pattern` / `alpha_pattern` keys, `modules_to_save`). The dialects
 * differ in ways that change results, so a pattern is translated token by
 * token to RE2 syntax rather than handed over as is:
 *
 * - `.` is `[^\n]`; `$` also matches before a final `\n` in Python (here
 *   `(?m:$)`, exact for any name without a newline before its last
 *   character); Python's `\Z` is RE2's `\z`.
 * - `{,n}`, `(?#…)`, leading `(?imsx)` flags and verbose mode are Python-only
 *   syntax; `(?<name>…)` is RE2-only and rejected, as Python does.
 * - `[]…]` starts a class containing `]` in Python.
 * - Python rejects unknown escapes such as `\e`; they are reported instead of
 *   mis-matching.
 * - What no linear-time engine can run (backreferences, lookahead and
 *   lookbehind, atomic groups, possessive quantifiers, conditionals) and
 *   `\N{…}` raise {@linkcode AdapterConfigError} naming the field and pattern.
 *
 * Known residual difference: `\d`, `\w`, `\s`, `\b` are ASCII-only in RE2 but
 * Unicode-aware for Python `str` patterns. Module names are ASCII in practice.
 *
 * The last four functions are the regexes PEFT builds around user-supplied
 * names; each template is PEFT's own, quoted in its doc comment, so the
 * user's text lands inside it exactly as in Python (unescaped: it is regex
 * source there too).
 *
 * @module
 */
import { RE2JS } from "../deps/re2js.ts";
import { AdapterConfigError, type ErrorContext } from "../errors.ts";

/** Which Python entry point the pattern is used with: `re.match` or `re.fullmatch`. */
export type PythonMatchMode = "match" | "fullmatch";

/**
 * A Python pattern rewritten as RE2 source and flags (not yet anchored).
 *
 * @example
 * ```ts
 * import type { TranslatedRegex } from "./regex.ts";
 * const t: TranslatedRegex = { source: "q_proj", flags: "" };
 * ```
 */
export interface TranslatedRegex {
  /** RE2 pattern source, equivalent to the Python pattern at any position. */
  readonly source: string;
  /** `"i"` (case-insensitive) or `""`; `m`, `s`, `x` are folded into the source. */
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

/** `\x{H…}` for one code point: safe in and out of classes. */
function codePointEscape(cp: number): string {
  return `\\x{${cp.toString(16)}}`;
}

function isAsciiLetter(c: string): boolean {
  return (c >= "a" && c <= "z") || (c >= "A" && c <= "Z");
}

function isHighSurrogate(c: string | undefined): boolean {
  return c !== undefined && c.charCodeAt(0) >= 0xd800 && c.charCodeAt(0) <= 0xdbff;
}

/**
 * Translate a Python `re` pattern (a `str` pattern, Python 3.11+ rules) to an
 * equivalent unanchored RE2 source.
 *
 * @throws {AdapterConfigError} when Python itself would reject the pattern,
 *   or it uses what a linear-time engine cannot run (a backreference,
 *   lookaround, atomic group, possessive quantifier or conditional).
 *
 * @example
 * ```ts
 * import { translatePythonRegex } from "./regex.ts";
 * translatePythonRegex("(?P<x>q|v)_proj$").source; // "(?P<x>q|v)_proj(?m:$)"
 * ```
 */
export function translatePythonRegex(pattern: string, context: ErrorContext = {}): TranslatedRegex {
  const bad = (message: string): never => {
    throw new AdapterConfigError(`invalid Python regex ${JSON.stringify(pattern)}: ${message}`, context);
  };
  const unsupported = (what: string): never => {
    throw new AdapterConfigError(
      `Python regex ${JSON.stringify(pattern)} uses ${what}, which the linear-time regex engine cannot run ` +
        "(patterns are matched without backtracking, so a config cannot freeze the process)",
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
    if (c === "x") return [codePointEscape(readHex(i + 2, 2, "x")), i + 4, false];
    if (c === "u") return [codePointEscape(readHex(i + 2, 4, "u")), i + 6, false];
    if (c === "U") {
      const cp = readHex(i + 2, 8, "U");
      if (cp > 0x10ffff) bad(`bad escape \\U${pattern.slice(i + 2, i + 10)}`);
      return [codePointEscape(cp), i + 10, false];
    }
    if (c === "N") unsupported("\\N{...} named characters");
    if (inClass) {
      if (c === "b") return ["\\x08", i + 2, false];
      if (isOct(c)) {
        let j = i + 2;
        while (j < i + 4 && isOct(pattern[j])) j++;
        const value = parseInt(pattern.slice(i + 1, j), 8);
        if (value > 0o377) bad(`octal escape value \\${pattern.slice(i + 1, j)} outside of range 0-0o377`);
        return [codePointEscape(value), j, false];
      }
      if (isDigit(c) || isAsciiLetter(c)) bad(`bad escape \\${c}`);
    } else {
      if (c === "A") return ["\\A", i + 2, true];
      if (c === "Z" || c === "z") return ["\\z", i + 2, true];
      if (c === "b" || c === "B") return [`\\${c}`, i + 2, true];
      if (c === "0") {
        let j = i + 2;
        while (j < i + 4 && isOct(pattern[j])) j++;
        return [codePointEscape(parseInt(pattern.slice(i + 1, j), 8)), j, false];
      }
      if (isDigit(c)) {
        // Python: octal escape *or* group reference (sre_parse._escape).
        const d2 = pattern[i + 2];
        const d3 = pattern[i + 3];
        if (isDigit(d2)) {
          if (isOct(c) && isOct(d2) && isOct(d3)) {
            const value = parseInt(c + d2 + d3, 8);
            if (value > 0o377) bad(`octal escape value \\${c}${d2}${d3} outside of range 0-0o377`);
            return [codePointEscape(value), i + 4, false];
          }
        }
        const digits = isDigit(d2) ? c + d2 : c;
        const group = parseInt(digits, 10);
        if (group === 0 || group > groupCount) bad(`invalid group reference ${group}`);
        if (openGroups.includes(group)) bad("cannot refer to an open group");
        return unsupported(`a backreference \\${digits}`);
      }
      if (isAsciiLetter(c)) bad(`bad escape \\${c}`);
    }
    // Any other escaped character is itself, literally.
    const cp = pattern.codePointAt(i + 1)!;
    return [codePointEscape(cp), i + (cp > 0xffff ? 3 : 2), false];
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
        // One code point (RE2 reads astral characters whole).
        const len = isHighSurrogate(c) && i + 1 < n ? 2 : 1;
        s += c === "[" ? "\\[" : pattern.slice(i, i + len);
        i += len;
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
      out.push(`(?P<${named[1]}>`);
      i += 2 + named[0].length;
    } else if (backref) {
      stack.pop();
      openGroups.pop();
      if (!groupNames.has(backref[1])) bad(`unknown group name ${JSON.stringify(backref[1])}`);
      return unsupported(`a backreference (?P=${backref[1]})`);
    } else if (/^(=|!|<=|<!)/.test(rest)) {
      const look = /^(=|!|<=|<!)/.exec(rest)![1];
      return unsupported(`a ${look.startsWith("<") ? "lookbehind" : "lookahead"} (?${look}...)`);
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
        out.push(flags.m ? "(?m:^)" : "\\A");
        i++;
        canRepeat = false;
        break;
      case "$":
        // Python's $ (before a final newline or at the end) is (?m:$) on any name
        // without an earlier newline; with re.M it is exactly (?m:$).
        out.push("(?m:$)");
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
          out.push(pattern.slice(i, i + 2));
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
 * A compiled Python pattern: answers what Python's `re.match` (anchored at
 * the start) or `re.fullmatch` (whole string) would, in time linear in the
 * input.
 *
 * @example
 * ```ts
 * import { compilePythonRegex, type PythonRegex } from "./regex.ts";
 * const re: PythonRegex = compilePythonRegex(".*\\.(\\d+)\\.", "match");
 * console.log(re.exec("model.layers.3.mlp")?.[1]); // "3"
 * ```
 */
export interface PythonRegex {
  /** The Python pattern as given. */
  readonly pattern: string;
  /** Whether the pattern matches `input` (`re.match` / `re.fullmatch` is not `None`). */
  test(input: string): boolean;
  /** The match's groups (0 is the whole match, `undefined` for a group that did not take part), or `null`. */
  exec(input: string): (string | undefined)[] | null;
}

/**
 * Compile a Python pattern for `re.match` or `re.fullmatch` semantics, run by
 * a linear-time engine.
 *
 * @throws {AdapterConfigError} for patterns Python rejects, and for Python
 *   constructs a linear-time engine cannot run; the error carries `context`
 *   (the config field) and names the pattern.
 *
 * @example
 * ```ts
 * import { compilePythonRegex } from "./regex.ts";
 * const re = compilePythonRegex(".*\\.(q|v)_proj", "fullmatch");
 * re.test("model.layers.0.self_attn.q_proj"); // true
 * re.test("model.layers.0.self_attn.q_proj.lora_A"); // false
 * ```
 */
export function compilePythonRegex(pattern: string, mode: PythonMatchMode, context: ErrorContext = {}): PythonRegex {
  const { source, flags } = translatePythonRegex(pattern, context);
  let re: RE2JS;
  try {
    re = RE2JS.compile(source, flags === "i" ? RE2JS.CASE_INSENSITIVE : 0);
  } catch (e) {
    throw new AdapterConfigError(
      `invalid Python regex ${JSON.stringify(pattern)} (or one the linear-time engine cannot run): ${
        (e as Error).message
      }`,
      { ...context, cause: e },
    );
  }
  const run = (input: string) => {
    const m = re.matcher(input);
    return { m, ok: mode === "fullmatch" ? m.matches() : m.lookingAt() };
  };
  return Object.freeze({
    pattern,
    test: (input: string) => run(input).ok,
    exec(input: string) {
      const { m, ok } = run(input);
      if (!ok) return null;
      return Array.from({ length: m.groupCount() + 1 }, (_, g) => m.group(g) ?? undefined);
    },
  });
}

/**
 * A string `target_modules` / `exclude_modules`: `re.fullmatch(pattern, key)`
 * (`check_target_module_exists`, via `match_target_against_key`).
 *
 * @example
 * ```ts
 * import { fullmatchRegex } from "./regex.ts";
 * fullmatchRegex(".*\\.(q|v)_proj").test("model.layers.0.self_attn.v_proj"); // true
 * ```
 */
export function fullmatchRegex(pattern: string, context: ErrorContext = {}): PythonRegex {
  return compilePythonRegex(pattern, "fullmatch", context);
}

/**
 * Layer index extraction for `layers_to_transform`
 * (`check_target_module_exists`): with a layers pattern `p`,
 * `re.match(rf".*\.{p}\.(\d+)\.", key)`; with none (`None`, `""`, `[]`),
 * `re.match(r".*\.[^.]*\.(\d+)\.", key)`. Group 1 is the index.
 *
 * @example
 * ```ts
 * import { layerIndexRegex } from "./regex.ts";
 * layerIndexRegex("h").exec("transformer.h.3.attn.c_attn")?.[1]; // "3"
 * layerIndexRegex(null).exec("model.layers.12.mlp.up_proj")?.[1]; // "12"
 * ```
 */
export function layerIndexRegex(layersPattern: string | null, context: ErrorContext = {}): PythonRegex {
  const source = layersPattern === null ? String.raw`.*\.[^.]*\.(\d+)\.` : String.raw`.*\.${layersPattern}\.(\d+)\.`;
  return compilePythonRegex(source, "match", context);
}

/**
 * A `modules_to_save` entry `m` excludes a module from LoRA when
 * `re.match(rf"(^|.*\.){m}($|\..*)", key)` (`check_target_module_exists`).
 *
 * @example
 * ```ts
 * import { modulesToSaveRegex } from "./regex.ts";
 * modulesToSaveRegex("score").test("score"); // true
 * modulesToSaveRegex("score").test("model.score.dense"); // true
 * modulesToSaveRegex("score").test("model.rescore"); // false
 * ```
 */
export function modulesToSaveRegex(moduleToSave: string, context: ErrorContext = {}): PythonRegex {
  return compilePythonRegex(String.raw`(^|.*\.)${moduleToSave}($|\..*)`, "match", context);
}

/**
 * A `rank_pattern` / `alpha_pattern` key matches a module when
 * `re.match(rf"(.*\.)?({key})$", key_to_match)` (`peft.utils.other.get_pattern_key`).
 *
 * @example
 * ```ts
 * import { patternKeyRegex } from "./regex.ts";
 * patternKeyRegex("q_proj").test("model.layers.0.self_attn.q_proj"); // true
 * patternKeyRegex("q_proj").test("model.layers.0.self_attn.xq_proj"); // false
 * patternKeyRegex("^model.decoder.layers.0.encoder_attn.k_proj").test("model.decoder.layers.0.encoder_attn.k_proj"); // true
 * ```
 */
export function patternKeyRegex(key: string, context: ErrorContext = {}): PythonRegex {
  return compilePythonRegex(String.raw`(.*\.)?(${key})$`, "match", context);
}

/**
 * A `rank_pattern` / `alpha_pattern` mapping (in file order) that compiles
 * its keys' regexes once, on first use, instead of on every lookup: module
 * planning asks for each module's rank and alpha, and compiling for a
 * linear-time engine costs more than matching.
 *
 * @example
 * ```ts
 * import { PatternMap } from "./regex.ts";
 * const ranks = new PatternMap("rank_pattern", [["v_proj", 4], ["layers\\.0\\..*", 2]]);
 * console.log(ranks.firstMatch("model.layers.0.self_attn.v_proj")); // "v_proj"
 * console.log(ranks.firstMatch("model.layers.1.mlp.up_proj")); // undefined
 * ```
 */
export class PatternMap extends Map<string, number> {
  /** The config field, for error messages. */
  readonly field: string;
  #compiled: { keys: string[]; regexes: PythonRegex[] } | undefined;

  /** A map for config field `field` with `entries` in order. */
  constructor(field: string, entries: Iterable<readonly [string, number]> = []) {
    super(entries);
    this.field = field;
  }

  /**
   * PEFT's `get_pattern_key` without its fallback: the first key whose
   * `patternKeyRegex` matches `moduleName`, or `undefined`.
   */
  firstMatch(moduleName: string): string | undefined {
    const keys = [...this.keys()];
    const cached = this.#compiled;
    const regexes = cached && cached.keys.length === keys.length && cached.keys.every((k, i) => k === keys[i])
      ? cached.regexes
      : (this.#compiled = { keys, regexes: keys.map((k) => patternKeyRegex(k, { key: this.field })) }).regexes;
    const at = regexes.findIndex((re) => re.test(moduleName));
    return at < 0 ? undefined : keys[at];
  }
}
