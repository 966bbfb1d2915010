import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFile, mkdir, readFile, rename, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  AdapterConfigError,
  FileAccessError,
  fromPretrained,
  loadBaseModel,
  OnnxModelError,
  PeftEdgeError,
} from "../mod.ts";
import { localSource } from "../src/storage/local.ts";
import { withTempDir } from "./support/hub_server.ts";
import { ADMIN, call, DEMO_ADAPTER, loadDemo, withService } from "./support/server_setup.ts";
import { expected, fixture, maxAbsDiff, prefillAndStep } from "./support/fixtures.ts";
import { encodeModel, fixtureModel, toExternalData } from "./support/onnx_variants.ts";

const SECRET = "root:x:0:0:secret-line-that-must-never-leave-the-server";

/** Asserts an error is typed and says nothing of the secret or of absolute paths. */
function assertSafe(error: unknown, dir: string): PeftEdgeError {
  assert.ok(error instanceof PeftEdgeError, `expected a PeftEdgeError, got ${error}`);
  assert.ok(!error.message.includes("root:x"), `file contents leaked: ${error.message}`);
  assert.ok(!error.message.includes(dir), `an absolute path leaked: ${error.message}`);
  return error;
}

/** A copy of a fixture adapter in `dir/name`, plus a secret file outside it. */
async function adapterCopy(dir: string, name: string): Promise<{ folder: string; secret: string }> {
  const folder = join(dir, "roots", name);
  await mkdir(folder, { recursive: true });
  for (const file of ["adapter_config.json", "adapter_model.safetensors"]) {
    await copyFile(join(fixture("llama-tiny-lora-qv"), file), join(folder, file));
  }
  const secret = join(dir, "passwd");
  await writeFile(secret, SECRET);
  return { folder, secret };
}

test("a symlinked file under an adapter root pointing outside is refused, saying nothing of it", () =>
  withTempDir(async (dir) => {
    const base = await loadBaseModel(fixture("llama-tiny"));
    try {
      const { folder, secret } = await adapterCopy(dir, "x");
      await rm(join(folder, "adapter_config.json"));
      await symlink(secret, join(folder, "adapter_config.json"));
      const error = assertSafe(await fromPretrained(base, folder).then(() => undefined, (e) => e), dir);
      assert.ok(error instanceof FileAccessError);
      assert.equal(error.file, "adapter_config.json");
      assert.match(error.message, /outside the folder x/);
      // The server log gets the details.
      assert.ok(error.detail?.includes(secret));

      // The same for the weights file, and for a symlinked folder on the way.
      const { folder: other } = await adapterCopy(dir, "y");
      await mkdir(join(dir, "elsewhere"));
      await copyFile(join(other, "adapter_model.safetensors"), join(dir, "elsewhere", "adapter_model.safetensors"));
      await rm(join(other, "adapter_model.safetensors"));
      await symlink(join(dir, "elsewhere", "adapter_model.safetensors"), join(other, "adapter_model.safetensors"));
      const weights = assertSafe(await fromPretrained(base, other).then(() => undefined, (e) => e), dir);
      assert.ok(weights instanceof FileAccessError && weights.file === "adapter_model.safetensors");
      await symlink(join(dir, "elsewhere"), join(other, "sub"));
      const viaFolder = await localSource(other).read("sub/adapter_model.safetensors").catch((e) => e);
      assert.ok(assertSafe(viaFolder, dir) instanceof FileAccessError);
      const dotdot = await localSource(other).read("../passwd").catch((e) => e);
      assert.ok(assertSafe(dotdot, dir) instanceof FileAccessError);

      // A symlink that stays inside the folder is fine.
      const { folder: inside } = await adapterCopy(dir, "z");
      await rename(join(inside, "adapter_config.json"), join(inside, "c.json"));
      await symlink("c.json", join(inside, "adapter_config.json"));
      const model = await fromPretrained(base, inside);
      const e = await expected("llama-tiny-lora-qv");
      assert.ok(maxAbsDiff((await prefillAndStep(model, e)).logits, e.logits) < 1e-4);
      await model.release();
    } finally {
      await base.release();
    }
  }));

