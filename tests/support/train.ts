// Helpers of the training tests: the references made by PyTorch + PEFT
// (tests/fixtures/make/train/make_train.py) and comparisons against them.
import { readFile } from "node:fs/promises";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseSafetensors, type Safetensors } from "../../src/safetensors/mod.ts";
import type { TrainBatch } from "../../src/train/batch.ts";
import type { TrainerOptions } from "../../src/train/trainer.ts";
import { fixture } from "./fixtures.ts";

export interface ReferenceCall {
  loss: number;
  gradNorm: number | null;
  lr: number;
}

export interface TrainReference {
  base: string;
  trainer: TrainerOptions & { momentum?: number };
  batches: TrainBatch[];
  calls: ReferenceCall[];
  trainableParameters: number;
  allParameters: number;
}

export const trainCase = (name: string, ...parts: string[]) => fixture(join("train", name, ...parts));

export async function reference(name: string): Promise<TrainReference> {
  return JSON.parse(await readFile(trainCase(name, "reference.json"), "utf8"));
}

export async function safetensorsAt(path: string): Promise<Safetensors> {
  return parseSafetensors(new Uint8Array(await readFile(path)), path);
}

export function relDiff(a: number, b: number): number {
  return Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);
}

/** Largest |a - b| relative to the largest |b| of the tensor. */
export function tensorRelDiff(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / Math.max(scale, 1e-12);
}

export function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), "peft-edge-train-"));
}
