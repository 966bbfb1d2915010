/**
 * Test-only observation of WebAssembly compilation: counts the modules
 * compiled while a function runs, by wrapping the `WebAssembly` entry points
 * that compile bytes, and restores them afterwards.
 * @module
 */

type Compiling = "compile" | "instantiate" | "compileStreaming" | "instantiateStreaming";

/** Runs `fn` and returns its result with the number of WebAssembly modules compiled meanwhile. */
export async function countWasmCompiles<T>(fn: () => Promise<T>): Promise<{ result: T; compiles: number }> {
  let compiles = 0;
  const wasm = WebAssembly as unknown as Record<Compiling, (...args: unknown[]) => unknown>;
  const originals = new Map<Compiling, (...args: unknown[]) => unknown>();
  for (const name of ["compile", "instantiate", "compileStreaming", "instantiateStreaming"] as const) {
    const original = wasm[name];
    if (typeof original !== "function") continue;
    originals.set(name, original);
    wasm[name] = function (this: unknown, ...args: unknown[]) {
      // instantiate(module) reuses a compiled module; every other call compiles.
      if (!(name === "instantiate" && args[0] instanceof WebAssembly.Module)) compiles++;
      return original.apply(this, args);
    };
  }
  try {
    return { result: await fn(), compiles };
  } finally {
    for (const [name, original] of originals) wasm[name] = original;
  }
}
