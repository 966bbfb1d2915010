/**
 * The runtime boundary for TCP: `node:net`, which Deno, Bun and Node all
 * implement, loaded lazily so browsers and edge runtimes never load it
 * unless a server is started.
 * @module
 */

/**
 * A TCP socket: the subset of `node:net`'s that src/server's listener uses.
 *
 * @example
 * ```ts
 * import type { Socket } from "./net.ts";
 * declare const socket: Socket;
 * socket.end("bye");
 * ```
 */
export interface Socket {
  write(data: Uint8Array | string): boolean;
  end(data?: string): void;
  destroy(): void;
  pause(): void;
  resume(): void;
  pipe(to: Socket): Socket;
  setNoDelay(noDelay?: boolean): void;
  on(event: "data", listener: (chunk: Uint8Array) => void): Socket;
  on(event: "close" | "end" | "finish", listener: () => void): Socket;
  on(event: "error", listener: (error: Error) => void): Socket;
  removeAllListeners(event: string): Socket;
}

/**
 * A TCP server: the subset of `node:net`'s `Server` the listener uses.
 *
 * @example
 * ```ts
 * import type { NetServer } from "./net.ts";
 * declare const server: NetServer;
 * server.close();
 * ```
 */
export interface NetServer {
  listen(port: number, hostname: string, callback: () => void): void;
  address(): { port: number } | string | null;
  close(callback?: () => void): void;
  on(event: "error", listener: (error: Error) => void): NetServer;
}

/**
 * `node:net`'s `createServer` and `connect`.
 *
 * @example
 * ```ts
 * import { loadNet } from "./net.ts";
 * const net = await loadNet();
 * const server = net.createServer((socket) => socket.end());
 * ```
 */
export interface Net {
  createServer(listener: (socket: Socket) => void): NetServer;
  connect(port: number, host: string): Socket;
}

/**
 * Loads `node:net`.
 *
 * @example
 * ```ts
 * import { loadNet } from "./net.ts";
 * const socket = (await loadNet()).connect(8000, "127.0.0.1");
 * socket.destroy();
 * ```
 */
export async function loadNet(): Promise<Net> {
  return await import("node:net") as unknown as Net;
}
