'use strict';

// Reports: the protocol body, batching, the queue bound and `dropped`, one beacon in flight, the
// beacon never recorded, sampling, privacy, the wake-up rule and flush semantics.

const test = require('node:test');
const assert = require('node:assert/strict');
const { SDK, VERSION } = require('../index.js');
const {
  BEACON_PATH,
  OPENID,
  createStorage,

  okHandler,
  request,
  reportedCalls,
  settle,
  setup,
} = require('./support/fake-wx.js');

const FAIL = { errCode: 102002, errMsg: 'cloud.callContainer:fail timeout' };

function failingThenOk(failures) {
  let n = 0;
  return (options) => (n++ < failures ? { err: FAIL } : okHandler(options));
}

test('the report body is exactly the protocol', async () => {
  const { client, cloud, clock } = setup();
  const start = clock.now();
  const p = request(client);
  clock.advance(123.4);
  await p;
  const result = await client.flush();
  assert.deepEqual(result, { status: 'sent', sent: 1, pending: 0 });
  assert.equal(cloud.beacons.length, 1);
  const { body, raw } = cloud.beacons[0];
  assert.deepEqual(Object.keys(body), ['v', 'sdk', 'dropped', 'calls']);
  assert.equal(body.v, 1);
  assert.equal(body.sdk, 'wxcloudrun-telemetry-miniprogram/0.1.0');
  assert.equal(body.sdk, SDK);
  assert.equal(VERSION, '0.1.0');
  assert.equal(body.dropped, 0);
  assert.equal(body.calls.length, 1);
  const call = body.calls[0];
  assert.deepEqual(Object.keys(call), [
    'trace_id', 'span_id', 'method', 'duration_ms', 'outcome', 'status', 'err_code', 'server_ms', 'ts',
  ]);
  const [, traceId, spanId] = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(
    cloud.realCalls()[0].options.header.traceparent,
  );
  assert.deepEqual(call, {
    trace_id: traceId,
    span_id: spanId,
    method: 'GET',
    duration_ms: 123.4,
    outcome: 'ok',
    status: 200,
    err_code: null,
    server_ms: 12.3,
    ts: start,
  });
  // The raw `data` is the JSON text itself, byte for byte what JSON.stringify gives.
  assert.equal(raw, JSON.stringify(body));
});

test('the beacon: POST to the beacon route of the same service and env, through the original', async () => {
  const { client, cloud } = setup({ service: undefined, env: undefined });
  await request(client, { header: { 'X-WX-SERVICE': 'orders' }, config: { env: 'prod-01' } });
  await client.flush();
  const b = cloud.beacons[0].options;
  assert.equal(b.path, BEACON_PATH);
  assert.equal(b.method, 'POST');
  assert.equal(b.header['X-WX-SERVICE'], 'orders');
  assert.deepEqual(b.config, { env: 'prod-01' });
  assert.equal(typeof b.data, 'string');
  assert.equal(cloud.calls.find((c) => c.options === b).receiver, cloud, 'original, own receiver');
  // A custom route.
  const other = setup({ beaconPath: '/telemetry/client' });
  other.cloud.beaconHandler = () => ({ res: { statusCode: 204 } });
  await request(other.client);
  await other.client.flush();
  assert.equal(other.cloud.calls[1].options.path, '/telemetry/client');
});

test('batching: many calls, one beacon', async () => {
  const { client, cloud, timers } = setup();
  for (let i = 0; i < 10; i++) await request(client);
  assert.equal(cloud.beacons.length, 0, 'nothing is sent per call');
  timers.tick();
  await settle();
  assert.equal(cloud.beacons.length, 1);
  assert.equal(cloud.beacons[0].body.calls.length, 10);
});

