/**
 * A Hub-compatible HTTP server for tests, on 127.0.0.1 (port chosen by the
 * OS). It serves fixture folders (and in-memory files) as model repos, with
 * the endpoints `@huggingface/hub` uses:
 *
 * - `GET /api/models/<repo>/revision/<rev>` -> JSON with `sha` (the commit);
 * - `GET|HEAD /<repo>/resolve/<rev>/<path>` -> the file, with `ETag`,
 *   `X-Repo-Commit`, `X-Linked-Etag`/`X-Linked-Size` for LFS-like files,
 *   `Content-Length`, `Accept-Ranges` and `Range` support (206).
 *
 * Errors carry `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`,
 * `EntryNotFound`, `GatedRepo`) like the real Hub. Every request is logged;
 * `fail` switches on a failure mode, `stop()`/`start()` take the server down
 * and up again on the same port (connection refused in between).
 * Built on `node:http`, which Deno, Bun and Node all implement.
 *
 * Also here: helpers for Hub tests (environment set for one test and
 * restored, a temp cache folder, a Hub started and stopped around a test,
 * a recursive listing of a cache, downloads counted, large test files and
 * their hashes).
 * @module
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { lstat, mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import process from "node:process";

/**
 * One repo served by the test Hub.
 *
 * @example
 * ```ts
 * import type { TestRepo } from "./hub_server.ts";
 * const repo: TestRepo = { folder: "tests/fixtures/llama-tiny-lora-qv", gated: true };
 * ```
 */
export interface TestRepo {
  /** Folder whose files are the repo's files. */
  folder?: string;
  /** Files served in addition to (or instead of) the folder's. */
  files?: Record<string, Uint8Array>;
  /** Commit `main` points to; default derived from the repo id. */
  commit?: string;
  /** Tags (`v1.0`, ...): revisions that point to the first commit, whatever `main` becomes. */
  tags?: string[];
  /** Requires a known token (401 otherwise). */
  private?: boolean;
  /** Files require an approved token (401 without token, 403 with another). */
  gated?: boolean;
}

/**
 * A switchable failure. `{ status }`: every request gets that status (only
 * the next `times` requests when given). `"truncate"`: full downloads are cut
 * in half (the connection dropped). `"hang"`: no request is ever answered.
 * `"drop"`: every connection is closed as soon as a request arrives.
 * `"stall"`: downloads send headers and 1 KiB, then nothing. `"trickle"`:
 * downloads send 100 bytes every 50 ms (2 KiB/s). `"corrupt"`: downloads
 * carry one flipped byte (under the right ETag). `"slow"` is no failure: downloads
 * send 256 KiB every 100 ms (so that concurrent clients overlap). The one-byte `Range:
 * bytes=0-0` probe and the revision API answer normally in the last four.
 *
 * @example
 * ```ts
 * import { startTestHub } from "./hub_server.ts";
 * const hub = await startTestHub({ repos: {} });
 * hub.fail = { status: 503 }; // or "truncate", "hang", ..., or undefined to recover
 * ```
 */
export type FailMode =
  | { status: number; times?: number }
  | "truncate"
  | "hang"
  | "drop"
  | "stall"
  | "trickle"
  | "corrupt"
  | "slow"
  | undefined;

/**
 * A request as the server saw it.
 *
 * @example
 * ```ts
 * import { startTestHub } from "./hub_server.ts";
 * const hub = await startTestHub({ repos: {} });
 * const downloads = hub.requests.filter((r) => r.path.includes("/resolve/") && !r.range);
 * ```
 */
export interface LoggedRequest {
  method: string;
  path: string;
  /** The bearer token sent, if any. */
  token?: string;
  range?: string;
}

/**
 * Options of {@linkcode startTestHub}.
 *
 * @example
 * ```ts
 * import type { TestHubOptions } from "./hub_server.ts";
 * const options: TestHubOptions = { repos: { "org/private": { folder: "x", private: true } }, tokens: ["hf_test"] };
 * ```
 */
