/**
 * {@linkcode DecodeScheduler}: continuous batching on one model. Requests
 * wait in a FIFO queue; as room opens in the batch (at most `maxBatch`
 * rows) the next ones are prefilled together (left-padded, each row with its
 * adapter), choose their first token, and join the running batch; then one
 * model run feeds one token to every row. A row leaves when it ends (eos,
 * stop string, length), is cancelled, or its consumer goes away.
 *
 * The batch's KV cache is `[rows, heads, length, headDim]`, each row
 * right-aligned behind left padding masked out by `attention_mask` zeros,
 * with positions computed from the mask (`batchFeeds`), so every row sees
 * exactly what it would see alone; a joining row's cache is left-padded to
 * the batch's length (or the batch to the row's), a leaving row is cut out,
 * and columns that are padding in every row are trimmed. Each row keeps its
 * own settings, RNG, repetition penalty, detokenizer and stop strings
 * (`RowState`), so greedy rows give the texts they give alone.
 * @module
 */
import { Tensor } from "../deps/ort.ts";
import {
  type CausalLm,
  type DecoderLayout,
  type GenerateOptions,
  type GenerationResult,
  type LmRunOptions,
  type LoopTimings,
  type Prompt,
  resolveSettings,
  type TokenizerLike,
} from "../generate/mod.ts";
import { batchFeeds } from "../generate/batch_session.ts";
import { keepStep } from "../generate/kv_step.ts";
import { promptIds } from "../generate/prompt.ts";
import { acceptToken, chooseNext, createRow, rowResult, type RowState } from "../generate/row_state.ts";
import { commonPadding, gatherPast } from "./batch_past.ts";
import { PieceChannel } from "./piece_channel.ts";
import { TurnPacer } from "./turn_pacer.ts";

/**
 * Options of {@linkcode DecodeScheduler}.
 *
 * @example
 * ```ts
 * import type { SchedulerOptions } from "./decode_scheduler.ts";
 * const options: SchedulerOptions = {
 *   maxBatch: 8,
 *   runOptions: (adapters) => ({ adapterNames: adapters }),
 * };
 * ```
 */
export interface SchedulerOptions {
  /** Rows in the batch at most; further requests wait in order. */
  readonly maxBatch: number;
  /** The run options for a batch whose rows have these adapters (one name per row). */
  readonly runOptions: (adapters: readonly string[]) => LmRunOptions | undefined;
  /** Where to count runs (default: a fresh `stats` object of the scheduler's own). */
  readonly stats?: SchedulerStats;
  /** Called when the batch and the queue have emptied. */
  readonly onIdle?: () => void;
}

/**
 * Counts of a scheduler's model runs, for tests and monitoring.
 *
 * @example
 * ```ts
 * import type { SchedulerStats } from "./decode_scheduler.ts";
 * declare const stats: SchedulerStats;
 * console.log(stats.decodeRuns / stats.prefillRuns);
 * ```
 */
export interface SchedulerStats {
  /** Prefill runs (each for one or more joining rows). */
  prefillRuns: number;
  /** Decode steps (each for every running row). */
  decodeRuns: number;
  /** The most rows a decode step has run. */
  maxRows: number;
}

/** One request in the scheduler. */
interface Job {
  readonly row: RowState;
  readonly adapter: string;
  readonly channel: PieceChannel;
  readonly timings: LoopTimings;
  /** The id chosen last and not yet fed (the batch's past covers everything before it). */
  pending: number;
  cancelled: boolean;
  detach: () => void;
}

/** A row of the rebuilt batch: its job, its mask, and where its cache is. */
interface Member {
  readonly job: Job;
  readonly mask: readonly number[];
  readonly past: Readonly<Record<string, Tensor>>;
  readonly index: number;
}

/**
 * Runs the requests given to it on one model in one shared batch.
 *
 * @example
 * ```ts
 * import { DecodeScheduler } from "./decode_scheduler.ts";
 * import { describeDecoder } from "../generate/mod.ts";
 * import { loadBaseModel } from "../model/base_model.ts";
 * const base = await loadBaseModel("examples/demo/byte-llama");
 * const scheduler = new DecodeScheduler(base, describeDecoder(base), { maxBatch: 4, runOptions: () => undefined });
 * const tokenizer = base.text.tokenizer!;
 * const runs = ["def ", "class "].map(async (prompt) => {
 *   let text = "";
 *   for await (const piece of scheduler.stream(tokenizer, prompt, { maxNewTokens: 8 }, "__base__")) text += piece;
 *   return text;
 * });
 * console.log(await Promise.all(runs), scheduler.stats.decodeRuns);
 * ```
 */
