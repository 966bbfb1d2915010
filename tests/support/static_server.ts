/**
 * A static file server on 127.0.0.1 for tests that import the library over
 * HTTP, as a Deno user importing `mod.ts` from a URL would.
 * @module
 */
import { createServer, type Server } from "node:http";
import { readFile } from "node:fs/promises";
import { join, normalize } from "node:path";

/** A running server and how to stop it. */
export interface StaticServer {
  url: string;
  close(): Promise<void>;
}

/** Serves files below `root` (no directory listing, no `..`). */
export async function serveFolder(root: string): Promise<StaticServer> {
  const server: Server = createServer(async (req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname));
    if (path.includes("..")) {
      res.writeHead(400).end();
      return;
    }
    try {
      const body = await readFile(join(root, path));
      const type = path.endsWith(".ts") ? "application/typescript" : "application/octet-stream";
      res.writeHead(200, { "content-type": type, "content-length": body.length }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${address.port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
