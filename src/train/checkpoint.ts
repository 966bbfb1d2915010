/**
 * Trainer checkpoints without pickle: the adapter as PEFT saves it, the
 * optimizer state and any gradients accumulated since the last update in
 * `optimizer.safetensors`, and the step counters and options in
 * `trainer_state.json`. Resuming restores all of it, so N + M steps give
 * the same tensors as N + M steps in one go.
 * @module
 */
import { AdapterMismatchError, FileNotFoundError } from "../errors.ts";
import { localFs } from "../runtime/fs.ts";
import { parseSafetensors, serializeSafetensors, type TensorInput } from "../safetensors/mod.ts";
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, adapterConfigText, adapterWeightsBytes } from "./peft_format.ts";
import type { TrainedTensor } from "./trained_tensor.ts";
import type { ResolvedTrainerOptions, TrainerState } from "./trainer_state.ts";

const OPTIMIZER_FILE = "optimizer.safetensors";
const STATE_FILE = "trainer_state.json";
const SLOT_NAMES = { adamw: ["exp_avg", "exp_avg_sq"], sgd: ["momentum_buffer"] } as const;

const join = (dir: string, file: string) => `${dir.replace(/\/+$/, "")}/${file}`;

/**
 * Writes a checkpoint folder.
 *
 * @example
 * ```ts
 * import { writeCheckpoint } from "./checkpoint.ts";
 * declare const state: import("./trainer_state.ts").TrainerState;
 * declare const options: import("./trainer_state.ts").ResolvedTrainerOptions;
 * declare const tensors: import("./trained_tensor.ts").TrainedTensor[];
 * await writeCheckpoint("ckpt", tensors, {}, { r: 8 }, state, options);
 * ```
 */
export async function writeCheckpoint(
  dir: string,
  tensors: readonly TrainedTensor[],
  extras: Record<string, TensorInput>,
  config: Readonly<Record<string, unknown>>,
  state: TrainerState,
  options: ResolvedTrainerOptions,
): Promise<void> {
  const fs = await localFs();
  await fs.mkdirp(dir);
  await fs.writeFile(join(dir, ADAPTER_WEIGHTS_FILE), adapterWeightsBytes(tensors, extras));
  await fs.writeFile(join(dir, ADAPTER_CONFIG_FILE), adapterConfigText(config));
  const slots: Record<string, TensorInput> = {};
  const names = SLOT_NAMES[options.optimizer];
  tensors.forEach((t, i) => {
    state.slots[i]?.forEach((data, j) => (slots[`${t.key}.${names[j]}`] = { dtype: "F32", shape: t.shape, data }));
    const acc = state.accumulated?.[i];
    if (acc) slots[`${t.key}.accumulated_grad`] = { dtype: "F32", shape: t.shape, data: acc };
  });
  await fs.writeFile(join(dir, OPTIMIZER_FILE), serializeSafetensors(slots, { format: "pt" }));
  const json = {
    global_step: state.globalStep,
    calls: state.calls,
    pending: state.pending,
    accumulated_tokens: state.accumulatedTokens,
    options,
  };
  await fs.writeFile(join(dir, STATE_FILE), JSON.stringify(json, null, 2));
}

async function read(dir: string, file: string): Promise<Uint8Array> {
  const fs = await localFs();
  try {
    return await fs.readFile(join(dir, file));
  } catch (cause) {
    throw new FileNotFoundError(`checkpoint ${dir} has no ${file} (write it with trainer.saveCheckpoint)`, {
      file,
      cause,
    });
  }
}

/**
 * Reads a checkpoint into the trained tensors (in place) and returns the trainer state.
 *
 * @throws {AdapterMismatchError} when the checkpoint's tensors, shapes or optimizer differ from this trainer's.
 * @example
 * ```ts
 * import { readCheckpoint } from "./checkpoint.ts";
 * declare const tensors: import("./trained_tensor.ts").TrainedTensor[];
 * declare const options: import("./trainer_state.ts").ResolvedTrainerOptions;
 * const state = await readCheckpoint("ckpt", tensors, options);
 * console.log(state);
 * ```
 */
export async function readCheckpoint(
  dir: string,
  tensors: readonly TrainedTensor[],
  options: ResolvedTrainerOptions,
): Promise<TrainerState> {
  const weights = parseSafetensors(await read(dir, ADAPTER_WEIGHTS_FILE), ADAPTER_WEIGHTS_FILE);
  const slots = parseSafetensors(await read(dir, OPTIMIZER_FILE), OPTIMIZER_FILE);
  const json = JSON.parse(new TextDecoder().decode(await read(dir, STATE_FILE)));
  if (json.options?.optimizer !== options.optimizer) {
    throw new AdapterMismatchError(
      `checkpoint was written by a ${json.options?.optimizer} trainer; this one uses ${options.optimizer}`,
      { file: STATE_FILE, key: "optimizer" },
    );
  }
  const names = SLOT_NAMES[options.optimizer];
  const state: TrainerState = {
    globalStep: json.global_step,
    calls: json.calls,
    pending: json.pending,
    accumulatedTokens: json.accumulated_tokens,
    slots: [],
    accumulated: json.pending > 0 ? [] : undefined,
  };
  for (const t of tensors) {
    if (!weights.names().includes(t.key)) {
      throw new AdapterMismatchError("checkpoint lacks this trained tensor", {
        file: ADAPTER_WEIGHTS_FILE,
        key: t.key,
      });
    }
    const shape = weights.info(t.key).shape;
    if (shape.join() !== t.shape.join()) {
      throw new AdapterMismatchError(`checkpoint tensor has shape [${shape}], the adapter [${t.shape}]`, {
        file: ADAPTER_WEIGHTS_FILE,
        key: t.key,
      });
    }
  }
  tensors.forEach((t, i) => {
    t.data.set(weights.toFloat32(t.key));
    if (state.globalStep > 0) state.slots[i] = names.map((n) => Float32Array.from(slots.toFloat32(`${t.key}.${n}`)));
    if (state.accumulated) state.accumulated[i] = Float32Array.from(slots.toFloat32(`${t.key}.accumulated_grad`));
  });
  return state;
}
