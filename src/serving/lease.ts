/**
 * {@linkcode Lease}: a model taken from the pool for one generation, given
 * back with `release()` or at the end of a `using` block.
 * @module
 */
import type { BaseModel } from "../model/base_model.ts";
import type { PeftModel } from "../model/peft_model.ts";

/**
 * A model acquired for one generation. Run `model` with `adapter` as the
 * run's adapter; release it when done (disposing releases it too).
 *
 * @example
 * ```ts
 * import type { AdapterPool } from "./pool.ts";
 * declare const pool: AdapterPool;
 * {
 *   using lease = await pool.acquire("python");
 *   await lease.model.generate("def ", { adapter: lease.adapter, maxNewTokens: 8 });
 * } // released here
 * ```
 */
export interface Lease extends Disposable {
  /** The model's public name (the base's or an adapter's). */
  readonly name: string;
  /** What runs: the base, or the `PeftModel` holding the adapter. */
  readonly model: BaseModel | PeftModel;
  /** The adapter's key inside `model`, or null for the base. */
  readonly adapter: string | null;
  /** Gives the model back; calling it again does nothing. */
  release(): void;
}

/**
 * A lease whose first `release` (or dispose) calls `onRelease`.
 *
 * @example
 * ```ts
 * import { makeLease } from "./lease.ts";
 * import type { BaseModel } from "../model/base_model.ts";
 * declare const base: BaseModel;
 * const lease = makeLease("base", base, null, () => console.log("given back"));
 * lease.release();
 * ```
 */
export function makeLease(
  name: string,
  model: BaseModel | PeftModel,
  adapter: string | null,
  onRelease: () => void,
): Lease {
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    onRelease();
  };
  return { name, model, adapter, release, [Symbol.dispose]: release };
}