test("a config that is not JSON: the error quotes none of it, and names no absolute path", () =>
  withTempDir(async (dir) => {
    const base = await loadBaseModel(fixture("llama-tiny"));
    try {
      const { folder } = await adapterCopy(dir, "garbage");
      await writeFile(join(folder, "adapter_config.json"), SECRET);
      const error = assertSafe(await fromPretrained(base, folder).then(() => undefined, (e) => e), dir);
      assert.ok(error instanceof AdapterConfigError);
      assert.match(error.message, /not valid JSON \(syntax error/);
      const missing = await localSource(folder).read("tokenizer.json").catch((e) => e);
      assertSafe(missing, dir);
      assert.match(missing.message, /tokenizer\.json: no such file in the folder garbage/);
    } finally {
      await base.release();
    }
  }));

test("external data: the model file itself, a path out of the folder, or a symlink out are refused", () =>
  withTempDir(async (dir) => {
    const config = await readFile(join(fixture("llama-tiny"), "config.json"));
    const write = async (name: string, location: string, link?: string) => {
      const folder = join(dir, name);
      await mkdir(join(folder, "onnx"), { recursive: true });
      await writeFile(join(folder, "config.json"), config);
      const { model, data } = toExternalData(await fixtureModel("llama-tiny"), location);
      await writeFile(join(folder, "onnx", "model.onnx"), encodeModel(model));
      if (link) {
        await writeFile(join(dir, "outside.bin"), data);
        await symlink(link, join(folder, "onnx", location));
      } else if (location === "model.onnx_data") {
        await writeFile(join(folder, "onnx", location), data);
      }
      return folder;
    };
    const good = await loadBaseModel(await write("good", "model.onnx_data"));
    const e = await expected("llama-tiny");
    assert.ok(maxAbsDiff((await prefillAndStep(good, e)).logits, e.logits) < 1e-4);
    await good.release();

    for (const location of ["model.onnx", "./model.onnx", "../onnx/model.onnx", "../../passwd"]) {
      const error = await loadBaseModel(await write(`bad-${location.replace(/\W/g, "_")}`, location)).catch((e) => e);
      assert.ok(assertSafe(error, dir) instanceof OnnxModelError, `${location}: ${error}`);
    }
    const linked = await loadBaseModel(await write("linked", "model.onnx_data", join(dir, "outside.bin")))
      .catch((e) => e);
    assert.ok(assertSafe(linked, dir) instanceof FileAccessError, String(linked));
    assert.equal(linked.file, "onnx/model.onnx_data");
  }));

test("over HTTP: a symlink out of an adapter root is refused, the reply holds no contents and no path", () =>
  withTempDir(async (dir) => {
    const demo = await loadDemo();
    try {
      const root = join(dir, "roots");
      for (const name of ["linked", "garbage"]) {
        await mkdir(join(root, name), { recursive: true });
        await copyFile(join(DEMO_ADAPTER, "adapter_model.safetensors"), join(root, name, "adapter_model.safetensors"));
      }
      await writeFile(join(dir, "passwd"), SECRET);
      await symlink(join(dir, "passwd"), join(root, "linked", "adapter_config.json"));
      await writeFile(join(root, "garbage", "adapter_config.json"), SECRET);
      await withService(demo, { app: { localRoots: [root] } }, async (service) => {
        for (const id of ["linked", "garbage"]) {
          const reply = await call(service.url, "POST", "/v1/adapters", { token: ADMIN, body: { id, name: id } });
          assert.ok(reply.status >= 400 && reply.status < 600, `${id}: ${reply.status}`);
          const text = JSON.stringify(reply.body);
          assert.ok(!text.includes("root:x") && !text.includes(dir), `${id} leaked: ${text}`);
        }
        const list = await call(service.url, "GET", "/v1/adapters", { token: ADMIN });
        assert.deepEqual(list.body.data, []);
      });
    } finally {
      await demo.base.release();
    }
  }));