test('queue bound: oldest dropped first, counted in the next report, then reset', async () => {
  const { client, cloud } = setup({ maxQueue: 5 }, { handler: failingThenOk(8) });
  for (let i = 0; i < 8; i++) await request(client).catch(() => {});
  assert.equal(cloud.beacons.length, 0);
  await request(client); // ok: 9 calls recorded, 4 dropped
  // A full queue (maxQueue 5) after a success goes at once, without waiting for the timer.
  await settle();
  assert.equal(cloud.beacons.length, 1);
  const first = cloud.beacons[0].body;
  assert.equal(first.dropped, 4);
  assert.equal(first.calls.length, 5);
  assert.deepEqual(first.calls.map((c) => c.outcome), ['fail', 'fail', 'fail', 'fail', 'ok']);
  const traceparents = cloud.realCalls().map((c) => c.options.header.traceparent.split('-')[2]);
  assert.deepEqual(first.calls.map((c) => c.span_id), traceparents.slice(4), 'the newest five');
  assert.equal(client.stats().dropped, 4);
  await request(client);
  await client.flush();
  assert.equal(cloud.beacons[1].body.dropped, 0);
});

test('reports are split: at most 64 calls and under 16 KiB each', async () => {
  const { client, cloud } = setup({ maxQueue: 300 });
  for (let i = 0; i < 150; i++) await request(client, { method: i % 2 ? 'DELETE' : 'OPTIONS' });
  // The 64th success sends a full batch at once; flush sends the rest.
  const result = await client.flush();
  assert.equal(result.pending, 0);
  const sizes = cloud.beacons.map((b) => b.body.calls.length);
  assert.equal(sizes.reduce((a, b) => a + b, 0), 150);
  for (const b of cloud.beacons) {
    assert.ok(b.body.calls.length <= 64);
    assert.ok(Buffer.byteLength(b.raw) < 16384, `${Buffer.byteLength(b.raw)} bytes`);
  }
  assert.equal(cloud.maxInflightBeacons, 1);
});

test('the 16 KiB limit splits before 64 calls when calls are large', async () => {
  const { _internal } = require('../index.js');
  const storage = createStorage();
  // Valid but long numbers (17 significant digits and an exponent) make each call ~256 bytes,
  // so 64 of them no longer fit in 16 KiB. (Real calls are ~220 bytes: 64 fit.)
  const call = (i) => ({
    trace_id: (i + 1).toString(16).padStart(32, 'a'),
    span_id: (i + 1).toString(16).padStart(16, 'b'),
    method: 'OPTIONS',
    duration_ms: 1.2345678901234567e-300 * (1 + i / 1000),
    outcome: 'http_error',
    status: 503,
    err_code: -9007199254740991,
    server_ms: 9.876543210987654e-300 * (1 + i / 1000),
    ts: 1733000000000.1235 + i / 7,
  });
  storage.setStorageSync('wxcloudrun-telemetry-miniprogram:v1', JSON.stringify({
    v: 1, dropped: 0, items: Array.from({ length: 64 }, (_, i) => ({ s: 'orders', e: 'prod-01', c: call(i) })),
  }));
  const { client, cloud } = setup({}, { wxOptions: { storage } });
  const all64 = JSON.stringify({ v: 1, sdk: SDK, dropped: 0, calls: Array.from({ length: 64 }, (_, i) => call(i)) });
  assert.ok(all64.length > _internal.MAX_REPORT_BYTES, `${all64.length}`);
  await request(client);
  await client.flush();
  assert.ok(cloud.beacons.length >= 2);
  for (const b of cloud.beacons) assert.ok(Buffer.byteLength(b.raw) < 16384);
  // 64 restored + 1 new with maxQueue 64: the oldest is dropped and counted.
  assert.equal(reportedCalls(cloud).length, 64);
  assert.equal(cloud.beacons[0].body.dropped, 1);
  assert.equal(cloud.beacons[1].body.dropped, 0);
});

test('at most one beacon in flight, however flush is called', async () => {
  const { client, cloud, timers, wx } = setup({ maxQueue: 500 });
  for (let i = 0; i < 200; i++) await request(client);
  await Promise.all([client.flush(), client.flush(), client.flush(), (timers.tick(), wx.hide(), client.flush())]);
  await settle();
  assert.equal(cloud.maxInflightBeacons, 1);
  assert.equal(reportedCalls(cloud).length, 200);
  assert.equal(new Set(reportedCalls(cloud).map((c) => c.span_id)).size, 200, 'nothing sent twice');
});

