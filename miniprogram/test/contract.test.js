'use strict';

// The wrapper keeps callContainer's contract: both call styles, identity of results and errors,
// the receiver, the caller's options untouched, and nothing the package does can break a call.

const test = require('node:test');
const assert = require('node:assert/strict');
const { instrument } = require('../index.js');
const {
  FakeCloud,
  createWx,
  createTimers,
  request,
  settle,
  setup,
} = require('./support/fake-wx.js');

const FAIL = { errCode: -501000, errMsg: 'cloud.callContainer:fail Error: errCode: -501000 | errMsg: path error' };

test('promise style: returns a promise that resolves with the very same result object', async () => {
  let res;
  const { client } = setup({}, { handler: () => ({ res }) });
  res = { statusCode: 200, header: {}, data: { a: 1 } };
  const p = request(client);
  assert.equal(typeof p.then, 'function');
  assert.equal(await p, res);
});

test('promise style: rejects with the very same error object', async () => {
  const { client } = setup({}, { handler: () => ({ err: FAIL }) });
  await assert.rejects(request(client), (err) => {
    assert.equal(err, FAIL);
    return true;
  });
});

test('callback style: success gets the same result, returns what the original returns, complete once', async () => {
  const res = { statusCode: 200, header: {}, data: 'x' };
  const { client, cloud } = setup({}, { handler: () => ({ res }) });
  const seen = { success: [], fail: [], complete: [] };
  const ret = client.callContainer({
    path: '/api/a',
    header: { 'X-WX-SERVICE': 'orders' },
    success: (r) => seen.success.push(r),
    fail: (e) => seen.fail.push(e),
    complete: (r) => seen.complete.push(r),
  });
  assert.equal(ret, cloud.returned, 'the original return value is passed through');
  await settle();
  assert.deepEqual(seen.fail, []);
  assert.equal(seen.success.length, 1);
  assert.equal(seen.success[0], res);
  assert.equal(seen.complete.length, 1);
  assert.equal(seen.complete[0], res);
});

test('callback style: fail gets the same error, complete exactly once', async () => {
  const { client } = setup({}, { handler: () => ({ err: FAIL }) });
  const seen = { success: 0, fail: [], complete: [] };
  client.callContainer({
    path: '/api/a',
    header: { 'X-WX-SERVICE': 'orders' },
    success: () => seen.success++,
    fail: (e) => seen.fail.push(e),
    complete: (r) => seen.complete.push(r),
  });
  await settle();
  assert.equal(seen.success, 0);
  assert.deepEqual(seen.fail, [FAIL]);
  assert.equal(seen.fail[0], FAIL);
  assert.equal(seen.complete.length, 1);
  assert.equal(seen.complete[0], FAIL);
});

test('callback style with only complete: complete exactly once and the call is still recorded', async () => {
  const { client, cloud } = setup({}, { handler: () => ({ err: FAIL }) });
  let completes = 0;
  client.callContainer({ path: '/api/a', header: { 'X-WX-SERVICE': 'orders' }, complete: () => completes++ });
  await settle();
  assert.equal(completes, 1);
  assert.equal(client.stats().recorded, 1);
  assert.equal(cloud.realCalls().length, 1);
});

test('the original is called with its own receiver (wx.cloud.Cloud instances too)', async () => {
  class Cloud {
    constructor(config) {
      this.config = config;
      this.inited = false;
      this.receivers = [];
    }
    init() {
      this.inited = true;
      return Promise.resolve();
    }
    callContainer(options) {
      this.receivers.push(this);
      if (!this.inited) return Promise.reject({ errCode: -1, errMsg: 'not inited' });
      return Promise.resolve({ statusCode: 200, header: {}, data: this.config.resourceEnv, options });
    }
  }
  const instance = new Cloud({ resourceAppid: 'wx123', resourceEnv: 'prod-01' });
  const client = instrument(instance, { service: 'orders', wx: createWx(), timers: createTimers() });
  // init() goes through the wrapper to the instance itself, so its state lands on the instance.
  await client.init();
  assert.equal(instance.inited, true);
  const res = await request(client);
  assert.equal(res.data, 'prod-01');
  assert.equal(instance.receivers.length, 1);
  assert.equal(instance.receivers[0], instance);
  // Other members stay reachable.
  assert.deepEqual(client.config, instance.config);

  const fake = new FakeCloud();
  const wrapped = instrument(fake, { service: 'orders', wx: createWx(), timers: createTimers() });
  await request(wrapped);
  assert.equal(fake.calls[0].receiver, fake);
  assert.equal(wrapped.callFunction({ name: 'f' }).receiver, fake);
});

