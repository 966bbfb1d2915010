/**
 * {@linkcode PieceChannel}: text pieces handed from the decode scheduler,
 * which runs at the batch's pace, to one request's consumer, which reads at
 * its own; then the result, or an error.
 * @module
 */
import type { GenerationResult } from "../generate/mod.ts";

/**
 * A one-consumer queue of pieces ending with a result or an error.
 *
 * @example
 * ```ts
 * import { PieceChannel } from "./piece_channel.ts";
 * import type { GenerationResult } from "../generate/mod.ts";
 * declare const result: GenerationResult;
 * const channel = new PieceChannel();
 * channel.push("Hello");
 * channel.end(result);
 * await channel.next(); // { done: false, value: "Hello" }
 * await channel.next(); // { done: true, value: result }
 * ```
 */
export class PieceChannel {
  #pieces: string[] = [];
  #result?: GenerationResult;
  #error?: { reason: unknown };
  #delivered = false;
  #wake?: () => void;

  /** Whether it has ended (result or error). */
  get ended(): boolean {
    return this.#result !== undefined || this.#error !== undefined;
  }

  /** Queues a piece; empty pieces are dropped (the alone path never yields one). */
  push(piece: string): void {
    if (piece === "" || this.ended) return;
    this.#pieces.push(piece);
    this.#signal();
  }

  /** Ends with the result, after the queued pieces. */
  end(result: GenerationResult): void {
    if (this.ended) return;
    this.#result = result;
    this.#signal();
  }

  /**
   * Ends with an error, which the next read throws: queued pieces, and a result not read yet, are dropped (an
   * abort stops the stream at once, even when the generation ran ahead of its reader). Does nothing once the
   * result has been read or an error given.
   */
  fail(reason: unknown): void {
    if (this.#delivered || this.#error) return;
    this.#error = { reason };
    this.#pieces = [];
    this.#result = undefined;
    this.#signal();
  }

  /** The next piece, or the result; throws the error. */
  async next(): Promise<IteratorResult<string, GenerationResult>> {
    for (;;) {
      if (this.#error) throw this.#error.reason;
      const piece = this.#pieces.shift();
      if (piece !== undefined) return { done: false, value: piece };
      if (this.#result) {
        this.#delivered = true;
        return { done: true, value: this.#result };
      }
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
  }

  #signal(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}
