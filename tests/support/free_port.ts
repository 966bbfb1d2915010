/**
 * A loopback TCP port that was free a moment ago, for a child process to
 * listen on (it can be taken in between; the tests run one such child at a time).
 * @module
 */
import { createServer } from "node:net";

/** Binds port 0 on 127.0.0.1, reads the port the OS chose and closes again. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}
