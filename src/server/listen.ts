/**
 * {@linkcode listen}: serves a fetch handler (the app's `fetch`) on a TCP
 * address with limits the runtimes' servers lack: a deadline for the
 * request head (a client trickling its headers a byte at a time is cut
 * off), a cap on open connections (503 with `Retry-After` beyond it), and a
 * graceful shutdown. A small guard (`node:net`, which Deno and Bun both
 * implement) reads each request head, then hands the connection to the
 * runtime's server on a loopback port. Each connection carries one request
 * (the head is rewritten to `Connection: close`), so every request meets
 * the head deadline, including the second one a keep-alive client would send.
 *
 * The handler's requests carry a signal of the guard's own that aborts when
 * the client closes its connection before the answer is complete (the
 * future `Deno.serve` behaviour): so the app never reads the runtime's
 * `request.signal`, which on Deno also aborts after every successful
 * response (the legacy behaviour) and warns when it is read.
 * @module
 */
import { type FetchHandler, serveLoopback } from "../runtime/http_server.ts";
import { loadNet, type Socket } from "../runtime/net.ts";
import { ResponseEnd } from "./response_end.ts";

/**
 * Options of {@linkcode listen}.
 *
 * @example
 * ```ts
 * import type { ListenOptions } from "./listen.ts";
 * const options: ListenOptions = { hostname: "127.0.0.1", port: 8000, headerTimeoutMs: 5000, maxConnections: 128 };
 * ```
 */
export interface ListenOptions {
  /** The address to listen on (default 127.0.0.1). */
  hostname?: string;
  /** The port (default 8000; 0 lets the OS choose). */
  port?: number;
  /** Time a connection has to send its whole request head (default 10 s). */
  headerTimeoutMs?: number;
  /** Largest request head in bytes (default 32 KiB; 431 beyond). */
  maxHeaderBytes?: number;
  /** Open connections at most; more are answered 503 with `Retry-After` and closed (default 256). */
  maxConnections?: number;
  /** Receives one line per refused or cut-off connection (default none). */
  onLog?: (message: string) => void;
}

/**
 * Options of {@linkcode RunningServer.shutdown}.
 *
 * @example
 * ```ts
 * import type { ShutdownOptions } from "./listen.ts";
 * const stop = new AbortController(); // the app's `stopSignal`
 * const options: ShutdownOptions = { graceMs: 10_000, cancel: () => stop.abort() };
 * ```
 */
export interface ShutdownOptions {
  /** How long requests in flight may take to finish (default 10 s). */
  graceMs?: number;
  /** Called once the grace has passed with requests still in flight: cancel them (the app's `stopSignal`). */
  cancel?: () => void;
}

/**
 * A server started by {@linkcode listen}.
 *
 * @example
 * ```ts
 * import type { RunningServer } from "./listen.ts";
 * declare const server: RunningServer;
 * console.log(server.url, server.connections());
 * await server.shutdown({ graceMs: 5000 });
 * ```
 */
export interface RunningServer {
  /** `http://host:port`. */
  readonly url: string;
  /** The port listened on. */
  readonly port: number;
  /** Connections open now. */
  connections(): number;
  /**
   * Stops accepting connections, drops those still sending their head,
   * lets requests in flight finish for `graceMs`, then calls `cancel` and
   * closes what is left. Resolves when everything is closed.
   */
  shutdown(options?: ShutdownOptions): Promise<void>;
}

const HEAD_END = new Uint8Array([13, 10, 13, 10]);

/** The header by which the guard names a request's connection to the handler (a client's own is dropped). */
const CONNECTION_ID = "x-peft-edge-connection";

/** Index just past the blank line ending a request head, or -1. */
function headEnd(bytes: Uint8Array, from: number): number {
  outer: for (let i = Math.max(0, from - 3); i + 4 <= bytes.length; i++) {
    for (let k = 0; k < 4; k++) if (bytes[i + k] !== HEAD_END[k]) continue outer;
    return i + 4;
  }
  return -1;
}

/**
 * The head with its connection headers replaced by `Connection: close` and the guard's connection id (latin1
 * keeps every byte).
 */
function oneRequestHead(head: Uint8Array, id: string): Uint8Array {
  const text = new TextDecoder("latin1").decode(head);
  const lines = text.slice(0, -4).split("\r\n");
  const dropped = new RegExp(`^(connection|keep-alive|${CONNECTION_ID})\\s*:`, "i");
  const kept = lines.filter((line, i) => i === 0 || !dropped.test(line));
  const out = `${kept.join("\r\n")}\r\nConnection: close\r\n${CONNECTION_ID}: ${id}\r\n\r\n`;
  const bytes = new Uint8Array(out.length);
  for (let i = 0; i < out.length; i++) bytes[i] = out.charCodeAt(i);
  return bytes;
}

