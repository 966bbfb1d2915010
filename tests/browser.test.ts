// The browser demo (examples/browser) from a plain esbuild bundle of mod.ts, in headless Chromium: the demo base
// and adapter, loaded by URL from the test's server on 127.0.0.1, reproduce the reference greedy generations (examples/demo/reference_generations.json), streamed into
// the page, with only wasmPaths pointing at the served onnxruntime files, and onnxruntime's WASM-only build (its
// WebGPU build is a separate chunk that is never fetched). Runs once, in the Deno suite; tests/run_all.sh
// installs Debian's chromium when missing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFile, mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { extname, join, normalize } from "node:path";
import { bundleForBrowser, chromiumSkip, REPO, runInRepo } from "./support/browser.ts";

const TYPES: Record<string, string> = {
  ".html": "text/html",
  ".js": "text/javascript",
  ".mjs": "text/javascript",
  ".wasm": "application/wasm",
  ".json": "application/json",
};

/** Serves URL prefixes from folders: `/models/` the demo, `/ort/` onnxruntime-web's dist, `/` the bundle. */
async function serveMounts(mounts: Array<[prefix: string, folder: string]>) {
  const missing: string[] = [];
  const server = createServer(async (req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname));
    const mount = mounts.find(([prefix]) => path.startsWith(prefix));
    if (!mount || path.includes("..")) {
      missing.push(path);
      return void res.writeHead(404).end();
    }
    try {
      const body = await readFile(join(mount[1], path.slice(mount[0].length) || "index.html"));
      const type = TYPES[extname(path) || ".html"] ?? "application/octet-stream";
      res.writeHead(200, { "content-type": type, "content-length": body.length }).end(body);
    } catch {
      missing.push(path);
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}/`, missing, close: () => new Promise((resolve) => server.close(resolve)) };
}

test("headless Chromium runs the esbuild bundle of the browser demo and reproduces the reference generations", {
  skip: chromiumSkip,
  timeout: 240_000,
}, async () => {
  const out = await mkdtemp(join(tmpdir(), "peft-edge-browser-"));
  const server = await serveMounts([
    ["/models/", join(REPO, "examples/demo")],
    ["/ort/", join(REPO, "node_modules/onnxruntime-web/dist")],
    ["/", out],
  ]);
  try {
    await bundleForBrowser("examples/browser/main.ts", out);
    await copyFile(join(REPO, "examples/browser/index.html"), join(out, "index.html"));
    const reference = JSON.parse(await readFile(join(REPO, "examples/demo/reference_generations.json"), "utf8"));
    const wanted = (reference.generations as Array<{ prompt: string; variant: string; text: string }>)
      .filter((g) => g.prompt === "The " || g.prompt === "def ");
    const jobs = wanted.map((g) => ({
      which: g.variant === "base" ? "base" : "python",
      prompt: g.prompt,
      maxNewTokens: 120,
    }));
    const stdout = await runInRepo("node", ["tests/support/browser_demo.mjs", server.url, JSON.stringify(jobs)]);
    const result = JSON.parse(stdout.trim().split("\n").pop()!);
    // Optional files a URL location probes for are answered 404; Chromium logs each as a console error.
    const notFound = /^Failed to load resource: the server responded with a status of 404/;
    assert.deepEqual((result.errors as string[]).filter((e) => !notFound.test(e)), []);
    assert.equal((result.errors as string[]).length, server.missing.length, "every 404 logged is one the server sent");
    assert.deepEqual(
      server.missing.sort(),
      ["/models/byte-llama/chat_template.jinja", "/models/byte-llama/chat_template.json"],
      "only the optional chat template files are missing",
    );
    result.generations.forEach((g: { text: string; shown: string }, i: number) => {
      assert.equal(g.text, wanted[i].text, `${jobs[i].which} ${JSON.stringify(jobs[i].prompt)}`);
      assert.equal(g.shown, g.text, "the streamed pieces shown in the page add up to the text");
    });
    for (const file of ["byte-llama/onnx/model.onnx", "byte-llama-python-lora/adapter_model.safetensors"]) {
      assert.ok((result.requests as string[]).includes(`/models/${file}`), `the page fetched ${file} by URL`);
    }
    const wasm = (result.requests as string[]).filter((p) => p.endsWith(".wasm"));
    assert.deepEqual(wasm, ["/ort/ort-wasm-simd-threaded.wasm"], "only onnxruntime's WASM-only build is fetched");
    assert.ok(!(result.requests as string[]).some((p) => p.includes("webgpu")), "the WebGPU build is never loaded");
  } finally {
    await server.close();
    await rm(out, { recursive: true, force: true });
  }
});
