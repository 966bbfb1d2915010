/**
 * A causal-LM batch as the training graph takes it: ids, mask and positions
 * for the decoder, and HF's shifted labels (`labels[:, 1:]` scored against
 * `logits[:, :-1]`, `-100` ignored) as label indices plus 0/1 weights.
 * @module
 */
import { Tensor } from "../deps/ort.ts";
import { UnsupportedError } from "../errors.ts";

/**
 * One batch: rows of token ids, optional attention mask and labels (default: the ids).
 *
 * @example
 * ```ts
 * import type { TrainBatch } from "./batch.ts";
 * const batch: TrainBatch = { inputIds: [[1, 5, 9, 4]], labels: [[-100, 5, 9, 4]] };
 * ```
 */
export interface TrainBatch {
  /** Token ids, one row per example. */
  inputIds: number[][];
  /** 1 for real tokens, 0 for padding (default all ones). */
  attentionMask?: number[][];
  /** Targets, shifted inside as HF does; -100 is ignored (default `inputIds`). */
  labels?: number[][];
}

/** HF's ignore index for labels. */
export const IGNORE_INDEX = -100;

/**
 * Decoder inputs and loss inputs of a batch, with the number of label tokens the loss uses.
 *
 * @example
 * ```ts
 * import type { BatchTensors } from "./batch.ts";
 * const count = (b: BatchTensors) => b.labelTokens;
 * ```
 */
export interface BatchTensors {
  inputIds: Tensor;
  attentionMask: Tensor;
  positionIds: Tensor;
  /** `[batch, seq, 1]` int64: the next token's id per position (0 where ignored). */
  labels: Tensor;
  /** `[batch, seq, 1]` float32: 1 where the shifted label counts. */
  labelWeights: Tensor;
  /** Label tokens after the shift that are not `-100`. */
  labelTokens: number;
  rows: number;
  length: number;
}

function rectangular(name: string, rows: number[][], length: number, count: number) {
  if (!Array.isArray(rows) || rows.length !== count || rows.some((r) => !Array.isArray(r) || r.length !== length)) {
    throw new UnsupportedError(`${name} must be ${count} rows of ${length} integers (a rectangular number[][])`, {
      key: name,
    });
  }
  for (const r of rows) {
    for (const v of r) {
      if (!Number.isInteger(v)) throw new UnsupportedError(`${name} holds ${v}, not an integer`, { key: name });
    }
  }
}

/**
 * Checks a batch and builds its tensors. Position ids count 0.. per row, as
 * transformers does when none are given.
 *
 * @throws {UnsupportedError} for ragged rows, non-integers, ids outside the vocabulary or a batch with no label token.
 * @example
 * ```ts
 * import { batchTensors } from "./batch.ts";
 * const t = batchTensors({ inputIds: [[1, 2, 3]] }, 256);
 * console.log(t.labelTokens, t.labels.dims); // 2 [1, 3, 1]
 * ```
 */
export function batchTensors(batch: TrainBatch, vocabSize?: number): BatchTensors {
  const ids = batch.inputIds;
  if (!Array.isArray(ids) || ids.length === 0 || !Array.isArray(ids[0]) || ids[0].length < 2) {
    throw new UnsupportedError("inputIds must hold at least one row of at least 2 tokens", { key: "inputIds" });
  }
  const [rows, length] = [ids.length, ids[0].length];
  rectangular("inputIds", ids, length, rows);
  const mask = batch.attentionMask ?? ids.map((r) => r.map(() => 1));
  rectangular("attentionMask", mask, length, rows);
  const labels = batch.labels ?? ids;
  rectangular("labels", labels, length, rows);
  const n = rows * length;
  const idData = new BigInt64Array(n);
  const maskData = new BigInt64Array(n);
  const posData = new BigInt64Array(n);
  const labelData = new BigInt64Array(n);
  const weights = new Float32Array(n);
  let labelTokens = 0;
  for (let r = 0; r < rows; r++) {
    for (let t = 0; t < length; t++) {
      const i = r * length + t;
      const id = ids[r][t];
      if (id < 0 || (vocabSize !== undefined && id >= vocabSize)) {
        throw new UnsupportedError(`inputIds[${r}][${t}] = ${id} is outside the vocabulary (0..${vocabSize! - 1})`, {
          key: "inputIds",
        });
      }
      idData[i] = BigInt(id);
      maskData[i] = BigInt(mask[r][t]);
      posData[i] = BigInt(t);
      const next = t + 1 < length ? labels[r][t + 1] : IGNORE_INDEX;
      if (next === IGNORE_INDEX) continue;
      if (next < 0 || (vocabSize !== undefined && next >= vocabSize)) {
        throw new UnsupportedError(`labels[${r}][${t + 1}] = ${next} is neither -100 nor a token id`, {
          key: "labels",
        });
      }
      labelData[i] = BigInt(next);
      weights[i] = 1;
      labelTokens++;
    }
  }
  const dims = [rows, length];
  return {
    inputIds: new Tensor("int64", idData, dims),
    attentionMask: new Tensor("int64", maskData, dims),
    positionIds: new Tensor("int64", posData, dims),
    labels: new Tensor("int64", labelData, [rows, length, 1]),
    labelWeights: new Tensor("float32", weights, [rows, length, 1]),
    labelTokens,
    rows,
    length,
  };
}