test('the caller\'s options object and header are not modified', async () => {
  const { client, cloud } = setup();
  const header = { 'X-WX-SERVICE': 'orders', 'X-Custom': '1' };
  const options = { path: '/api/users/7', method: 'POST', header, data: { a: 1 }, config: { env: 'prod-01' } };
  const before = JSON.stringify(options);
  await client.callContainer(options);
  assert.equal(JSON.stringify(options), before);
  assert.equal(options.header, header);
  assert.deepEqual(Object.keys(header), ['X-WX-SERVICE', 'X-Custom']);
  const sent = cloud.realCalls()[0].options;
  assert.notEqual(sent, options);
  assert.notEqual(sent.header, header);
  assert.equal(sent.header['X-Custom'], '1');
  assert.equal(sent.data, options.data, 'the body is passed by reference, untouched');
  assert.match(sent.header.traceparent, /^00-/);
});

test('the callback-style options object is not modified either', async () => {
  const { client } = setup();
  const success = () => {};
  const options = { path: '/a', header: { 'X-WX-SERVICE': 'orders' }, success };
  client.callContainer(options);
  await settle();
  assert.equal(options.success, success);
  assert.deepEqual(Object.keys(options), ['path', 'header', 'success']);
  assert.deepEqual(Object.keys(options.header), ['X-WX-SERVICE']);
});

test('nothing global is patched: wx.cloud / the cloud object keep their own callContainer', async () => {
  const cloud = new FakeCloud();
  const own = cloud.callContainer;
  const protoFn = FakeCloud.prototype.callContainer;
  const client = instrument(cloud, { service: 'orders', wx: createWx(), timers: createTimers() });
  assert.equal(cloud.callContainer, own);
  assert.equal(FakeCloud.prototype.callContainer, protoFn);
  assert.notEqual(client.callContainer, own);
  assert.equal(Object.prototype.hasOwnProperty.call(cloud, 'flush'), false);
});

test('a wrapper assigned back onto the cloud does not recurse', async () => {
  const cloud = new FakeCloud();
  const client = instrument(cloud, { service: 'orders', wx: createWx(), timers: createTimers() });
  cloud.callContainer = client.callContainer; // what an app might do to cover all its code
  const res = await request(cloud);
  assert.equal(res.statusCode, 200);
  assert.equal(cloud.calls.length, 1);
});

test('an exception inside the package does not break the call: original called exactly once', async (t) => {
  await t.test('the clock throws', async () => {
    const { client, cloud } = setup({ now: () => { throw new Error('clock'); } });
    const res = await request(client);
    assert.equal(res.statusCode, 200);
    assert.equal(cloud.realCalls().length, 1);
  });

  await t.test('reading the request header throws', async () => {
    const { client, cloud } = setup();
    const options = { path: '/a' };
    Object.defineProperty(options, 'header', {
      enumerable: true,
      get() {
        if (cloud.calls.length === 0 && !this.thrown) {
          this.thrown = true;
          throw new Error('header getter');
        }
        return { 'X-WX-SERVICE': 'orders' };
      },
    });
    const res = await client.callContainer(options);
    assert.equal(res.statusCode, 200);
    assert.equal(cloud.calls.length, 1);
    assert.equal(cloud.calls[0].options, options, 'the caller\'s own options went through');
    assert.equal(client.stats().internalErrors, 1);
  });

  await t.test('reading the response header throws', async () => {
    const res = { statusCode: 200, data: 1 };
    Object.defineProperty(res, 'header', { get() { throw new Error('res.header'); } });
    const { client, cloud } = setup({}, { handler: () => ({ res }) });
    assert.equal(await request(client), res);
    assert.equal(cloud.realCalls().length, 1);
    assert.equal(client.stats().internalErrors, 1);
    // Callback style as well: success still reached, complete once.
    let got;
    let completes = 0;
    client.callContainer({ path: '/a', header: { 'X-WX-SERVICE': 'orders' }, success: (r) => (got = r), complete: () => completes++ });
    await settle();
    assert.equal(got, res);
    assert.equal(completes, 1);
    assert.equal(cloud.realCalls().length, 2);
  });

  await t.test('storage and random values throw', async () => {
    const wx = createWx();
    wx.getStorageSync = () => { throw new Error('storage'); };
    wx.setStorageSync = () => { throw new Error('storage'); };
    wx.getRandomValues = () => { throw new Error('random'); };
    wx.onAppHide = () => { throw new Error('onAppHide'); };
    const { client, cloud } = setup({}, { wx, handler: () => ({ err: FAIL }) });
    await assert.rejects(request(client), (e) => e === FAIL);
    assert.equal(cloud.realCalls().length, 1);
    assert.ok(client.stats().internalErrors >= 3);
  });

  await t.test('the original itself throws synchronously: the same exception, once', async () => {
    const boom = new TypeError('bad options');
    const cloud = new FakeCloud();
    let calls = 0;
    cloud.callContainer = function () {
      calls++;
      throw boom;
    };
    const client = instrument(cloud, { service: 'orders', wx: createWx(), timers: createTimers() });
    assert.throws(() => request(client), (e) => e === boom);
    assert.equal(calls, 1);
  });
});

