/**
 * A session as peft-edge's models use it. onnxruntime-web runs every session
 * of one build inside a single WebAssembly instance whose `run` is
 * asynchronous (asyncify), and overlapping runs corrupt each other's inputs
 * ("input name cannot be empty") even across sessions. So runs are queued
 * per onnxruntime build, and `release()` waits for the queue, so an engine
 * can drop a session while a run still uses it.
 * @module
 */
import type { InferenceSession } from "../deps/ort.ts";
import { UnsupportedError } from "../errors.ts";

/** Feeds: input name to tensor. */
type RunFeeds = InferenceSession.FeedsType;

/** The part of an onnxruntime session the models use, with runs serialized. */
export interface ModelSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  /** Queued behind earlier runs; same arguments and result as `InferenceSession.run`. */
  run(feeds: RunFeeds, options?: InferenceSession.RunOptions): Promise<InferenceSession.ReturnType>;
  /** Frees the session once every run queued before this call has finished. */
  release(): Promise<void>;
}

/**
 * A run reached a session after its release: the caller ran a released
 * model, or (for a base routed through a session it borrowed) picks the
 * session that serves it now and runs again.
 *
 * @example
 * ```ts
 * import { ReleasedSessionError } from "./model_session.ts";
 * console.log(new ReleasedSessionError() instanceof Error); // true
 * ```
 */
export class ReleasedSessionError extends UnsupportedError {
  constructor() {
    super("the model's session was released; load the model again");
  }
}

/** Runs one task at a time, in call order. */
export interface RunQueue {
  push<T>(task: () => Promise<T>): Promise<T>;
}

/**
 * A FIFO queue of async tasks.
 *
 * @example
 * ```ts
 * import { runQueue } from "./model_session.ts";
 * const queue = runQueue();
 * await Promise.all([queue.push(async () => 1), queue.push(async () => 2)]); // one after the other
 * ```
 */
export function runQueue(): RunQueue {
  let tail: Promise<unknown> = Promise.resolve();
  return {
    push(task) {
      const result = tail.then(task);
      tail = result.catch(() => {});
      return result;
    },
  };
}

// One queue per onnxruntime build (its module object): the builds' WebAssembly
// instances are process-wide singletons, so this is the one place where state
// is shared across models, mirroring that resource exactly.
const queues = new WeakMap<object, RunQueue>();

/**
 * The queue of the onnxruntime build `runtime` (the module namespace).
 *
 * @example
 * ```ts
 * import { queueFor } from "./model_session.ts";
 * import { ort } from "../deps/ort.ts";
 * const queue = queueFor(ort);
 * ```
 */
export function queueFor(runtime: object): RunQueue {
  let queue = queues.get(runtime);
  if (!queue) queues.set(runtime, queue = runQueue());
  return queue;
}

/**
 * Wraps a session so its runs never overlap with other runs on `queue`.
 *
 * @example
 * ```ts
 * import { queueFor, serialSession } from "./model_session.ts";
 * import { ort } from "../deps/ort.ts";
 * import { readFile } from "node:fs/promises";
 * const bytes = new Uint8Array(await readFile("tests/fixtures/llama-tiny/onnx/model.onnx"));
 * const session = serialSession(await ort.InferenceSession.create(bytes), queueFor(ort));
 * ```
 */
export function serialSession(session: InferenceSession, queue: RunQueue): ModelSession {
  let released: Promise<void> | undefined;
  // Set when the release itself runs: runs queued before it still run, later ones fail with a typed error.
  let gone = false;
  return {
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    run: (feeds, options) =>
      queue.push(() => gone ? Promise.reject(new ReleasedSessionError()) : session.run(feeds, options ?? {})),
    release() {
      released ??= queue.push(() => {
        gone = true;
        return session.release();
      });
      return released;
    },
  };
}
