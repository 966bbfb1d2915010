/**
 * MatMulNBits with a `g_idx` input (act-order: each K row names its block).
 * No onnxruntime tool writes one, so the file is onnxruntime's own q4 export
 * with a `g_idx` added that keeps the blocks in order (the operator computes
 * the same product): dynamic mode runs a LoRA beside it, merged mode refuses
 * with an error naming the node.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { fromPretrained, loadBaseModel, memorySource, UnsupportedError } from "../mod.ts";
import { GraphProtoSchema, ModelProtoSchema, NodeProtoSchema, TensorProto_DataType } from "../src/deps/onnx_proto.ts";
import { rawTensor } from "../src/onnx/graph_parts.ts";
import { decodeModel, encodeModel } from "../src/onnx/model_file.ts";
import { edited } from "../src/onnx/proto_edit.ts";
import { baseNamed, realExpected, realManifest, realPath } from "./support/real_fixtures.ts";
import { maxAbsDiff } from "./support/fixtures.ts";

const FILE = "onnx/model_q4.onnx";
const ADAPTER = realPath("adapters/llama-lora-attn");
const quiet = { onWarning: () => {} };

/** The q4 file with `g_idx[k] = floor(k / block_size)` on every MatMulNBits. */
async function actOrderFile(path: string): Promise<Uint8Array> {
  const model = decodeModel(new Uint8Array(await readFile(path)), FILE);
  const graph = model.graph!;
  const initializer = [...graph.initializer];
  const node = graph.node.map((n) => {
    if (n.opType !== "MatMulNBits") return n;
    const attr = (name: string) => Number(n.attribute.find((a) => a.name === name)!.i);
    const [k, block] = [attr("K"), attr("block_size")];
    const gIdx = Int32Array.from({ length: k }, (_, i) => Math.floor(i / block));
    const name = `${n.input[1]}_g_idx`;
    initializer.push(rawTensor(name, TensorProto_DataType.INT32, [k], new Uint8Array(gIdx.buffer)));
    return edited(NodeProtoSchema, n, { input: [n.input[0], n.input[1], n.input[2], n.input[3] ?? "", name] });
  });
  return encodeModel(
    edited(ModelProtoSchema, model, { graph: edited(GraphProtoSchema, graph, { node, initializer }) }),
  );
}

test("MatMulNBits with g_idx: dynamic mode adds the LoRA beside it; merged mode refuses, naming the node", async () => {
  const entry = baseNamed(await realManifest(), "llama-torchscript");
  const config = new Uint8Array(await readFile(realPath(`${entry.path}/config.json`)));
  const bytes = await actOrderFile(realPath(`${entry.path}/${FILE}`));
  const base = await loadBaseModel(memorySource("act-order", { "config.json": config, [FILE]: bytes }), { file: FILE });
  const plain = await loadBaseModel(realPath(entry.path), { file: FILE });
  const e = await realExpected("adapters/llama-lora-attn", entry.inputs);
  try {
    await assert.rejects(
      () => fromPretrained(base, ADAPTER, { mode: "merged", ...quiet }),
      (err) =>
        err instanceof UnsupportedError && err.message.includes("/model/layers.0/self_attn/q_proj/MatMul_Q4") &&
        err.message.includes("g_idx") && err.message.includes('"dynamic"'),
    );
    const dynamic = await fromPretrained(base, ADAPTER, quiet);
    const reference = await fromPretrained(plain, ADAPTER, quiet);
    try {
      const got = (await dynamic.run(e.feeds)).logits.data as Float32Array;
      const want = (await reference.run(e.feeds)).logits.data as Float32Array;
      assert.ok(
        maxAbsDiff(got, want) < 1e-5,
        `act-order file vs the same blocks without g_idx: ${maxAbsDiff(got, want)}`,
      );
      assert.ok(maxAbsDiff(got, (await base.run(e.feeds)).logits.data as Float32Array) > 0.5, "the adapter acts");
    } finally {
      await dynamic.release();
      await reference.release();
    }
  } finally {
    await base.release();
    await plain.release();
  }
});
