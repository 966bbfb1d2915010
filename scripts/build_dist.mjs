// Builds dist/ for the npm package: mod.ts and src/ compiled by TypeScript (pinned devDependency) to ES2022
// JavaScript with .d.ts files, for Node 20+ and bundlers. The pinned `npm:` specifiers of src/deps become bare
// package names; onnxruntime-web becomes "#onnxruntime-web", which package.json's "imports" maps to its Node build
// under Node and to its WASM-only browser build (onnxruntime-web/wasm) elsewhere; onnxruntime-node (an optional peer,
// a native addon) becomes "#onnxruntime-node": the package under Node (and Bun and Deno, which resolve its "node"
// condition), elsewhere dist/no_native_addons.js, which refuses to load, so bundlers never pull the addon in.
// Usage: node scripts/build_dist.mjs   (also `npm run build`, and npm pack's prepack)
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..");
const stage = join(repo, ".build/stage");
const dist = join(repo, "dist");

/** `npm:name@version/sub` -> `name/sub`; onnxruntime-web's main entry -> "#onnxruntime-web", onnxruntime-node's -> "#onnxruntime-node". */
function bareSpecifier(spec) {
  if (spec === "npm:onnxruntime-web@1.30.0") return "#onnxruntime-web";
  if (spec === "npm:onnxruntime-node@1.30.0") return "#onnxruntime-node";
  const m = /^npm:((?:@[^/]+\/)?[^@/]+)@[^/]+(\/.*)?$/.exec(spec);
  if (!m) throw new Error(`unexpected npm specifier ${spec}`);
  return m[1] + (m[2] ?? "");
}

function files(folder) {
  return readdirSync(folder).flatMap((name) => {
    const path = join(folder, name);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}

rmSync(join(repo, ".build"), { recursive: true, force: true });
rmSync(dist, { recursive: true, force: true });
mkdirSync(stage, { recursive: true });
cpSync(join(repo, "src"), join(stage, "src"), { recursive: true });
cpSync(join(repo, "mod.ts"), join(stage, "mod.ts"));
for (const file of files(stage).filter((f) => f.endsWith(".ts"))) {
  const text = readFileSync(file, "utf8");
  const rewritten = text.replace(/(["'])(npm:[^"']+)\1/g, (_, quote, spec) => quote + bareSpecifier(spec) + quote);
  if (rewritten !== text) writeFileSync(file, rewritten);
}
writeFileSync(
  join(stage, "tsconfig.json"),
  JSON.stringify({
    compilerOptions: {
      target: "ES2022",
      module: "ESNext",
      moduleResolution: "Bundler",
      lib: ["ES2023", "DOM", "DOM.Iterable", "ESNext.Disposable"],
      strict: true,
      skipLibCheck: true,
      declaration: true,
      // The code is type-checked by `deno check` (with Deno's WebGPU and runtime types); here it is only emitted.
      noCheck: true,
      rewriteRelativeImportExtensions: true,
      allowImportingTsExtensions: true,
      outDir: relative(stage, dist),
      rootDir: ".",
    },
    include: ["mod.ts", "src/**/*.ts"],
  }),
);
execFileSync(process.execPath, [join(repo, "node_modules/typescript/bin/tsc"), "-p", stage], { stdio: "inherit" });
// Declarations keep `.ts` in relative specifiers; Node and bundlers load the `.js` files next to them.
for (const file of files(dist).filter((f) => f.endsWith(".d.ts"))) {
  const text = readFileSync(file, "utf8");
  const fixed = text.replace(
    /(from\s+|import\()(["'])(\.{1,2}\/[^"']+)\.ts\2/g,
    (_, pre, q, path) => `${pre}${q}${path}.js${q}`,
  );
  if (fixed !== text) writeFileSync(file, fixed);
}
cpSync(join(repo, "examples/browser/no_native_addons.js"), join(dist, "no_native_addons.js"));
rmSync(join(repo, ".build"), { recursive: true, force: true });
console.log(`built ${relative(repo, dist)}/ (${files(dist).length} files)`);