test('no recursion: beacons are never recorded, traced or reported', async () => {
  const { client, cloud, timers } = setup();
  for (let round = 0; round < 5; round++) {
    await request(client);
    timers.tick();
    await settle();
  }
  assert.equal(cloud.beacons.length, 5);
  assert.equal(reportedCalls(cloud).length, 5, 'one report per real call, none for the beacons');
  for (const b of cloud.beacons) {
    assert.equal(b.options.header.traceparent, undefined);
    assert.equal(b.body.calls.length, 1);
  }
  assert.equal(client.stats().calls, 5);
  // A call to the beacon route through the wrapper is not recorded either.
  await client.callContainer({ path: BEACON_PATH, method: 'POST', header: { 'X-WX-SERVICE': 'orders' }, data: '{}' });
  assert.equal(client.stats().calls, 5);
});

test('sampling: sampleRate 0 reports no success but every failure', async () => {
  let n = 0;
  const handler = (options) => {
    n++;
    if (n % 3 === 0) return { err: FAIL };
    if (n % 3 === 1) return { res: { statusCode: 503, header: {} } };
    return okHandler(options);
  };
  const { client, cloud } = setup({ sampleRate: 0, maxQueue: 100 }, { handler });
  for (let i = 0; i < 30; i++) await request(client).catch(() => {});
  await request(client, {}).catch(() => {}); // n = 31: 503; make the last one a success:
  await request(client); // n = 32: ok, warms the service
  await client.flush();
  const outcomes = reportedCalls(cloud).map((c) => c.outcome);
  assert.equal(outcomes.filter((o) => o === 'ok').length, 0);
  assert.equal(outcomes.filter((o) => o === 'fail').length, 10);
  assert.equal(outcomes.filter((o) => o === 'http_error').length, 11);
  assert.equal(client.stats().sampledOut, 11);
});

test('sampling: the decision is per call', async () => {
  const { client, cloud } = setup({ sampleRate: 0.5, maxQueue: 1000 });
  const random = Math.random;
  let i = 0;
  // Alternate below / above 0.5 for the sampling draws only (ids come from the pool).
  await settle();
  Math.random = () => (i++ % 2 === 0 ? 0.25 : 0.75);
  try {
    for (let k = 0; k < 20; k++) await request(client);
  } finally {
    Math.random = random;
  }
  await client.flush();
  assert.equal(reportedCalls(cloud).length, 10);
  assert.equal(client.stats().sampledOut, 10);
});

test('no openid, path or body in any beacon or in storage', async () => {
  const storage = createStorage();
  let n = 0;
  const handler = (options) => {
    n++;
    const ok = okHandler(options);
    ok.res.header['X-WX-OPENID'] = OPENID;
    ok.res.header['Set-Cookie'] = `sid=${OPENID}`;
    if (n % 2) return { err: { errCode: -1, errMsg: `fail for ${OPENID} at /api/secret-path` } };
    return ok;
  };
  const { client, cloud } = setup({}, { handler, wxOptions: { storage } });
  for (let i = 0; i < 6; i++) {
    await request(client, {
      path: `/api/secret-path?openid=${OPENID}`,
      method: 'POST',
      header: { 'X-WX-SERVICE': 'orders', 'X-WX-OPENID': OPENID },
      data: { openid: OPENID, secretBody: 'do-not-send' },
    }).catch(() => {});
  }
  const stored = storage.getStorageSync('wxcloudrun-telemetry-miniprogram:v1');
  assert.ok(stored.length > 0, 'failures are stored');
  await client.flush();
  assert.ok(cloud.beacons.length > 0);
  for (const text of [stored, ...cloud.beacons.map((b) => b.raw)]) {
    assert.ok(!text.includes(OPENID), text);
    assert.ok(!text.includes('secret-path'), text);
    assert.ok(!text.includes('do-not-send'), text);
    assert.ok(!text.includes('openid'), text);
    assert.ok(!text.includes('sid='), text);
  }
  for (const b of cloud.beacons) {
    assert.deepEqual(Object.keys(b.options.header).sort(), ['X-WX-SERVICE', 'content-type']);
  }
});

