/**
 * A static file server on 127.0.0.1 for tests: tests that import the library
 * over HTTP, as a Deno user importing `mod.ts` from a URL would, tests of
 * http(s) URL locations, and pages for headless Chromium. It answers GET and HEAD with `Content-Length` and
 * `Range` (206), and `fail` switches on a broken server.
 * @module
 */
import { createServer, type Server } from "node:http";
import type { Socket } from "node:net";
import { readFile } from "node:fs/promises";
import { join, normalize } from "node:path";

/**
 * How the server misbehaves for files whose path ends with `only` (all when
 * `only` is not set): `drop` sends half the body and closes the connection;
 * `short` announces 100 bytes more than it sends, then ends; `hang` never
 * answers; `trickle` sends 100 bytes every 50 ms; `no-head` answers HEAD
 * with 405 (files still served by GET).
 */
export interface StaticFail {
  mode: "drop" | "short" | "hang" | "trickle" | "no-head";
  only?: string;
  /** Misbehave for this many requests only, then serve normally. */
  times?: number;
}

/** Content types by extension: Deno imports `.ts` by URL, Chromium runs module scripts and streams wasm. */
const TYPES: Record<string, string> = {
  ".ts": "application/typescript",
  ".js": "text/javascript",
  ".mjs": "text/javascript",
  ".html": "text/html",
  ".wasm": "application/wasm",
};

/** A running server and how to stop it. */
export interface StaticServer {
  url: string;
  /** Every request: method, path and Range header. */
  requests: { method: string; path: string; range?: string }[];
  /** The current failure, if any. */
  fail?: StaticFail;
  close(): Promise<void>;
}

/** Serves files below `root` (no directory listing, no `..`). */
export async function serveFolder(root: string): Promise<StaticServer> {
  const sockets = new Set<Socket>();
  const state: StaticServer = {
    url: "",
    requests: [],
    fail: undefined,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
  const server: Server = createServer(async (req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname));
    const range = typeof req.headers.range === "string" ? req.headers.range : undefined;
    state.requests.push({ method: req.method ?? "GET", path, range });
    if (path.includes("..")) {
      res.writeHead(400).end();
      return;
    }
    const spec = state.fail && (!state.fail.only || path.endsWith(state.fail.only)) ? state.fail : undefined;
    const fail = spec?.mode;
    if (spec?.times !== undefined && --spec.times <= 0) state.fail = undefined;
    if (fail === "hang") return;
    let body: Uint8Array;
    try {
      body = new Uint8Array(await readFile(join(root, path)));
    } catch {
      res.writeHead(404).end();
      return;
    }
    const type = TYPES[path.slice(path.lastIndexOf("."))] ?? "application/octet-stream";
    if (req.method === "HEAD") {
      if (fail === "no-head") return void res.writeHead(405).end();
      res.writeHead(200, { "content-type": type, "content-length": body.length, "accept-ranges": "bytes" }).end();
      return;
    }
    const ranged = range?.match(/^bytes=(\d+)-(\d*)$/);
    if (ranged && !fail) {
      const start = Number(ranged[1]);
      const end = Math.min(ranged[2] === "" ? body.length - 1 : Number(ranged[2]), body.length - 1);
      if (start > end) return void res.writeHead(416, { "content-range": `bytes */${body.length}` }).end();
      const part = body.subarray(start, end + 1);
      res.writeHead(206, {
        "content-type": type,
        "content-length": part.length,
        "content-range": `bytes ${start}-${end}/${body.length}`,
      }).end(part);
      return;
    }
    if (fail === "short") {
      res.writeHead(200, { "content-type": type, "content-length": body.length + 100 });
      res.write(body);
      // End the connection with the announced length not reached.
      setTimeout(() => res.socket?.destroy(), 20);
      return;
    }
    res.writeHead(200, { "content-type": type, "content-length": body.length, "accept-ranges": "bytes" });
    if (fail === "drop") {
      res.write(body.subarray(0, body.length >> 1));
      setTimeout(() => res.socket?.destroy(), 20);
      return;
    }
    if (fail === "trickle") {
      let at = 0;
      const timer = setInterval(() => {
        if (at >= body.length) return void (clearInterval(timer), res.end());
        res.write(body.subarray(at, at + 100));
        at += 100;
      }, 50);
      res.on("close", () => clearInterval(timer));
      return;
    }
    res.end(body);
  });
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address() as { port: number };
  state.url = `http://127.0.0.1:${address.port}`;
  return state;
}
