#!/usr/bin/env bash
# The whole test suite: type check, lint, format, import cycles, the wasm reproducibility check,
# the Deno suite and the Bun suite. Prints one closing line
# "N passed, N failed" summing every suite and exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH" NO_COLOR=1
# Mesa (Deno's software WebGPU adapter) wants a private runtime folder.
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "$XDG_RUNTIME_DIR" ]; then XDG_RUNTIME_DIR=$(mktemp -d); export XDG_RUNTIME_DIR; fi
passed=0
failed=0
log=$(mktemp -d)

step() { # step NAME COMMAND...: a check that counts as one test
  local name=$1; shift
  if "$@" >"$log/$name.out" 2>&1; then
    passed=$((passed + 1)); echo "ok   $name"
  else
    failed=$((failed + 1)); echo "FAIL $name"; tail -n 40 "$log/$name.out"
  fi
}

# Debian packages the suite uses: Rust's wasm toolchain for the kernel's
# reproducibility check, Mesa's software Vulkan driver for Deno's WebGPU path,
# Chromium for the browser demo test (tests/browser.test.ts).
# Installed when missing and possible (root with apt); otherwise the checks
# that need them are skipped, and said so.
packages=(rustc cargo libstd-rust-dev-wasm32 lld mesa-vulkan-drivers libvulkan1 chromium)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

step deno-check deno check mod.ts src/ tests/ examples/ bench/
step deno-lint deno lint
step deno-fmt deno fmt --check
step deno-doc-examples deno check --doc mod.ts src/
step deno-doc-lint deno doc --lint mod.ts
step import-cycles deno run --allow-read tests/support/import_cycles.ts
# JSR: the package as `deno publish` would upload it (no slow types; works offline).
step jsr-dry-run deno publish --dry-run --allow-dirty
if [ -x /usr/bin/cargo ] && command -v wasm-ld >/dev/null; then
  step wasm-reproducible wasm/build.sh --check
else
  echo "skip wasm-reproducible: Debian's rustc/cargo/libstd-rust-dev-wasm32/lld are not installed"
fi

# Deno suite: "ok | 12 passed | 0 failed" (or "FAILED | ...").
deno test -A --no-check tests/ 2>&1 | tee "$log/deno.out" | grep -E "^(ok|FAILED) \||\.\.\. FAILED|^error" || true
d_pass=$(grep -oE "[0-9]+ passed" "$log/deno.out" | tail -n 1 | grep -oE "[0-9]+" || echo 0)
d_fail=$(grep -oE "[0-9]+ failed" "$log/deno.out" | tail -n 1 | grep -oE "[0-9]+" || echo 0)
if [ "${d_pass:-0}" = 0 ] && [ "${d_fail:-0}" = 0 ]; then d_fail=1; tail -n 40 "$log/deno.out"; fi
echo "deno: $d_pass passed, $d_fail failed"

# Bun suite: " 12 pass" / " 0 fail".
bun test --timeout 300000 tests/ 2>&1 | tee "$log/bun.out" | grep -E "^\(fail\)|^ *[0-9]+ (pass|fail)$|error:" || true
b_pass=$(grep -oE "^ *[0-9]+ pass$" "$log/bun.out" | tail -n 1 | grep -oE "[0-9]+" || echo 0)
b_fail=$(grep -oE "^ *[0-9]+ fail$" "$log/bun.out" | tail -n 1 | grep -oE "[0-9]+" || echo 0)
if [ "${b_pass:-0}" = 0 ] && [ "${b_fail:-0}" = 0 ]; then b_fail=1; tail -n 40 "$log/bun.out"; fi
echo "bun: $b_pass passed, $b_fail failed"

passed=$((passed + d_pass + b_pass))
failed=$((failed + d_fail + b_fail))
rm -rf "$log"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
