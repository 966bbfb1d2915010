/**
 * Serves a fetch handler on 127.0.0.1 (port chosen by the OS) with the
 * runtime's own server: `Deno.serve` under Deno, `Bun.serve` under Bun.
 * The only runtime switch the server tests need.
 * @module
 */

/** A running server. */
export interface Listening {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string;
  /** Stops listening and drops open connections. */
  close(): Promise<void>;
}

type Handler = (request: Request) => Response | Promise<Response>;

interface BunServer {
  port: number;
  stop(closeActiveConnections?: boolean): Promise<void> | void;
}

interface BunGlobal {
  serve(options: { hostname: string; port: number; idleTimeout: number; fetch: Handler }): BunServer;
}

/**
 * Starts serving `handler` on a free loopback port.
 *
 * @example
 * ```ts
 * import { listen } from "./server_listen.ts";
 * const server = await listen(() => new Response("ok"));
 * console.log(await (await fetch(server.url)).text());
 * await server.close();
 * ```
 */
export async function listen(handler: Handler): Promise<Listening> {
  const bun = (globalThis as { Bun?: BunGlobal }).Bun;
  if (bun) {
    const server = bun.serve({ hostname: "127.0.0.1", port: 0, idleTimeout: 255, fetch: handler });
    return {
      url: `http://127.0.0.1:${server.port}`,
      close: async () => {
        await server.stop(true);
      },
    };
  }
  const deno = (globalThis as { Deno?: typeof Deno }).Deno;
  if (!deno) throw new Error("the server tests run under Deno or Bun");
  const ready = Promise.withResolvers<number>();
  const server = deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: ({ port }) => ready.resolve(port),
  }, handler);
  const port = await ready.promise;
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      await server.shutdown();
    },
  };
}