export interface TestHubOptions {
  repos: Record<string, TestRepo>;
  /** Tokens that are valid at all. */
  tokens?: string[];
  /** Tokens granted access to gated repos. */
  approvedTokens?: string[];
  /** Called with each request as it arrives, before it is answered (e.g. to switch `fail` on a marker path). */
  onRequest?: (request: LoggedRequest) => void;
}

/**
 * A running test Hub.
 *
 * @example
 * ```ts
 * import { startTestHub, type TestHub } from "./hub_server.ts";
 * const hub: TestHub = await startTestHub({ repos: {} });
 * await hub.stop(); // connection refused from now on
 * await hub.start(); // back on the same port
 * ```
 */
export interface TestHub {
  /** Base URL, `http://127.0.0.1:<port>`. */
  readonly url: string;
  /** Every request so far. */
  readonly requests: LoggedRequest[];
  /** The current failure mode; set it to switch. */
  fail: FailMode;
  /** The commit `main` points to now. */
  commitOf(repo: string): string;
  /** Moves `main` to a new commit (same files). */
  setCommit(repo: string, commit: string): void;
  /** Stops listening: connections are refused until `start()`. */
  stop(): Promise<void>;
  /** Listens again on the same port. */
  start(): Promise<void>;
}

/** Hex digest of bytes. */
async function hexDigest(algorithm: "SHA-1" | "SHA-256", bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest(algorithm, bytes as Uint8Array<ArrayBuffer>));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Git's blob id: SHA-1 of `blob <size>\0<content>`. */
async function gitBlobId(bytes: Uint8Array): Promise<string> {
  const head = new TextEncoder().encode(`blob ${bytes.length}\0`);
  const all = new Uint8Array(head.length + bytes.length);
  all.set(head);
  all.set(bytes, head.length);
  return await hexDigest("SHA-1", all);
}

/** Response headers a cross-origin page may read: those `@huggingface/hub` and downloads use. */
const EXPOSED_HEADERS =
  "ETag, X-Repo-Commit, X-Linked-Etag, X-Linked-Size, X-Error-Code, Content-Range, Content-Length, Accept-Ranges";

/** Files stored with Git LFS on the real Hub. */
function isLfs(path: string, size: number): boolean {
  return /\.(safetensors|onnx|onnx_data|bin|data)$/.test(path) || size > 10_000;
}

/**
 * Starts a test Hub on 127.0.0.1.
 *
 * @example
 * ```ts
 * import { startTestHub } from "./hub_server.ts";
 * const hub = await startTestHub({ repos: { "test/qv": { folder: "tests/fixtures/llama-tiny-lora-qv" } } });
 * // ... hubSource("test/qv", { hubUrl: hub.url }) ...
 * await hub.stop();
 * ```
 */
