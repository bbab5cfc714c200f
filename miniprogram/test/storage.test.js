'use strict';

// Unsent reports survive the launch: stored (bounded), restored by the next instrument() with the
// same storage, and sent on that launch's first real successful call.

const test = require('node:test');
const assert = require('node:assert/strict');
const { _internal } = require('../index.js');
const {
  createClock,
  createStorage,
  request,
  reportedCalls,
  settle,
  setup,
} = require('./support/fake-wx.js');

const KEY = 'wxcloudrun-telemetry-miniprogram:v1';
const FAIL = { errCode: 102002, errMsg: 'cloud.callContainer:fail timeout' };

function stored(storage, key = KEY) {
  const raw = storage.getStorageSync(key);
  return raw ? JSON.parse(raw) : null;
}

test('failures are stored at once and restored by the next launch, sent after its first success', async () => {
  const storage = createStorage();
  // Launch 1: the service is cold, every call times out (102002); no beacon can be sent.
  const first = setup({}, { wxOptions: { storage }, handler: () => ({ err: FAIL }) });
  for (let i = 0; i < 3; i++) await request(first.client).catch(() => {});
  assert.equal(first.cloud.beacons.length, 0);
  const saved = stored(storage);
  assert.equal(saved.v, 1);
  assert.equal(saved.items.length, 3);
  assert.deepEqual(saved.items.map((it) => [it.s, it.e, it.c.outcome, it.c.err_code]), [
    ['orders', 'prod-01', 'fail', 102002],
    ['orders', 'prod-01', 'fail', 102002],
    ['orders', 'prod-01', 'fail', 102002],
  ]);
  const spanIds = first.cloud.realCalls().map((c) => c.options.header.traceparent.split('-')[2]);

  // Launch 2: a new instrument() over the same storage.
  const second = setup({}, { wxOptions: { storage }, clock: createClock(1733000100000) });
  assert.equal(second.client.stats().queued, 3);
  second.timers.tick();
  await settle();
  assert.equal(second.cloud.beacons.length, 0, 'restored reports do not wake the service');
  await request(second.client);
  await settle(); // the first success sends the restored reports without waiting for the timer
  assert.equal(second.cloud.beacons.length, 1);
  const calls = second.cloud.beacons[0].body.calls;
  assert.deepEqual(calls.map((c) => c.span_id), [...spanIds, calls[3].span_id]);
  assert.deepEqual(calls.map((c) => c.outcome), ['fail', 'fail', 'fail', 'ok']);
  assert.equal(storage.getStorageSync(KEY), '', 'storage emptied once sent');
});

test('reports not sent because the service was cold stay stored through onAppHide', async () => {
  const storage = createStorage();
  const { client, wx, clock } = setup({}, { wxOptions: { storage } });
  await request(client);
  clock.advance(120000); // long after the success: cold
  wx.hide();
  await settle();
  assert.equal(stored(storage).items.length, 1);
  const next = setup({}, { wxOptions: { storage } });
  assert.equal(next.client.stats().queued, 1);
});

test('storage is bounded: at most maxQueue calls and a fixed number of characters', async () => {
  const storage = createStorage();
  const { client } = setup({ maxQueue: 10 }, { wxOptions: { storage }, handler: () => ({ err: FAIL }) });
  for (let i = 0; i < 25; i++) await request(client).catch(() => {});
  const saved = stored(storage);
  assert.equal(saved.items.length, 10);
  assert.equal(saved.dropped, 15);

  const big = createStorage();
  const many = setup({ maxQueue: 1000 }, { wxOptions: { storage: big }, handler: () => ({ err: FAIL }) });
  for (let i = 0; i < 400; i++) await request(many.client).catch(() => {});
  const raw = big.getStorageSync(KEY);
  assert.ok(raw.length <= _internal.MAX_STORED_CHARS + 64, `${raw.length}`);
  const bounded = JSON.parse(raw);
  assert.ok(bounded.items.length < 400);
  assert.equal(bounded.dropped, 400 - bounded.items.length, 'what did not fit is counted');
  // The newest are the ones kept.
  const lastSpan = many.cloud.realCalls().at(-1).options.header.traceparent.split('-')[2];
  assert.equal(bounded.items.at(-1).c.span_id, lastSpan);
});

test('the dropped count survives the launch too', async () => {
  const storage = createStorage();
  const first = setup({ maxQueue: 2 }, { wxOptions: { storage }, handler: () => ({ err: FAIL }) });
  for (let i = 0; i < 5; i++) await request(first.client).catch(() => {});
  const second = setup({ maxQueue: 2 }, { wxOptions: { storage } });
  await request(second.client); // 2 restored + 1 = 3 > 2: one more dropped
  await settle();
  await second.client.flush();
  assert.equal(second.cloud.beacons[0].body.dropped, 4);
  assert.equal(reportedCalls(second.cloud).length, 2);
});

test('damaged or foreign storage content is ignored, bad entries skipped', async () => {
  for (const junk of ['{not json', '"a string"', JSON.stringify({ v: 2, items: [] }), JSON.stringify({ v: 1, items: 'x' }), 42]) {
    const storage = createStorage();
    storage.setStorageSync(KEY, junk);
    const { client } = setup({}, { wxOptions: { storage } });
    assert.equal(client.stats().queued, 0);
    assert.equal(client.stats().internalErrors, 0);
    assert.equal((await request(client)).statusCode, 200);
  }
  const good = {
    trace_id: '4bf92f3577b34da6a3ce929d0e0e4736', span_id: '00f067aa0ba902b7', method: 'GET',
    duration_ms: 12, outcome: 'fail', status: null, err_code: -1, server_ms: null, ts: 1733000000000,
  };
  const storage = createStorage();
  storage.setStorageSync(KEY, JSON.stringify({
    v: 1,
    dropped: 0,
    items: [
      { s: 'orders', e: 'prod-01', c: good },
      { s: 'orders', e: 'prod-01', c: { ...good, trace_id: 'nothex' } },
      { s: 'orders', e: 'prod-01', c: { ...good, outcome: 'weird' } },
      { s: 'orders', e: 'prod-01', c: { ...good, openid: 'oSmuggled', path: '/x' } },
      { s: '', e: 'prod-01', c: good },
      null,
    ],
  }));
  const { client, cloud } = setup({}, { wxOptions: { storage } });
  assert.equal(client.stats().queued, 2);
  await request(client);
  await settle();
  const raw = cloud.beacons[0].raw;
  assert.ok(!raw.includes('oSmuggled') && !raw.includes('"path"'), 'only protocol fields are sent');
});

test('a custom storageKey, and storageKey null turns storage off', async () => {
  const storage = createStorage();
  const custom = setup({ storageKey: 'my-key' }, { wxOptions: { storage }, handler: () => ({ err: FAIL }) });
  await request(custom.client).catch(() => {});
  assert.ok(storage.getStorageSync('my-key'));
  assert.equal(storage.getStorageSync(KEY), '');

  const off = createStorage();
  const none = setup({ storageKey: null }, { wxOptions: { storage: off }, handler: () => ({ err: FAIL }) });
  await request(none.client).catch(() => {});
  assert.equal(off.data.size, 0);
});

test('storage is not written on every successful call', async () => {
  const storage = createStorage();
  const { client, timers } = setup({}, { wxOptions: { storage } });
  for (let i = 0; i < 20; i++) await request(client);
  assert.equal(storage.writes, 0);
  timers.tick(); // flush, then one write
  await settle();
  assert.ok(storage.writes <= 2, `${storage.writes}`);
});