/** A complete HTTP/1.1 error answer with a JSON body, written before closing a connection. */
function rawError(status: string, type: string, message: string, extra = ""): string {
  const body = JSON.stringify({ error: { message, type, param: null, code: null } });
  return `HTTP/1.1 ${status}\r\ncontent-type: application/json; charset=utf-8\r\n${extra}` +
    `content-length: ${new TextEncoder().encode(body).length}\r\nconnection: close\r\n\r\n${body}`;
}

/** A client connection of the guard. */
interface Connection {
  /** Whether its head has been handed to the runtime's server. */
  forwarded: boolean;
  /** Whether the answer has passed complete. */
  answered: boolean;
  /** Its id in the forwarded head. */
  id?: string;
  upstream?: Socket;
}

/**
 * The request with the guard's departure signal instead of the runtime's (and without the id header); a request
 * naming a connection that has already closed gets an aborted signal, one naming none (not through the guard) is
 * passed on as it is.
 */
function withDeparture(request: Request, departures: ReadonlyMap<string, AbortController>): Request {
  const id = request.headers.get(CONNECTION_ID);
  if (id === null) return request;
  const headers = new Headers(request.headers);
  headers.delete(CONNECTION_ID);
  const signal = departures.get(id)?.signal ??
    AbortSignal.abort(new DOMException("the client closed the connection", "AbortError"));
  // Built from the URL, not from `request`: copying a request reads its signal, and on Deno reading it warns.
  const init: RequestInit & { duplex?: "half" } = {
    method: request.method,
    headers,
    body: request.body,
    signal,
    duplex: "half", // a streamed body passes through as it arrives
  };
  return new Request(request.url, init);
}

/** Answers and closes: the answer gets a moment to leave before the socket is dropped (peers that keep sending). */
function refuse(socket: Socket, answer: string): void {
  socket.end(answer);
  setTimeout(() => socket.destroy(), 200);
}

function positive(name: string, value: number | undefined, fallback: number): number {
  const n = value ?? fallback;
  if (!Number.isSafeInteger(n) || n <= 0) throw new RangeError(`${name} must be a positive integer, got ${value}`);
  return n;
}

/**
 * Serves `handler` with the guard in front; resolves once listening.
 *
 * @example
 * ```ts
 * import { listen } from "./listen.ts";
 * const server = await listen(() => new Response("ok"), { port: 0, headerTimeoutMs: 2000 });
 * console.log(await (await fetch(server.url)).text()); // "ok"
 * await server.shutdown();
 * ```
 */
