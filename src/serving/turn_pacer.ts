/**
 * {@linkcode TurnPacer}: when the decode loop gives the event loop a turn.
 * onnxruntime-web's wasm runs resolve as microtasks only, so without a
 * macrotask turn between runs no request could arrive (or leave, or get its
 * streamed bytes or its response written) until the batch ended. A turn is
 * cheap on Bun and Node (`setImmediate`, ~10 µs) and costs a millisecond or
 * more where only a timer polls I/O (Deno): taken every step there, it
 * would slow a lone request by 10-20%. So the pacer measures what quiet
 * turns cost and spaces them to keep that under ~2% of the loop's time (at
 * most `maxMs` apart), and takes one every step while work comes and goes
 * (requests submitted, cancelled or finished), so a burst of requests joins
 * within a few steps.
 *
 * A turn is two event-loop passes in a row: a request on its way in crosses
 * several hops that each need a pass of their own (the listener's guard,
 * its loopback connection, the runtime's server, the body) before it
 * reaches the scheduler, where it first counts as activity. With one pass
 * per turn it advanced a hop or two per quiet interval and took 0.3-0.7 s
 * to join a running batch on Deno (at times longer than a 500-token request
 * took to end); with two it is through in about one turn (measured: a local
 * request needed 3-7 single timer turns with runs between them, 1-2 double
 * ones).
 * @module
 */
import { eventLoopTurn } from "../runtime/timers.ts";

/** Options of {@linkcode TurnPacer} (for tests; the defaults serve). */
export interface TurnPacerOptions {
  /** Takes one event-loop pass (default `eventLoopTurn`). */
  readonly turn?: () => Promise<void>;
  /** Passes per turn, in a row (default 2). */
  readonly passes?: number;
  /** The clock in ms (default `performance.now`). */
  readonly now?: () => number;
  /** Quiet turns at most this far apart (default 100 ms). */
  readonly maxMs?: number;
  /** The share of the loop's time quiet turns may take (default 0.02). */
  readonly share?: number;
}

/**
 * Paces a loop's event-loop turns by their cost and by activity.
 *
 * @example
 * ```ts
 * import { TurnPacer } from "./turn_pacer.ts";
 * const pacer = new TurnPacer();
 * let events = 0; // bumped whenever a request arrives, leaves or ends
 * for (let step = 0; step < 3; step++) {
 *   await pacer.pace(() => events); // a turn when one is due
 *   // ... one model run ...
 * }
 * ```
 */
export class TurnPacer {
  readonly #turn: () => Promise<void>;
  readonly #passes: number;
  readonly #now: () => number;
  readonly #maxMs: number;
  readonly #share: number;
  #last = -Infinity;
  #interval = 0;
  /** What a quiet turn costs, smoothed; undefined until one is measured. */
  #cost?: number;
  /** The activity count seen at the last turn's end (none yet: the first turn is due whatever it is). */
  #seen?: number;

  /** A pacer whose first `pace` takes a turn. */
  constructor(options: TurnPacerOptions = {}) {
    this.#turn = options.turn ?? eventLoopTurn;
    this.#passes = options.passes ?? 2;
    this.#now = options.now ?? (() => performance.now());
    this.#maxMs = options.maxMs ?? 100;
    this.#share = options.share ?? 0.02;
  }

  /** Ms between quiet turns now (0: every step). */
  get interval(): number {
    return this.#interval;
  }

  /**
   * Takes a turn if one is due. `activity` is a count the caller bumps on
   * every arrival, cancellation and finish: a change since the last turn
   * (or during this one) makes the next turn due at the next step.
   */
  async pace(activity: () => number): Promise<void> {
    const start = this.#now();
    const before = activity();
    const changed = this.#seen !== undefined && before !== this.#seen;
    if (this.#seen !== undefined && !changed && start - this.#last < this.#interval) return;
    for (let pass = 0; pass < this.#passes; pass++) await this.#turn();
    const end = this.#now();
    const after = activity();
    const busy = changed || after !== before;
    this.#last = end;
    this.#seen = after;
    if (busy) {
      this.#interval = 0;
      return;
    }
    // Only quiet turns measure the overhead: a busy one also did the work that came in.
    const cost = end - start;
    this.#cost = this.#cost === undefined ? cost : 0.75 * this.#cost + 0.25 * cost;
    this.#interval = Math.min(this.#maxMs, Math.max(2 * this.#interval, this.#cost / this.#share));
  }
}