export class DecodeScheduler {
  /** Runs so far. */
  readonly stats: SchedulerStats;
  readonly #lm: CausalLm;
  readonly #layout: DecoderLayout;
  readonly #options: SchedulerOptions;
  #waiting: Job[] = [];
  #running: Job[] = [];
  /** Each running row's mask over the batch's past (all the same length). */
  #mask: number[][] = [];
  #past: Record<string, Tensor> = {};
  #loop?: Promise<void>;
  readonly #pacer = new TurnPacer();
  /** Bumped when a job is submitted, cancelled or finished: the pacer turns sooner while work comes and goes. */
  #events = 0;

  /**
   * A scheduler for `lm`, whose layout must have a KV cache and an
   * `attention_mask` input (see `canBatch`) and whose cache is on the CPU.
   */
  constructor(lm: CausalLm, layout: DecoderLayout, options: SchedulerOptions) {
    this.#lm = lm;
    this.#layout = layout;
    this.#options = options;
    this.stats = options.stats ?? { prefillRuns: 0, decodeRuns: 0, maxRows: 0 };
  }

  /** Rows in the batch now. */
  get running(): number {
    return this.#running.length;
  }

  /** Requests waiting for room in the batch. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * Generates for one request in the shared batch, with the same contract
   * as `stream` in src/generate: pieces, then the result; bad input throws
   * from the first `next()`; aborting `options.signal` throws its reason;
   * ending the generator early takes the row out of the batch.
   */
  async *stream(
    tokenizer: TokenizerLike,
    prompt: Prompt,
    options: GenerateOptions,
    adapter: string,
  ): AsyncGenerator<string, GenerationResult, undefined> {
    const ids = promptIds(tokenizer, prompt, { ...this.#layout, addSpecialTokens: options.addSpecialTokens });
    const settings = resolveSettings(options, {
      promptLength: ids.length,
      configEos: this.#lm.config.eos_token_id,
      tokenizerEos: tokenizer.eosTokenId,
    });
    const signal = options.signal;
    signal?.throwIfAborted();
    const job = this.#submit(createRow(ids, settings, tokenizer, this.#layout), adapter, signal);
    try {
      for (;;) {
        const next = await job.channel.next();
        if (next.done) return next.value;
        yield next.value;
      }
    } finally {
      this.#cancel(job, new DOMException("the generation was abandoned", "AbortError"));
    }
  }

  #submit(row: RowState, adapter: string, signal: AbortSignal | undefined): Job {
    const job: Job = {
      row,
      adapter,
      channel: new PieceChannel(),
      timings: { prefillMs: 0, decodeMs: 0, decodeRuns: 0 },
      pending: -1,
      cancelled: false,
      detach: () => {},
    };
    if (row.finish) {
      this.#finish(job); // no room to generate: ends without a run, as alone
      return job;
    }
    if (signal) {
      const onAbort = () => this.#cancel(job, signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      job.detach = () => signal.removeEventListener("abort", onAbort);
    }
    this.#waiting.push(job);
    this.#events++;
    this.#loop ??= this.#drive();
    return job;
  }

  /**
   * Takes a job out: its stream fails with `reason` unless its reader already has the result (a job that ran
   * ahead of its reader is stopped too, as alone), and a running row leaves at the next step.
   */
  #cancel(job: Job, reason: unknown): void {
    job.detach();
    job.channel.fail(reason);
    if (job.row.finish !== undefined) return;
    job.cancelled = true;
    this.#events++;
    this.#waiting = this.#waiting.filter((j) => j !== job);
  }

