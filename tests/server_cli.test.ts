/**
 * examples/serve.ts as an operator runs it, with the runtime running this
 * test (Deno or Bun): it loads the adapters given, prints the URL it
 * listens on, serves completions, reads the admin token from
 * PEFT_EDGE_ADMIN_TOKEN, and stops gracefully on SIGTERM.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import process from "node:process";
import { call, references } from "./support/server_setup.ts";

const isDeno = "Deno" in globalThis;
const LONG = { timeout: 120_000 };

/** The runtime's command line for examples/serve.ts. */
function command(args: string[]): string[] {
  return isDeno ? ["run", "-A", "examples/serve.ts", ...args] : ["examples/serve.ts", ...args];
}

test("serve.ts prints its URL and serves the base and the adapters it was given", LONG, async () => {
  const token = "cli-admin-token-0123456789";
  const child = spawn(
    process.execPath,
    command([
      "--base",
      "examples/demo/byte-llama",
      "--adapter",
      "python=examples/demo/byte-llama-python-lora",
      "--port",
      "0",
      "--host",
      "127.0.0.1",
    ]),
    { env: { ...process.env, PEFT_EDGE_ADMIN_TOKEN: token, NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let stderr = "";
  child.stderr!.on("data", (chunk) => (stderr += chunk));
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let stdout = "";
      child.stdout!.on("data", (chunk) => {
        stdout += chunk;
        const match = stdout.match(/listening on (http:\/\/127\.0\.0\.1:\d+)\n/);
        if (match) resolve(match[1]);
      });
      child.on("exit", (code) => reject(new Error(`serve.ts exited with ${code}: ${stderr}`)));
    });
    const ref = (await references()).find((r) => r.variant === "adapter" && r.prompt === "def ")!;
    const reply = await call(url, "POST", "/v1/completions", {
      body: { model: "python", prompt: "def ", max_tokens: 120, temperature: 0 },
    });
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
    assert.equal(reply.body.choices[0].text, ref.text);
    const models = await call(url, "GET", "/v1/models");
    // deno-lint-ignore no-explicit-any
    assert.deepEqual(models.body.data.map((m: any) => m.id), ["byte-llama", "python"]);
    assert.equal((await call(url, "GET", "/v1/adapters", { token })).status, 200);
    assert.equal((await call(url, "GET", "/v1/adapters", { token: "wrong-token-0123" })).status, 401);
    assert.match(stderr, /loaded adapter python/);
    // SIGTERM: a graceful shutdown (requests in flight finish, then the pool closes), exit code 0.
    const code = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    // Deno's node:child_process reports a child it sent SIGTERM as killed (code null) even when the child
    // handled the signal and exited 0; Bun reports the real code. "stopped" below is printed just before exit(0).
    const exitCode = await code;
    assert.ok(exitCode === 0 || (isDeno && exitCode === null), `exit code ${exitCode}: ${stderr}`);
    assert.match(stderr, /SIGTERM: finishing requests in flight/);
    assert.match(stderr, /stopped/);
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGKILL");
      await exited;
    }
  }
});

test("serve.ts reports a bad command line with exit code 2 and a failing adapter with 1", LONG, async () => {
  const run = (args: string[]) =>
    new Promise<{ code: number; stderr: string }>((resolve) => {
      execFile(process.execPath, command(args), { encoding: "utf8" }, (error, _stdout, stderr) => {
        resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stderr });
      });
    });
  const missing = await run(["--port", "1"]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /--base is required/);
  const badAdapter = await run(["--base", "examples/demo/byte-llama", "--adapter", "python"]);
  assert.equal(badAdapter.code, 2);
  assert.match(badAdapter.stderr, /NAME=<path\|id>/);
  const broken = await run(["--base", "examples/demo/byte-llama", "--adapter", "x=./no/such/folder", "--port", "0"]);
  assert.equal(broken.code, 1);
  assert.match(broken.stderr, /error: .*no such/);
});