export async function listen(handler: FetchHandler, options: ListenOptions = {}): Promise<RunningServer> {
  const hostname = options.hostname ?? "127.0.0.1";
  const headerTimeoutMs = positive("headerTimeoutMs", options.headerTimeoutMs, 10_000);
  const maxHeaderBytes = positive("maxHeaderBytes", options.maxHeaderBytes, 32 * 1024);
  const maxConnections = positive("maxConnections", options.maxConnections, 256);
  const log = options.onLog ?? (() => {});
  const net = await loadNet();
  /** Per forwarded connection, the signal its request gets: aborted when the client leaves before the answer ends. */
  const departures = new Map<string, AbortController>();
  const inner = await serveLoopback((request) => handler(withDeparture(request, departures)));
  /** Open client connections, and whether each one's head has been handed over. */
  const open = new Map<Socket, Connection>();
  const allClosed: Array<() => void> = [];
  const forget = (socket: Socket) => {
    if (!open.delete(socket)) return;
    if (open.size === 0) { for (const done of allClosed.splice(0)) done(); }
  };
  let stopping = false;

  const onConnection = (client: Socket) => {
    client.on("error", () => {}); // a reset by the peer ends the connection; nothing to report
    if (stopping || open.size >= maxConnections) {
      log(`refused a connection: ${open.size} open (max ${maxConnections})${stopping ? ", shutting down" : ""}`);
      refuse(
        client,
        rawError(
          "503 Service Unavailable",
          "service_unavailable",
          stopping ? "the server is shutting down" : "too many connections; retry later",
          "retry-after: 1\r\n",
        ),
      );
      return;
    }
    const state: Connection = { forwarded: false, answered: false };
    open.set(client, state);
    client.on("close", () => {
      clearTimeout(timer);
      state.upstream?.destroy();
      if (state.id !== undefined) {
        const gone = departures.get(state.id);
        departures.delete(state.id);
        if (!state.answered) gone?.abort(new DOMException("the client closed the connection", "AbortError"));
      }
      forget(client);
    });
    // A peer that hangs up before its head is complete: nothing to answer.
    client.on("end", () => {
      if (!state.forwarded) client.destroy();
    });
    const timer = setTimeout(() => {
      log(`closed a connection that sent no complete request head within ${headerTimeoutMs} ms`);
      state.forwarded = true; // ignore what follows
      refuse(client, rawError("408 Request Timeout", "invalid_request_error", "the request head took too long"));
    }, headerTimeoutMs);
    let buffered = new Uint8Array(0);
    client.on("data", (chunk) => {
      if (state.forwarded) return;
      const from = buffered.length;
      const joined = new Uint8Array(buffered.length + chunk.length);
      joined.set(buffered);
      joined.set(chunk, buffered.length);
      buffered = joined;
      const end = headEnd(buffered, from);
      if (end < 0) {
        if (buffered.length > maxHeaderBytes) {
          clearTimeout(timer);
          refuse(
            client,
            rawError("431 Request Header Fields Too Large", "invalid_request_error", "the request head is too large"),
          );
          state.forwarded = true; // ignore what follows
        }
        return;
      }
      if (end > maxHeaderBytes) {
        clearTimeout(timer);
        state.forwarded = true;
        refuse(
          client,
          rawError("431 Request Header Fields Too Large", "invalid_request_error", "the request head is too large"),
        );
        return;
      }
      clearTimeout(timer);
      state.forwarded = true;
      client.pause();
      client.removeAllListeners("data");
      const upstream = net.connect(inner.port, "127.0.0.1");
      state.upstream = upstream;
      upstream.setNoDelay(true);
      client.setNoDelay(true);
      upstream.on("error", () => client.destroy());
      // The answer may still be on its way: `pipe` ends the client after it, and once it has left, the
      // connection is closed (a keep-alive client would otherwise hold it open, counted, with nothing to do).
      upstream.on("close", () => client.end());
      client.on("finish", () => client.destroy());
      state.id = crypto.randomUUID();
      departures.set(state.id, new AbortController());
      upstream.write(oneRequestHead(buffered.subarray(0, end), state.id));
      if (end < buffered.length) upstream.write(buffered.subarray(end));
      client.pipe(upstream);
      upstream.pipe(client);
      // Once the answer is complete the connection is done, whatever the runtime's server still waits for.
      const answer = new ResponseEnd(new TextDecoder("latin1").decode(buffered.subarray(0, 8)).split(" ")[0]);
      upstream.on("data", (chunk) => {
        if (answer.feed(chunk)) {
          state.answered = true;
          upstream.removeAllListeners("data");
          upstream.destroy();
        }
      });
      client.resume();
    });
  };

  const server = net.createServer(onConnection);
  const port = await new Promise<number>((resolve, reject) => {
    server.on("error", reject);
    server.listen(options.port ?? 8000, hostname, () => {
      const address = server.address();
      resolve(typeof address === "object" && address ? address.port : 0);
    });
  });
  server.on("error", (error) => log(`listener error: ${error.message}`));
  const url = `http://${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
  let shutdown: Promise<void> | undefined;

  const stop = async (shutdownOptions: ShutdownOptions) => {
    stopping = true;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const [socket, state] of open) if (!state.forwarded) socket.destroy();
    const drained = () => open.size === 0 ? Promise.resolve() : new Promise<void>((resolve) => allClosed.push(resolve));
    /** Whether everything closed within `ms` (the timer is cleared either way, so it holds no process open). */
    const drainedWithin = async (ms: number) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
      try {
        return await Promise.race([drained().then(() => true), late]);
      } finally {
        clearTimeout(timer);
      }
    };
    const graceMs = shutdownOptions.graceMs ?? 10_000;
    if (!await drainedWithin(graceMs)) {
      log(`cancelling ${open.size} request(s) still in flight after ${graceMs} ms`);
      shutdownOptions.cancel?.();
      if (!await drainedWithin(2000)) { for (const socket of open.keys()) socket.destroy(); }
    }
    await inner.close();
    await closed;
  };

  return {
    url,
    port,
    connections: () => open.size,
    shutdown: (shutdownOptions = {}) => (shutdown ??= stop(shutdownOptions)),
  };
}