test('degrades without getRandomValues, onAppHide, storage or res.header', async () => {
  const wx = createWx({ storage: null, randomValues: false, onAppHide: false });
  const { client, cloud } = setup({}, { wx, handler: () => ({ res: { statusCode: 200, data: 'no header' } }) });
  const res = await request(client);
  assert.equal(res.data, 'no header');
  assert.match(cloud.realCalls()[0].options.header.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  const flushed = await client.flush();
  assert.equal(flushed.status, 'sent');
  assert.equal(cloud.beacons[0].body.calls[0].server_ms, null);
  assert.equal(client.stats().internalErrors, 0);
  // And without any wx at all (no global wx in Node).
  const bare = new FakeCloud();
  const noWx = instrument(bare, { service: 'orders', timers: createTimers() });
  assert.equal((await request(noWx)).statusCode, 200);
});

test('instrument never throws, even on nonsense', async () => {
  assert.doesNotThrow(() => instrument(null));
  assert.doesNotThrow(() => instrument({}, 'not options'));
  const weird = instrument({}, { sampleRate: 'x', maxQueue: -3, beaconPath: 'no-slash', timers: createTimers() });
  assert.throws(() => weird.callContainer({ path: '/a' }), TypeError, 'fails like the object itself would');
  const flushed = await instrument(null).flush();
  assert.equal(flushed.status, 'disabled');
});

test('enabled: false is a pure pass-through', async () => {
  const { client, cloud, timers } = setup({ enabled: false });
  const options = { path: '/a', header: { 'X-WX-SERVICE': 'orders' } };
  await client.callContainer(options);
  assert.equal(cloud.calls[0].options, options, 'the very same options object');
  assert.equal(timers.intervals.size, 0);
  assert.deepEqual(await client.flush(), { status: 'disabled', sent: 0, pending: 0 });
});

test('with `service` set, calls to other services pass through untouched', async () => {
  const { client, cloud } = setup({ service: 'orders' });
  const options = { path: '/a', header: { 'x-wx-service': 'billing' } };
  await client.callContainer(options);
  assert.equal(cloud.calls[0].options, options);
  await request(client);
  assert.equal(client.stats().recorded, 1);
});

test('without `service`, each call reports to its own service', async () => {
  const { client, cloud } = setup({ service: undefined, env: undefined });
  await request(client, { header: { 'X-WX-SERVICE': 'orders' }, config: { env: 'prod-01' } });
  await request(client, { header: { 'x-wx-service': 'billing' }, config: undefined });
  await client.flush();
  const targets = cloud.beacons.map((b) => [b.options.header['X-WX-SERVICE'], b.options.config && b.options.config.env]);
  assert.deepEqual(targets, [['orders', 'prod-01'], ['billing', undefined]]);
});

test('stop() clears the timer and the onAppHide listener', () => {
  const { client, timers, wx } = setup();
  assert.equal(timers.intervals.size, 1);
  assert.equal(wx.hideListeners.length, 1);
  client.stop();
  assert.equal(timers.intervals.size, 0);
  assert.equal(wx.hideListeners.length, 0);
});

test('after stop() calls pass through untouched and what was unsent is stored', async () => {
  const { client, cloud, wx } = setup({}, { handler: () => ({ res: { statusCode: 503, header: {} } }) });
  await request(client);
  client.stop();
  const options = { path: '/a', header: { 'X-WX-SERVICE': 'orders' } };
  await client.callContainer(options);
  assert.equal(cloud.calls[1].options, options);
  assert.equal((await client.flush()).status, 'disabled');
  const stored = JSON.parse(wx.storage.getStorageSync('wxcloudrun-telemetry-miniprogram:v1'));
  assert.equal(stored.items.length, 1);
});

test('the default timers do not keep Node alive and the wrapper works with the real clock', async () => {
  const cloud = new FakeCloud();
  const client = instrument(cloud, { service: 'orders', wx: createWx() });
  await request(client);
  assert.equal((await client.flush()).status, 'sent');
  client.stop();
});