export async function startTestHub(options: TestHubOptions): Promise<TestHub> {
  const commits = new Map<string, string[]>();
  for (const repo of Object.keys(options.repos)) {
    const first = options.repos[repo].commit ?? (await hexDigest("SHA-1", new TextEncoder().encode(repo)));
    commits.set(repo, [first]);
  }
  const requests: LoggedRequest[] = [];
  const sockets = new Set<Socket>();
  let port = 0;
  let server: Server | undefined;

  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    const bytes = new TextEncoder().encode(JSON.stringify(body));
    res.writeHead(status, {
      "Content-Type": "application/json",
      "Content-Length": String(bytes.length),
      ...headers,
    });
    res.end(bytes);
  };
  const fail = (res: ServerResponse, status: number, code: string, error: string) =>
    send(res, status, { error }, { "X-Error-Code": code });

  const readRepoFile = async (spec: TestRepo, path: string): Promise<Uint8Array | undefined> => {
    if (spec.files?.[path]) return spec.files[path];
    if (!spec.folder || path.split("/").some((s) => s === ".." || s === "")) return undefined;
    const full = `${spec.folder}/${path}`;
    try {
      if (!(await stat(full)).isFile()) return undefined;
      return new Uint8Array(await readFile(full));
    } catch {
      return undefined;
    }
  };

  /** Checks access; answers and returns false when refused. */
  const allowed = (res: ServerResponse, repo: string, spec: TestRepo, token: string | undefined, forFile: boolean) => {
    const known = token !== undefined && (options.tokens ?? []).includes(token);
    if (spec.private && !known) {
      fail(res, 401, "RepoNotFound", "Repository not found or invalid credentials");
      return false;
    }
    if (spec.gated && forFile && !(token && (options.approvedTokens ?? []).includes(token))) {
      const status = known ? 403 : 401;
      fail(res, status, "GatedRepo", `Access to model ${repo} is restricted and you are not in the authorized list.`);
      return false;
    }
    return true;
  };

  const revisionCommit = (repo: string, revision: string): string | undefined => {
    const history = commits.get(repo) ?? [];
    if (revision === "main") return history[history.length - 1];
    if (options.repos[repo]?.tags?.includes(revision)) return history[0];
    return history.includes(revision) ? revision : undefined;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const auth = req.headers.authorization;
    const token = auth?.startsWith("Bearer ") ? auth.slice("Bearer ".length) : undefined;
    const range = typeof req.headers.range === "string" ? req.headers.range : undefined;
    const logged = { method: req.method ?? "GET", path: url.pathname, token, range };
    requests.push(logged);
    options.onRequest?.(logged);
    // CORS as the real Hub answers it, so that a page on another origin (the browser tests) can use this Hub.
    res.setHeader("Access-Control-Allow-Origin", "*");
    res.setHeader("Access-Control-Expose-Headers", EXPOSED_HEADERS);
    if (req.method === "OPTIONS") {
      res.writeHead(204, {
        "Access-Control-Allow-Methods": "GET, HEAD",
        "Access-Control-Allow-Headers": "Authorization, Range, Accept, Content-Type",
        "Access-Control-Max-Age": "0",
      });
      return void res.end();
    }
    const mode = hub.fail;
    if (mode === "hang") return; // never answered; stop() closes the socket
    if (mode === "drop") return void req.socket.destroy();
    if (typeof mode === "object") {
      if (mode.times !== undefined && --mode.times <= 0) hub.fail = undefined;
      // Retry-After: 0 keeps clients' retries (with backoff otherwise) fast in tests.
      return send(res, mode.status, { error: `simulated failure ${mode.status}` }, { "Retry-After": "0" });
    }

    const api = url.pathname.match(/^\/api\/models\/(.+)\/revision\/([^/]+)$/);
    if (api) {
      const repo = decodeURIComponent(api[1]);
      const spec = options.repos[repo];
      if (!spec) return fail(res, 404, "RepoNotFound", "Repository not found");
      if (!allowed(res, repo, spec, token, false)) return;
      const revision = decodeURIComponent(api[2]);
      const commit = revisionCommit(repo, revision === "HEAD" ? "main" : revision);
      if (!commit) return fail(res, 404, "RevisionNotFound", `Invalid rev id: ${revision}`);
      return send(res, 200, {
        _id: `id-${repo}`,
        id: repo,
        sha: commit,
        private: spec.private ?? false,
        gated: spec.gated ? "manual" : false,
        downloads: 0,
        likes: 0,
        lastModified: new Date(0).toISOString(),
      });
    }

    const resolve = url.pathname.match(/^\/([^/]+(?:\/[^/]+)?)\/resolve\/([^/]+)\/(.+)$/);
    if (!resolve) return fail(res, 404, "", "no such endpoint");
    const repo = decodeURIComponent(resolve[1]);
    const spec = options.repos[repo];
    if (!spec) return fail(res, 404, "RepoNotFound", "Repository not found");
    if (!allowed(res, repo, spec, token, true)) return;
    const revision = decodeURIComponent(resolve[2]);
    const commit = revisionCommit(repo, revision);
    if (!commit) return fail(res, 404, "RevisionNotFound", `Invalid rev id: ${revision}`);
    const path = decodeURIComponent(resolve[3]);
    const bytes = await readRepoFile(spec, path);
    if (!bytes) return fail(res, 404, "EntryNotFound", `Entry not found: ${path}`);

    const headers: Record<string, string> = {
      "Content-Type": "application/octet-stream",
      "Accept-Ranges": "bytes",
      "X-Repo-Commit": commit,
      ETag: `"${await gitBlobId(bytes)}"`,
    };
    if (isLfs(path, bytes.length)) {
      const sha = await hexDigest("SHA-256", bytes);
      headers.ETag = `"${sha}"`;
      headers["X-Linked-Etag"] = `"${sha}"`;
      headers["X-Linked-Size"] = String(bytes.length);
    }
    const body = req.method !== "HEAD" && range !== "bytes=0-0";
    if (body && (mode === "stall" || mode === "trickle" || mode === "slow")) {
      res.writeHead(200, { ...headers, "Content-Length": String(bytes.length) });
      if (mode === "stall") return void res.write(bytes.subarray(0, 1024));
      const step = mode === "slow" ? 256 * 1024 : 100;
      let at = 0;
      const timer = setInterval(() => {
        if (at >= bytes.length) return void (clearInterval(timer), res.end());
        res.write(bytes.subarray(at, at + step));
        at += step;
      }, mode === "slow" ? 100 : 50);
      res.on("close", () => clearInterval(timer));
      return;
    }
    const ranged = range?.match(/^bytes=(\d+)-(\d*)$/);
    if (ranged) {
      const start = Number(ranged[1]);
      const end = Math.min(ranged[2] === "" ? bytes.length - 1 : Number(ranged[2]), bytes.length - 1);
      const part = bytes.subarray(start, end + 1);
      res.writeHead(206, {
        ...headers,
        "Content-Range": `bytes ${start}-${end}/${bytes.length}`,
        "Content-Length": String(part.length),
      });
      return res.end(req.method === "HEAD" ? undefined : part);
    }
    res.writeHead(200, { ...headers, "Content-Length": String(bytes.length) });
    if (req.method === "HEAD") return res.end();
    if (mode === "corrupt") {
      const flipped = bytes.slice();
      flipped[flipped.length >> 1] ^= 0x01;
      return res.end(flipped);
    }
    if (mode === "truncate") {
      res.write(bytes.subarray(0, Math.floor(bytes.length / 2)));
      // Let the half body leave, then drop the connection mid-body.
      return setTimeout(() => res.socket?.destroy(), 20);
    }
    res.end(bytes);
  };

  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const s = createServer((req, res) => {
        handle(req, res).catch((error) => {
          if (!res.headersSent) fail(res, 500, "", String(error));
          else res.socket?.destroy();
        });
      });
      s.on("connection", (socket: Socket) => {
        sockets.add(socket);
        socket.on("close", () => sockets.delete(socket));
      });
      s.once("error", reject);
      s.listen(port, "127.0.0.1", () => {
        port = (s.address() as AddressInfo).port;
        server = s;
        resolve();
      });
    });

  const hub: TestHub = {
    get url() {
      return `http://127.0.0.1:${port}`;
    },
    requests,
    fail: undefined,
    commitOf: (repo) => revisionCommit(repo, "main") ?? "",
    setCommit: (repo, commit) => commits.get(repo)?.push(commit),
    stop: () =>
      new Promise<void>((resolve) => {
        const s = server;
        server = undefined;
        if (!s) return resolve();
        for (const socket of sockets) socket.destroy();
        sockets.clear();
        s.close(() => resolve());
      }),
    start: () => (server ? Promise.resolve() : listen()),
  };
  await listen();
  return hub;
}

