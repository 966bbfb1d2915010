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
  return {
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    run: (feeds, options) => queue.push(() => session.run(feeds, options ?? {})),
    release() {
      released ??= queue.push(() => session.release());
      return released;
    },
  };
}