  /** Ends a job's stream with its result; its abort listener stays until the reader is done (`stream`). */
  #finish(job: Job): void {
    this.#events++;
    job.channel.end(rowResult(job.row, job.timings));
  }

  async #drive(): Promise<void> {
    try {
      for (;;) {
        // wasm runs never yield to the event loop: the pacer gives it turns (arrivals, leavers, writes).
        await this.#pacer.pace(() => this.#events);
        if (this.#running.some((job) => job.cancelled)) this.#keep(this.#running.filter((job) => !job.cancelled));
        const arrivals = this.#waiting.splice(0, Math.max(0, this.#options.maxBatch - this.#running.length));
        try {
          if (arrivals.length > 0) await this.#join(arrivals);
          if (this.#running.length > 0) await this.#step();
        } catch (error) {
          // A failed run fails the rows it ran; the queue goes on with a fresh batch.
          for (const job of [...this.#running, ...arrivals]) {
            job.detach();
            job.channel.fail(error);
          }
          this.#running = [];
          this.#mask = [];
          this.#past = {};
        }
        if (this.#running.length === 0 && this.#waiting.length === 0) break;
      }
    } finally {
      this.#loop = undefined;
      this.#options.onIdle?.();
    }
  }

  /** The run options of these rows, with their prompts (activated LoRA finds its invocation there on every step). */
  #runOptions(jobs: readonly Job[]): LmRunOptions {
    return { ...this.#options.runOptions(jobs.map((job) => job.adapter)), promptIds: jobs.map((job) => job.row.ids) };
  }

  /** Prefills the arrivals together, chooses their first tokens, and merges those still going into the batch. */
  async #join(arrivals: readonly Job[]): Promise<void> {
    const layout = this.#layout;
    const length = Math.max(...arrivals.map((job) => job.row.ids.length));
    const ids = arrivals.flatMap((job) => [...new Array(length - job.row.ids.length).fill(0), ...job.row.ids]);
    const mask = arrivals.map((
      job,
    ) => [...new Array(length - job.row.ids.length).fill(0), ...job.row.ids.map(() => 1)]);
    const empty: Record<string, Tensor> = {};
    const dims = [arrivals.length, ...layout.emptyPastDims.slice(1)];
    for (const { input } of layout.cache) empty[input] = new Tensor("float32", new Float32Array(0), dims);
    const started = performance.now();
    const outputs = await this.#lm.run(
      batchFeeds(layout, ids, mask, empty, false),
      this.#runOptions(arrivals),
    );
    const { next, logits } = await keepStep(layout, empty, outputs);
    this.stats.prefillRuns++;
    const joined: Member[] = [];
    arrivals.forEach((job, index) => {
      if (job.cancelled) return;
      const id = chooseNext(job.row, logits, index);
      job.channel.push(acceptToken(job.row, id));
      job.timings.prefillMs += performance.now() - started;
      if (job.row.finish) return this.#finish(job);
      job.pending = id;
      joined.push({ job, mask: mask[index], past: next, index });
    });
    if (joined.length > 0) this.#rebuild([...this.#members(), ...joined]);
  }

  /** Feeds every row its pending id; rows that end or were cancelled leave the batch. */
  async #step(): Promise<void> {
    const jobs = this.#running;
    const mask = this.#mask.map((row) => [...row, 1]);
    const feeds = batchFeeds(this.#layout, jobs.map((job) => job.pending), mask, this.#past, true);
    const started = performance.now();
    const outputs = await this.#lm.run(feeds, this.#runOptions(jobs));
    const { next, logits } = await keepStep(this.#layout, this.#past, outputs);
    this.#past = next;
    this.#mask = mask;
    this.stats.decodeRuns++;
    this.stats.maxRows = Math.max(this.stats.maxRows, jobs.length);
    const stay: Job[] = [];
    jobs.forEach((job, index) => {
      if (job.cancelled) return;
      const id = chooseNext(job.row, logits, index);
      job.channel.push(acceptToken(job.row, id));
      job.timings.decodeMs += performance.now() - started;
      job.timings.decodeRuns++;
      if (job.row.finish) return this.#finish(job);
      job.pending = id;
      stay.push(job);
    });
    if (stay.length < jobs.length) this.#keep(stay);
  }

  /** The running rows as members of a rebuilt batch. */
  #members(jobs: readonly Job[] = this.#running): Member[] {
    const index = new Map(this.#running.map((job, i) => [job, i]));
    return jobs.map((job) => {
      const i = index.get(job)!;
      return { job, mask: this.#mask[i], past: this.#past, index: i };
    });
  }

  /** Keeps only these running rows. */
  #keep(jobs: readonly Job[]): void {
    this.#rebuild(this.#members(jobs));
  }

  /** Makes these rows the batch: masks and caches right-aligned to one length, common padding trimmed. */
  #rebuild(members: readonly Member[]): void {
    this.#running = members.map((m) => m.job);
    if (members.length === 0) {
      this.#mask = [];
      this.#past = {};
      return;
    }
    const width = Math.max(...members.map((m) => m.mask.length));
    const padded = members.map((m) => [...new Array(width - m.mask.length).fill(0), ...m.mask]);
    const cut = commonPadding(padded);
    this.#mask = padded.map((row) => row.slice(cut));
    const past: Record<string, Tensor> = {};
    for (const { input } of this.#layout.cache) {
      past[input] = gatherPast(members.map((m) => ({ tensor: m.past[input], row: m.index })), width - cut);
    }
    this.#past = past;
  }
}
