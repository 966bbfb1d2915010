/**
 * WebAssembly SIMD128 feature detection, by validating a tiny module that
 * uses SIMD opcodes (never by guessing from the runtime's name).
 *
 * @module
 */

/**
 * Whether this runtime's WebAssembly engine accepts SIMD128 code.
 *
 * The probe is `(func (result v128) i32.const 0 i8x16.splat i8x16.popcnt)`:
 * it only validates where the final SIMD proposal is implemented.
 *
 * @example
 * ```ts
 * import { simdSupported } from "./simd.ts";
 * console.log(simdSupported() ? "wasm-simd" : "js");
 * ```
 */
export function simdSupported(): boolean {
  if (
    typeof WebAssembly !== "object" ||
    typeof WebAssembly.validate !== "function"
  ) {
    return false;
  }
  const probe = new Uint8Array([
    0x00,
    0x61,
    0x73,
    0x6d,
    0x01,
    0x00,
    0x00,
    0x00, // magic, version 1
    0x01,
    0x05,
    0x01,
    0x60,
    0x00,
    0x01,
    0x7b, // type section: () -> v128
    0x03,
    0x02,
    0x01,
    0x00, // function section: one function of type 0
    0x0a,
    0x0a,
    0x01,
    0x08,
    0x00, // code section: one body, 8 bytes, no locals
    0x41,
    0x00, // i32.const 0
    0xfd,
    0x0f, // i8x16.splat
    0xfd,
    0x62, // i8x16.popcnt
    0x0b, // end
  ]);
  try {
    return WebAssembly.validate(probe);
  } catch {
    return false;
  }
}
