/**
 * `torch.randperm(n, generator=torch.Generator().manual_seed(seed))` on the
 * CPU, which FourierFT uses to place its frequencies (the indices are not
 * saved): torch's MT19937 seeded with the seed's low 32 bits, then a
 * Fisher-Yates pass drawing `random() % (n - i)` for every `i` (torch's
 * algorithm for `n < 2³² / 20`).
 * @module
 */
import { UnsupportedError } from "../../errors.ts";

/** MT19937 (32-bit), as `at::mt19937` seeds and tempers it. */
function mt19937(seed: number): () => number {
  const state = new Uint32Array(624);
  state[0] = seed >>> 0;
  for (let i = 1; i < 624; i++) {
    const prev = state[i - 1] ^ (state[i - 1] >>> 30);
    // 1812433253 * prev + i, mod 2^32, without losing bits to float rounding.
    state[i] = (((((prev & 0xffff0000) >>> 16) * 1812433253) << 16) + (prev & 0x0000ffff) * 1812433253 + i) >>> 0;
  }
  let index = 624;
  const twist = () => {
    for (let i = 0; i < 624; i++) {
      const y = (state[i] & 0x80000000) | (state[(i + 1) % 624] & 0x7fffffff);
      state[i] = state[(i + 397) % 624] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
    }
    index = 0;
  };
  return () => {
    if (index >= 624) twist();
    let y = state[index++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  };
}

/**
 * torch's CPU `randperm(n)` for a freshly seeded generator.
 *
 * @example
 * ```ts
 * import { torchRandperm } from "./randperm.ts";
 * torchRandperm(4, 777).length; // 4
 * ```
 */
export function torchRandperm(n: number, seed: number): Int32Array {
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new UnsupportedError(`random_loc_seed ${seed}: only non-negative integer seeds are reproduced`, {
      key: "random_loc_seed",
    });
  }
  if (n >= Math.floor(0xffffffff / 20)) {
    throw new UnsupportedError(`randperm of ${n} elements uses torch's 64-bit draw, which is not reproduced`, {
      key: "random_loc_seed",
    });
  }
  const random = mt19937(seed % 2 ** 32);
  const r = new Int32Array(n);
  for (let i = 0; i < n; i++) r[i] = i;
  for (let i = 0; i < n - 1; i++) {
    const z = random() % (n - i);
    const t = r[i];
    r[i] = r[z + i];
    r[z + i] = t;
  }
  return r;
}