/**
 * The environment variables the Hub code reads; cleared for every test.
 *
 * @example
 * ```ts
 * import { HUB_ENV } from "./hub_server.ts";
 * console.log(HUB_ENV.includes("HF_TOKEN")); // true
 * ```
 */
export const HUB_ENV = [
  "HF_ENDPOINT",
  "HF_TOKEN",
  "HF_HOME",
  "HF_HUB_CACHE",
  "HUGGINGFACE_HUB_CACHE",
  "HF_HUB_OFFLINE",
  "HF_TOKEN_PATH",
] as const;

/**
 * Runs `fn` with the Hub variables cleared and `vars` set, then restores
 * the environment exactly.
 *
 * @example
 * ```ts
 * import { withEnv } from "./hub_server.ts";
 * await withEnv({ HF_HUB_OFFLINE: "1" }, async () => {});
 * ```
 */
export async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => T | Promise<T>): Promise<T> {
  const names = new Set<string>([...HUB_ENV, ...Object.keys(vars)]);
  const saved = new Map<string, string | undefined>();
  for (const name of names) {
    saved.set(name, process.env[name]);
    const value = vars[name];
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  try {
    return await fn();
  } finally {
    for (const [name, value] of saved) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
}

/**
 * Runs `fn` with a fresh temp folder, removed afterwards.
 *
 * @example
 * ```ts
 * import { withTempDir } from "./hub_server.ts";
 * await withTempDir(async (dir) => console.log(dir));
 * ```
 */
export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(`${tmpdir()}/peft-edge-hub-`);
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Every file and symlink below `dir`, as paths relative to it (sorted);
 * `[]` when `dir` does not exist.
 *
 * @example
 * ```ts
 * import { listTree } from "./hub_server.ts";
 * console.log(await listTree("/tmp/cache"));
 * ```
 */
export async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string) => {
    let names: string[];
    try {
      names = await readdir(rel ? `${dir}/${rel}` : dir);
    } catch {
      return;
    }
    for (const name of names) {
      const path = rel ? `${rel}/${name}` : name;
      const info = await lstat(`${dir}/${path}`);
      if (info.isDirectory()) await walk(path);
      else out.push(path);
    }
  };
  await walk("");
  return out.sort();
}

