// Import-cycle check for CI: reads the imports and re-exports of mod.ts and
// every src/**/*.ts (type-only and dynamic ones too: they still tie the
// modules together), and exits 1 listing every cycle: each strongly connected
// group of modules, and of src/ folders (`src/a` importing `src/b` and back
// is one layer leaning on another), each with one loop through it.
//
//   deno run --allow-read tests/support/import_cycles.ts
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import process from "node:process";

const ROOT = normalize(join(dirname(new URL(import.meta.url).pathname), "..", ".."));

/** mod.ts and every .ts under src/, relative to the repo root. */
function sourceFiles(): string[] {
  const out = ["mod.ts"];
  const walk = (dir: string) => {
    for (const entry of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith(".ts")) out.push(path);
    }
  };
  walk("src");
  return out.sort();
}

/** The code with comments blanked out, so JSDoc `@example` imports do not count; strings are kept. */
function stripComments(code: string): string {
  let out = "";
  let i = 0;
  while (i < code.length) {
    const c = code[i];
    if (c === "/" && code[i + 1] === "/") {
      while (i < code.length && code[i] !== "\n") i++;
    } else if (c === "/" && code[i + 1] === "*") {
      const end = code.indexOf("*/", i + 2);
      i = end < 0 ? code.length : end + 2;
      out += " ";
    } else if (c === '"' || c === "'" || c === "`") {
      let j = i + 1;
      while (j < code.length && code[j] !== c) j += code[j] === "\\" ? 2 : 1;
      out += code.slice(i, j + 1);
      i = j + 1;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/**
 * Relative specifiers of `import ... from`, `import "..."`, `export ... from`,
 * and of `import("...")`: a dynamic import or an inline import type still
 * makes each module depend on the other, it only hides the cycle from the
 * loader.
 */
function importsOf(code: string): string[] {
  const specs: string[] = [];
  const text = stripComments(code);
  const statement = /(?:^|[;\n}])\s*(?:import|export)\s+(?:type\s+)?(?:[^;'"`]*?\sfrom\s*)?["']([^"']+)["']/g;
  const call = /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g;
  for (const m of [...text.matchAll(statement), ...text.matchAll(call)]) {
    if (m[1].startsWith(".")) specs.push(m[1]);
  }
  return specs;
}

/** Strongly connected groups of more than one module (or a module importing itself), by Tarjan's algorithm. */
function cycles(graph: Map<string, string[]>): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const groups: string[][] = [];
  const visit = (v: string) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const group: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        group.push(w);
      } while (w !== v);
      if (group.length > 1 || (graph.get(v) ?? []).includes(v)) groups.push(group.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return groups;
}

/** One loop through `group`, starting at its first module: a shortest path back to it. */
function loopThrough(group: string[], graph: Map<string, string[]>): string[] {
  const members = new Set(group);
  const start = group[0];
  const previous = new Map<string, string>();
  const queue = [start];
  while (queue.length) {
    const v = queue.shift()!;
    for (const w of graph.get(v) ?? []) {
      if (!members.has(w)) continue;
      if (w === start) {
        const path = [v];
        while (path[0] !== start) path.unshift(previous.get(path[0])!);
        return [...path, start];
      }
      if (!previous.has(w)) {
        previous.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start, start];
}

const graph = new Map<string, string[]>();
for (const file of sourceFiles()) {
  const code = readFileSync(join(ROOT, file), "utf8");
  const targets = importsOf(code).map((spec) => relative(ROOT, join(ROOT, dirname(file), spec)));
  graph.set(file, [...new Set(targets)]);
}
/** The folder of src/ a module sits in (`src/hub`), or undefined for mod.ts and files directly in src/. */
function folderOf(file: string): string | undefined {
  const parts = file.split("/");
  return parts.length > 2 && parts[0] === "src" ? `${parts[0]}/${parts[1]}` : undefined;
}

const folders = new Map<string, string[]>();
for (const [file, targets] of graph) {
  const from = folderOf(file);
  if (!from) continue;
  const to = new Set(folders.get(from) ?? []);
  for (const target of targets) {
    const folder = folderOf(target);
    if (folder && folder !== from) to.add(folder);
  }
  folders.set(from, [...to]);
}

let failed = false;
for (const [what, g] of [["modules", graph], ["src/ folders", folders]] as const) {
  const found = cycles(g);
  if (found.length === 0) {
    console.log(`import-cycles: none among ${g.size} ${what}`);
    continue;
  }
  failed = true;
  console.log(`import-cycles: ${found.length} cycle(s) among ${g.size} ${what}:`);
  for (const group of found) {
    console.log(`- ${group.join(", ")}`);
    console.log(`    ${loopThrough(group, g).join(" -> ")}`);
  }
}
if (failed) process.exit(1);
