/**
 * Test-only observation of WebGPU devices: counts the `GPUDevice`s requested
 * while a function runs, and how many of those were destroyed, by wrapping
 * `GPUAdapter.prototype.requestDevice` and `GPUDevice.prototype.destroy`
 * (restored afterwards). Devices requested earlier (onnxruntime's own) are
 * not counted. Only for runtimes with WebGPU (Deno).
 * @module
 */

/** Runs `fn` and returns its result with the devices requested and destroyed meanwhile. */
export async function countGpuDevices<T>(
  fn: () => Promise<T>,
): Promise<{ result: T; requested: number; destroyed: number }> {
  const counts = { requested: 0, destroyed: 0 };
  const requested = new WeakSet<GPUDevice>();
  const adapter = GPUAdapter.prototype;
  const device = GPUDevice.prototype;
  const requestDevice = adapter.requestDevice;
  const destroy = device.destroy;
  adapter.requestDevice = function (this: GPUAdapter, ...args) {
    counts.requested++;
    return requestDevice.apply(this, args).then((d) => (requested.add(d), d));
  };
  device.destroy = function (this: GPUDevice) {
    if (requested.has(this)) counts.destroyed++;
    return destroy.apply(this);
  };
  try {
    return { result: await fn(), ...counts };
  } finally {
    adapter.requestDevice = requestDevice;
    device.destroy = destroy;
  }
}
