// Every ```ts block of README.md runs as written (from the repository root, importing ./mod.ts): the blocks are
// type-checked together, then each runs in its own Deno process. A block preceded by a line
// `<!-- snippet: skip (reason) -->` is only type-checked (it needs a server that keeps running, or the network).
// Runs once, in the Deno suite.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const repo = fileURLToPath(new URL("..", import.meta.url));
const deno = join(repo, "node_modules/.bin/deno");
const isBun = (globalThis as { Bun?: unknown }).Bun !== undefined;

interface Snippet {
  line: number;
  code: string;
  skip?: string;
}

/** The ```ts blocks of a Markdown text, with their skip markers. */
export function tsBlocks(markdown: string): Snippet[] {
  const lines = markdown.split("\n");
  const blocks: Snippet[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() !== "```ts") continue;
    const end = lines.indexOf("```", i + 1);
    assert.ok(end > i, `README.md:${i + 1}: unclosed block`);
    const before = lines.slice(Math.max(0, i - 2), i).join("\n");
    const skip = /<!-- snippet: skip \(([^)]+)\) -->/.exec(before)?.[1];
    blocks.push({ line: i + 1, code: lines.slice(i + 1, end).join("\n"), skip });
    i = end;
  }
  return blocks;
}

function run(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(deno, args, { cwd: repo, timeout: 180_000, env: { ...process.env, NO_COLOR: "1" } }, (error, out, err) => {
      if (error) reject(new Error(`deno ${args.join(" ")}: ${error.message}\n${out}\n${err}`));
      else resolve(out);
    });
  });
}

test("every README.md TypeScript snippet type-checks, and runs unless marked", {
  skip: isBun ? "runs in the Deno suite" : false,
  timeout: 300_000,
}, async () => {
  const snippets = tsBlocks(await readFile(join(repo, "README.md"), "utf8"));
  assert.ok(snippets.length >= 5, `found ${snippets.length} snippets`);
  assert.ok(snippets.filter((s) => s.skip).length <= 2, "only few snippets may be skipped");
  const files = snippets.map((s) => join(repo, `.readme_snippet_${s.line}.ts`));
  try {
    for (const [i, s] of snippets.entries()) await writeFile(files[i], `${s.code}\nexport {};\n`);
    await run(["check", ...files]);
    for (const [i, s] of snippets.entries()) {
      if (s.skip) continue;
      await run(["run", "-A", "--no-check", files[i]]).catch((error) => {
        throw new Error(`README.md:${s.line}: ${error.message}`);
      });
    }
  } finally {
    for (const file of files) await rm(file, { force: true });
  }
});
