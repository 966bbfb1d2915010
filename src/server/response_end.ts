/**
 * Where an HTTP/1.1 response ends, found from its bytes as they pass:
 * after `Content-Length` body bytes, after the last chunk of a chunked
 * body, or at the head for `HEAD` requests and bodiless statuses. The
 * listener closes a connection there, since Deno's server keeps reading
 * a request body the app gave up on (a trickling client) after answering.
 * @module
 */

type State = "head" | "length" | "size" | "data" | "data-end" | "trailer" | "done" | "until-close";

/**
 * Watches one response; {@linkcode ResponseEnd.feed} says when it is complete.
 *
 * @example
 * ```ts
 * import { ResponseEnd } from "./response_end.ts";
 * const end = new ResponseEnd("GET");
 * end.feed(new TextEncoder().encode("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")); // true
 * ```
 */
export class ResponseEnd {
  #state: State = "head";
  #line = "";
  #left = 0;
  readonly #headRequest: boolean;

  /** Watches the answer to a request with this method. */
  constructor(method: string) {
    this.#headRequest = method.toUpperCase() === "HEAD";
  }

  /** Takes the next bytes of the response; true once it is complete (later bytes are not looked at). */
  feed(bytes: Uint8Array): boolean {
    for (let i = 0; i < bytes.length && this.#state !== "done" && this.#state !== "until-close"; i++) {
      const byte = bytes[i];
      switch (this.#state) {
        case "length": {
          const take = Math.min(this.#left, bytes.length - i);
          this.#left -= take;
          i += take - 1;
          if (this.#left === 0) this.#state = "done";
          break;
        }
        case "data": {
          const take = Math.min(this.#left, bytes.length - i);
          this.#left -= take;
          i += take - 1;
          if (this.#left === 0) this.#state = "data-end";
          break;
        }
        case "data-end":
          if (byte === 10) this.#state = "size";
          break;
        default:
          this.#line += String.fromCharCode(byte);
          if (this.#line.endsWith("\r\n")) this.#endOfLine(this.#line.slice(0, -2));
          else if (this.#line.length > 64 * 1024) this.#state = "until-close"; // not HTTP as expected
      }
    }
    return this.#state === "done";
  }

  #head: string[] = [];

  #endOfLine(line: string): void {
    this.#line = "";
    if (this.#state === "head") {
      if (line !== "") {
        this.#head.push(line);
        return;
      }
      this.#startBody();
    } else if (this.#state === "size") {
      const size = parseInt(line.split(";")[0].trim(), 16);
      if (!Number.isFinite(size) || size < 0) this.#state = "until-close";
      else if (size === 0) this.#state = "trailer";
      else {
        this.#left = size;
        this.#state = "data";
      }
    } else if (this.#state === "trailer" && line === "") {
      this.#state = "done";
    }
  }

  #startBody(): void {
    const [statusLine, ...fields] = this.#head;
    this.#head = [];
    const status = Number(statusLine?.split(" ")[1]);
    if (status >= 100 && status < 200) return; // an interim answer: the real head follows
    const header = (name: string) =>
      fields.find((f) => f.toLowerCase().startsWith(`${name}:`))?.slice(name.length + 1).trim().toLowerCase();
    if (this.#headRequest || status === 204 || status === 304) this.#state = "done";
    else if (header("transfer-encoding")?.includes("chunked")) this.#state = "size";
    else if (header("content-length") !== undefined) {
      this.#left = Number(header("content-length"));
      this.#state = Number.isSafeInteger(this.#left) && this.#left >= 0
        ? (this.#left === 0 ? "done" : "length")
        : "until-close";
    } else this.#state = "until-close";
  }
}