/**
 * Runs `fn` with a test Hub started from `options`, its failure mode reset
 * and the Hub stopped afterwards.
 *
 * @example
 * ```ts
 * import { withTestHub } from "./hub_server.ts";
 * await withTestHub({ repos: {} }, async (hub) => console.log(hub.url));
 * ```
 */
export async function withTestHub<T>(options: TestHubOptions, fn: (hub: TestHub) => Promise<T>): Promise<T> {
  const hub = await startTestHub(options);
  try {
    return await fn(hub);
  } finally {
    hub.fail = undefined;
    await hub.stop();
  }
}

/**
 * Runs `fn` with the Hub variables cleared ({@linkcode withEnv}), a fresh
 * cache folder ({@linkcode withTempDir}) and a test Hub ({@linkcode withTestHub}).
 *
 * @example
 * ```ts
 * import { withHubAndCache } from "./hub_server.ts";
 * await withHubAndCache({ repos: {} }, async (hub, cacheDir) => console.log(hub.url, cacheDir));
 * ```
 */
export function withHubAndCache(
  options: TestHubOptions,
  fn: (hub: TestHub, cacheDir: string) => Promise<void>,
): Promise<void> {
  return withEnv({}, () => withTempDir((cacheDir) => withTestHub(options, (hub) => fn(hub, cacheDir))));
}

/**
 * Requests that downloaded `file` (not the `bytes=0-0` probes).
 *
 * @example
 * ```ts
 * import { fullDownloads, type TestHub } from "./hub_server.ts";
 * const count = (hub: TestHub) => fullDownloads(hub, "adapter_model.safetensors").length;
 * ```
 */
export function fullDownloads(hub: TestHub, file: string): LoggedRequest[] {
  return hub.requests.filter((r) => r.path.endsWith(file) && r.range !== "bytes=0-0");
}

/**
 * `length` pseudo-random bytes from `seed` (a linear congruential
 * generator): a large file whose chunks all differ.
 *
 * @example
 * ```ts
 * import { variedBytes } from "./hub_server.ts";
 * const big = variedBytes(4 << 20, 777); // 4 MiB
 * ```
 */
export function variedBytes(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let x = seed;
  for (let i = 0; i < bytes.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    bytes[i] = x >>> 24;
  }
  return bytes;
}

/**
 * The SHA-256 of `bytes`, as lowercase hex (what the Hub names LFS blobs by).
 *
 * @example
 * ```ts
 * import { sha256Hex } from "./hub_server.ts";
 * console.log(await sha256Hex(new Uint8Array(0))); // e3b0c442...
 * ```
 */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}
