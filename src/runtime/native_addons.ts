/**
 * Whether this runtime may load a native addon (a `.node` shared library)
 * without asking anyone: the runtime boundary for `Deno.permissions`. Node
 * and Bun load addons freely; Deno only with the `ffi` permission
 * (`--allow-ffi` or `-A`), and without it would prompt on a terminal, so
 * the permission is queried first; browsers and edge runtimes load none.
 * @module
 */

/** The globals consulted here; tests pass fakes. */
export interface AddonGlobals {
  Deno?: { permissions?: { querySync?(descriptor: { name: "ffi" }): { state: string } } };
  Bun?: unknown;
  process?: { versions?: { node?: string } };
}

/**
 * Why native addons cannot be loaded here, or `undefined` when they can.
 *
 * @example
 * ```ts
 * import { nativeAddonsBlocked } from "./native_addons.ts";
 * console.log(nativeAddonsBlocked() ?? "native addons load here");
 * ```
 */
export function nativeAddonsBlocked(g: AddonGlobals = globalThis as AddonGlobals): string | undefined {
  if (g.Deno !== undefined) {
    const state = g.Deno.permissions?.querySync?.({ name: "ffi" }).state;
    return state === "granted" ? undefined : "Deno loads native addons only with --allow-ffi (or -A)";
  }
  if (g.Bun !== undefined || g.process?.versions?.node !== undefined) return undefined;
  return "only Node, Bun and Deno load native addons (not browsers or edge runtimes)";
}
