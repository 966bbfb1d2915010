/**
 * Mutations the fuzzer applies: to bytes (flips, boundary values,
 * insertions, deletions, truncation, splices), and to JSON values (every
 * field given a wrong type, an edge value, or removed; extra fields).
 * @module
 */
import type { Rng } from "./rng.ts";

/** Values of every JSON type, and edges of each. */
export const ODD_VALUES: readonly unknown[] = [
  null,
  true,
  false,
  0,
  -1,
  1,
  0.5,
  -0.0,
  1e308,
  -1e308,
  2 ** 31,
  2 ** 53 + 2,
  Number.MAX_SAFE_INTEGER,
  "",
  "0",
  "8",
  "NaN",
  "Infinity",
  "LORA",
  "q_proj",
  ".*",
  "(a+)+$",
  "((a|a)*)*b",
  "(x+x+)+y",
  "(?P<name>q)_proj",
  "(?=q)q_proj",
  "\\",
  "[",
  "\u0000",
  "\ud800",
  "é".repeat(300),
  "a".repeat(10_000),
  [],
  [null],
  ["q_proj", 7],
  ["(a+)+$"],
  Array.from({ length: 200 }, (_, i) => `m${i}`),
  {},
  { "q_proj": 4 },
  { "(a+)+$": 2 },
  { ".*": -1 },
  { "__proto__": 1 },
  { "constructor": { "prototype": 1 } },
  [[[[[]]]]],
];

/** A random odd value, sometimes nested. */
export function oddValue(rng: Rng): unknown {
  const value = rng.pick(ODD_VALUES);
  if (rng.chance(0.1)) return [value, rng.pick(ODD_VALUES)];
  if (rng.chance(0.05)) return { [String(rng.pick(ODD_VALUES))]: value };
  return value;
}

/** `bytes` with 1 to 8 random mutations (a new array). */
export function mutateBytes(rng: Rng, bytes: Uint8Array, focus?: [start: number, end: number]): Uint8Array {
  let out = bytes.slice();
  const where = () =>
    focus && rng.chance(0.8) ? focus[0] + rng.int(Math.max(1, focus[1] - focus[0])) : rng.int(out.length);
  const rounds = 1 + rng.int(8);
  for (let r = 0; r < rounds && out.length > 0; r++) {
    const at = Math.min(where(), out.length - 1);
    switch (rng.int(7)) {
      case 0:
        out[at] ^= 1 << rng.int(8);
        break;
      case 1:
        out[at] = rng.pick([0, 1, 0x7f, 0x80, 0xff, 0x22, 0x5c, 0x7b, 0x7d, 0x3a]);
        break;
      case 2: { // insert
        const extra = rng.bytes(1 + rng.int(16));
        const next = new Uint8Array(out.length + extra.length);
        next.set(out.subarray(0, at));
        next.set(extra, at);
        next.set(out.subarray(at), at + extra.length);
        out = next;
        break;
      }
      case 3: { // delete
        const n = Math.min(1 + rng.int(16), out.length - at);
        const next = new Uint8Array(out.length - n);
        next.set(out.subarray(0, at));
        next.set(out.subarray(at + n), at);
        out = next;
        break;
      }
      case 4: // truncate
        out = out.slice(0, at);
        break;
      case 5: { // copy a run from elsewhere
        const from = rng.int(out.length);
        const n = Math.min(1 + rng.int(64), out.length - Math.max(from, at));
        if (n > 0) out.copyWithin(at, from, from + n);
        break;
      }
      default: // 4-byte boundary integer
        if (at + 4 <= out.length) {
          new DataView(out.buffer).setUint32(at, rng.pick([0, 1, 0x7fffffff, 0x80000000, 0xffffffff]), true);
        }
    }
  }
  return out;
}

/** A deep copy of a JSON object with 1 to 4 field mutations. */
export function mutateObject(
  rng: Rng,
  object: Record<string, unknown>,
  fields: readonly string[],
): Record<string, unknown> {
  const out: Record<string, unknown> = structuredClone(object);
  const rounds = 1 + rng.int(4);
  for (let r = 0; r < rounds; r++) {
    const field = rng.chance(0.9) ? rng.pick(fields) : `extra_${rng.int(100)}`;
    if (rng.chance(0.1)) delete out[field];
    else out[field] = oddValue(rng);
  }
  return out;
}
