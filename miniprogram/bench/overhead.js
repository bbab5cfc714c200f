'use strict';

// Per-call overhead of the wrapper in Node: wrapped vs bare fake callContainer, 100k calls each,
// interleaved in chunks so that both see the same machine state. Two styles: callbacks (the fake
// answers synchronously, so only the wrapper's own work is measured) and promises (awaited).
//
//   node miniprogram/bench/overhead.js [calls=100000]
//
// The fake answers at once; a real callContainer takes milliseconds, so the ratio is an upper
// bound of no practical meaning — the ns per call is the number that matters.

const crypto = require('node:crypto');
const { instrument } = require('../index.js');

const CALLS = Number(process.argv[2]) || 100000;
const CHUNK = 1000;
const BEACON_PATH = '/_wxtelemetry/v1/client';

const RES = {
  statusCode: 200,
  header: { 'Server-Timing': 'app;dur=12.3', 'X-Trace-Id': '4bf92f3577b34da6a3ce929d0e0e4736', 'Content-Type': 'application/json' },
  data: { ok: true },
  callID: 'cid',
  errMsg: 'cloud.callContainer:ok',
};
const BEACON_RES = { statusCode: 204, header: {}, data: '' };

// A bare callContainer with the real contract, answering synchronously.
const cloud = {
  beacons: 0,
  callContainer(options) {
    const res = options.path === BEACON_PATH ? (this.beacons++, BEACON_RES) : RES;
    if (typeof options.success !== 'function' && typeof options.fail !== 'function' && typeof options.complete !== 'function') {
      return Promise.resolve(res);
    }
    if (options.success) options.success(res);
    if (options.complete) options.complete(res);
    return undefined;
  },
};

const storage = new Map();
const wx = {
  getRandomValues({ length, success }) {
    const bytes = crypto.randomBytes(length);
    queueMicrotask(() => success({ randomValues: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + length) }));
  },
  getStorageSync: (k) => (storage.has(k) ? storage.get(k) : ''),
  setStorageSync: (k, v) => storage.set(k, v),
  removeStorageSync: (k) => storage.delete(k),
  onAppHide() {},
};
const timers = { setInterval: () => 0, clearInterval() {}, setTimeout: () => 0, clearTimeout() {} };
const wrapped = instrument(cloud, { service: 'orders', env: 'prod-01', wx, timers });

let sink = 0;
const onSuccess = (res) => {
  sink += res.statusCode;
};
function callbackOptions() {
  return { path: '/api/users/7', method: 'GET', header: { 'X-WX-SERVICE': 'orders' }, success: onSuccess };
}
function promiseOptions() {
  return { path: '/api/users/7', method: 'GET', header: { 'X-WX-SERVICE': 'orders' } };
}

function runCallbacks(target, n) {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) target.callContainer(callbackOptions());
  return process.hrtime.bigint() - t0;
}

async function runPromises(target, n) {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) sink += (await target.callContainer(promiseOptions())).statusCode;
  return process.hrtime.bigint() - t0;
}

const yieldToEventLoop = () => new Promise((resolve) => setImmediate(resolve));

async function measure(name, run) {
  // Warm-up, both sides.
  for (let i = 0; i < 10; i++) {
    await run(cloud, CHUNK);
    await run(wrapped, CHUNK);
    await yieldToEventLoop();
  }
  let bare = 0n;
  let instrumented = 0n;
  for (let done = 0; done < CALLS; done += CHUNK) {
    const n = Math.min(CHUNK, CALLS - done);
    // Alternate which side goes first.
    if ((done / CHUNK) % 2 === 0) {
      bare += await run(cloud, n);
      instrumented += await run(wrapped, n);
    } else {
      instrumented += await run(wrapped, n);
      bare += await run(cloud, n);
    }
    await yieldToEventLoop(); // lets the random pool refill and pending beacons settle
  }
  const bareNs = Number(bare) / CALLS;
  const wrappedNs = Number(instrumented) / CALLS;
  console.log(
    `${name.padEnd(10)} bare ${bareNs.toFixed(0).padStart(6)} ns/call   wrapped ${wrappedNs.toFixed(0).padStart(6)} ns/call   ` +
      `overhead ${(wrappedNs - bareNs).toFixed(0).padStart(6)} ns/call   ratio ${(wrappedNs / bareNs).toFixed(2)}x`,
  );
}

(async () => {
  console.log(`node ${process.version}, ${CALLS} calls each side, interleaved in chunks of ${CHUNK}`);
  await measure('callbacks', runCallbacks);
  await measure('promises', runPromises);
  await wrapped.flush();
  const s = wrapped.stats();
  console.log(
    `wrapper: ${s.calls} calls, ${s.beacons} beacons (${s.reportedCalls} calls reported, ${s.dropped} dropped), ` +
      `ids ${s.idsFromRandomValues} from getRandomValues / ${s.idsFromMathRandom} from Math.random, ` +
      `${s.internalErrors} internal errors`,
  );
  if (sink === 0) console.log('');
})();
