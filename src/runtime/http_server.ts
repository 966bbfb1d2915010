/**
 * The runtime's own HTTP server on a loopback port, behind one interface:
 * `Deno.serve` under Deno, `Bun.serve` under Bun. src/server's listener
 * puts its connection guard in front of it.
 * @module
 */
import { UnsupportedError } from "../errors.ts";

/**
 * A fetch handler, as `Deno.serve`, `Bun.serve` and Hono's `app.fetch` take it.
 *
 * @example
 * ```ts
 * import type { FetchHandler } from "./http_server.ts";
 * const handler: FetchHandler = () => new Response("ok");
 * ```
 */
export type FetchHandler = (request: Request) => Response | Promise<Response>;

/**
 * A runtime server listening on 127.0.0.1.
 *
 * @example
 * ```ts
 * import { serveLoopback } from "./http_server.ts";
 * const server = await serveLoopback(() => new Response("ok"));
 * console.log(server.port);
 * await server.close();
 * ```
 */
export interface LoopbackServer {
  /** The port the OS chose. */
  readonly port: number;
  /** Stops listening and drops the connections still open. */
  close(): Promise<void>;
}

interface BunServer {
  port: number;
  stop(closeActiveConnections?: boolean): Promise<void> | void;
}

interface BunGlobal {
  serve(options: { hostname: string; port: number; idleTimeout: number; fetch: FetchHandler }): BunServer;
}

/**
 * Serves `handler` on a free port of 127.0.0.1 with the runtime's server,
 * without idle timeouts (the guard in front of it enforces the timeouts);
 * an {@linkcode UnsupportedError} on runtimes with neither server.
 *
 * @example
 * ```ts
 * import { serveLoopback } from "./http_server.ts";
 * const server = await serveLoopback(() => new Response("ok"));
 * console.log(await (await fetch(`http://127.0.0.1:${server.port}/`)).text()); // "ok"
 * await server.close();
 * ```
 */
export async function serveLoopback(handler: FetchHandler): Promise<LoopbackServer> {
  const bun = (globalThis as { Bun?: BunGlobal }).Bun;
  if (bun) {
    // idleTimeout 0: no limit here, so long non-streamed generations are not cut.
    // Bun answers without `Connection: close` even when the request asked for it; say it, so that clients do not
    // reuse a connection that closes after this answer.
    const fetch = async (request: Request) => {
      const response = await handler(request);
      try {
        response.headers.set("connection", "close");
        return response;
      } catch { // immutable headers (a fetched response): copy them
        const headers = new Headers(response.headers);
        headers.set("connection", "close");
        return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
      }
    };
    const server = bun.serve({ hostname: "127.0.0.1", port: 0, idleTimeout: 0, fetch });
    return {
      port: server.port,
      close: async () => {
        await server.stop(true);
      },
    };
  }
  const deno = (globalThis as { Deno?: typeof Deno }).Deno;
  if (!deno) throw new UnsupportedError("serving HTTP needs Deno or Bun; elsewhere export the app's fetch handler");
  const ready = Promise.withResolvers<number>();
  const server = deno.serve({ hostname: "127.0.0.1", port: 0, onListen: ({ port }) => ready.resolve(port) }, handler);
  const port = await ready.promise;
  return {
    port,
    close: async () => {
      await server.shutdown();
    },
  };
}
