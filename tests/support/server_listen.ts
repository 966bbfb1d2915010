/**
 * Serves a fetch handler on 127.0.0.1 (port chosen by the OS) the way the
 * service runs in production: src/server's `listen` (its connection guard
 * in front of `Deno.serve` or `Bun.serve`).
 * @module
 */
import { listen as listenGuarded, type ListenOptions, type RunningServer } from "../../src/server/listen.ts";

/** A running server. */
export interface Listening {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string;
  /** The server itself (connections, shutdown options). */
  readonly server: RunningServer;
  /** Stops listening and drops open connections. */
  close(): Promise<void>;
}

type Handler = (request: Request) => Response | Promise<Response>;

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
export async function listen(handler: Handler, options: ListenOptions = {}): Promise<Listening> {
  const server = await listenGuarded(handler, { hostname: "127.0.0.1", ...options, port: 0 });
  return { url: server.url, server, close: () => server.shutdown({ graceMs: 1 }) };
}