test('no beacon before a real successful call', async () => {
  const { client, cloud, timers, wx } = setup({}, { handler: () => ({ err: FAIL }) });
  assert.deepEqual(await client.flush(), { status: 'empty', sent: 0, pending: 0 });
  for (let i = 0; i < 5; i++) await request(client).catch(() => {});
  timers.tick();
  wx.hide();
  await settle();
  assert.deepEqual(await client.flush(), { status: 'cold', sent: 0, pending: 5 });
  assert.equal(cloud.beacons.length, 0);
  // 5xx is not a success either.
  cloud.handler = () => ({ res: { statusCode: 503, header: {} } });
  await request(client);
  assert.equal((await client.flush()).status, 'cold');
  assert.equal(cloud.beacons.length, 0);
  // The first success opens the door.
  cloud.handler = okHandler;
  await request(client);
  assert.deepEqual(await client.flush(), { status: 'sent', sent: 7, pending: 0 });
});

test('flush sends only within flushAfterSuccessMs of the last real call, when that call succeeded', async () => {
  const { client, cloud, clock } = setup({ flushAfterSuccessMs: 30000 });
  await request(client);
  clock.advance(29999);
  assert.equal((await client.flush()).status, 'sent');
  cloud.handler = () => ({ err: FAIL });
  await request(client).catch(() => {});
  assert.equal((await client.flush()).status, 'cold', 'the last call failed');
  cloud.handler = okHandler;
  await request(client);
  clock.advance(30001);
  const late = await client.flush();
  assert.deepEqual(late, { status: 'cold', sent: 0, pending: 2 });
  await request(client);
  assert.deepEqual(await client.flush(), { status: 'sent', sent: 3, pending: 0 });
});

test('flush never rejects: failed beacons keep the reports for later', async () => {
  const { client, cloud } = setup();
  cloud.beaconHandler = () => ({ err: { errCode: -1, errMsg: 'network' } });
  await request(client);
  await request(client);
  const r = await client.flush();
  assert.deepEqual(r, { status: 'failed', sent: 0, pending: 2 });
  cloud.beaconHandler = () => ({ res: { statusCode: 503 } });
  assert.equal((await client.flush()).status, 'failed');
  cloud.beaconHandler = () => ({ res: { statusCode: 429 } });
  assert.equal((await client.flush()).status, 'failed');
  cloud.beaconHandler = () => ({ res: { statusCode: 204 } });
  assert.deepEqual(await client.flush(), { status: 'sent', sent: 2, pending: 0 });
  assert.equal(client.stats().beaconFailures, 3);
  // A throwing original does not make flush reject either.
  await request(client);
  cloud.beaconHandler = () => ({ throws: new Error('boom') });
  assert.equal((await client.flush()).status, 'failed');
});

test('a beacon that never answers is given up after a guard time, not forever', async () => {
  const { client, cloud, timers } = setup();
  let swallowed = 0;
  cloud.beaconHandler = () => (swallowed++ === 0 ? { never: true } : { res: { statusCode: 204 } });
  await request(client);
  const pending = client.flush();
  await settle();
  assert.equal(timers.timeouts.size, 1);
  timers.fireTimeouts();
  assert.equal((await pending).status, 'failed');
  assert.equal((await client.flush()).status, 'sent');
});

test('refused reports (4xx) are dropped and counted; a missing route disables reporting', async () => {
  const { client, cloud } = setup();
  cloud.beaconHandler = () => ({ res: { statusCode: 400 } });
  await request(client);
  assert.equal((await client.flush()).status, 'failed');
  cloud.beaconHandler = () => ({ res: { statusCode: 204 } });
  await request(client);
  await client.flush();
  assert.equal(cloud.beacons[1].body.dropped, 1);

  cloud.beaconHandler = () => ({ res: { statusCode: 404 } });
  await request(client);
  await client.flush();
  const beacons = cloud.beacons.length;
  for (let i = 0; i < 5; i++) await request(client);
  await client.flush();
  assert.equal(cloud.beacons.length, beacons, 'no more beacons to a service without the route');
  assert.equal(client.stats().queued, 0);
});

test('the timer and wx.onAppHide trigger the same flush', async () => {
  const { client, cloud, timers, wx } = setup({ flushIntervalMs: 5000 });
  assert.equal([...timers.intervals.values()][0].ms, 5000);
  await request(client);
  timers.tick();
  await settle();
  assert.equal(cloud.beacons.length, 1);
  await request(client);
  wx.hide();
  await settle();
  assert.equal(cloud.beacons.length, 2);
  // flushIntervalMs 0: no timer.
  const none = setup({ flushIntervalMs: 0 });
  assert.equal(none.timers.intervals.size, 0);
});
