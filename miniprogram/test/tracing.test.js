'use strict';

// traceparent injection and ids, outcome classification, Server-Timing and x-trace-id.

const test = require('node:test');
const assert = require('node:assert/strict');
const { _internal } = require('../index.js');
const { createWx, request, reportedCalls, settle, setup } = require('./support/fake-wx.js');

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/;

function sentTraceparent(cloud, i = 0) {
  return cloud.realCalls()[i].options.header.traceparent;
}

test('traceparent: W3C format, fresh non-zero ids per call', async () => {
  const { client, cloud } = setup();
  await settle(); // the pool of random bytes arrives
  for (let i = 0; i < 50; i++) await request(client);
  const seen = new Set();
  for (let i = 0; i < 50; i++) {
    const m = TRACEPARENT.exec(sentTraceparent(cloud, i));
    assert.ok(m, sentTraceparent(cloud, i));
    assert.doesNotMatch(m[1], /^0+$/);
    assert.doesNotMatch(m[2], /^0+$/);
    seen.add(m[1]);
    seen.add(m[2]);
  }
  assert.equal(seen.size, 100);
  assert.equal(client.stats().idsFromRandomValues, 50);
});

test('ids come from wx.getRandomValues (asynchronous, pooled), Math.random until the pool arrives', async () => {
  let counter = 0;
  const wx = createWx({
    randomValues: (length) => Uint8Array.from({ length }, () => counter++ % 256),
  });
  const { client, cloud } = setup({}, { wx });
  // Before the asynchronous answer: Math.random fallback, still a valid id.
  const early = request(client);
  assert.match(sentTraceparent(cloud, 0), TRACEPARENT);
  await early;
  assert.equal(client.stats().idsFromMathRandom, 1);
  await settle();
  await request(client);
  assert.equal(sentTraceparent(cloud, 1), '00-000102030405060708090a0b0c0d0e0f-1011121314151617-01');
  assert.equal(client.stats().idsFromRandomValues, 1);
  // One request for the whole pool, not one per call.
  for (let i = 0; i < 20; i++) await request(client);
  assert.equal(wx.randomRequests, 1);
});

test('the pool is refilled before it runs dry', async () => {
  const wx = createWx();
  const { client } = setup({}, { wx });
  await settle();
  for (let i = 0; i < 200; i++) {
    await request(client);
    await settle(1);
  }
  assert.ok(wx.randomRequests >= 3, `requests: ${wx.randomRequests}`);
  assert.ok(client.stats().idsFromRandomValues >= 195, JSON.stringify(client.stats()));
});

test('all-zero random bytes never give an all-zero id', async () => {
  const wx = createWx({ randomValues: (length) => new Uint8Array(length) });
  const { client, cloud } = setup({}, { wx });
  await settle();
  await request(client);
  const m = TRACEPARENT.exec(sentTraceparent(cloud));
  assert.ok(m);
  assert.doesNotMatch(m[1], /^0+$/);
  assert.doesNotMatch(m[2], /^0+$/);
});

test('a caller\'s own traceparent (any case of the name) is respected and reported', async () => {
  const { client, cloud } = setup();
  const own = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  await request(client, { header: { 'X-WX-SERVICE': 'orders', TraceParent: own } });
  const sent = cloud.realCalls()[0].options.header;
  assert.deepEqual(Object.keys(sent), ['X-WX-SERVICE', 'TraceParent']);
  assert.equal(sent.TraceParent, own);
  await client.flush();
  const [call] = reportedCalls(cloud);
  assert.equal(call.trace_id, '4bf92f3577b34da6a3ce929d0e0e4736');
  assert.equal(call.span_id, '00f067aa0ba902b7');
});

test('an invalid caller traceparent is still left alone; the report gets fresh ids', async () => {
  const { client, cloud } = setup({}, { handler: () => ({ res: { statusCode: 200, header: {} } }) });
  await request(client, { header: { 'X-WX-SERVICE': 'orders', traceparent: 'garbage' } });
  assert.equal(cloud.realCalls()[0].options.header.traceparent, 'garbage');
  await client.flush();
  const [call] = reportedCalls(cloud);
  assert.match(call.trace_id, /^[0-9a-f]{32}$/);
  assert.match(call.span_id, /^[0-9a-f]{16}$/);
});

test('parseTraceparent follows W3C rules', () => {
  const p = _internal.parseTraceparent;
  assert.deepEqual(p('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'), {
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    spanId: '00f067aa0ba902b7',
  });
  assert.ok(p(' 00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-00 '));
  assert.ok(p('01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future'));
  assert.equal(p('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra'), null);
  assert.equal(p('ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'), null);
  assert.equal(p('00-00000000000000000000000000000000-00f067aa0ba902b7-01'), null);
  assert.equal(p('00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01'), null);
  assert.equal(p(42), null);
});

test('classification: ok, http_error for >= 500, fail with errCode', async () => {
  const answers = [
    { res: { statusCode: 200, header: {} } },
    { res: { statusCode: 404, header: {} } },
    { res: { statusCode: 499, header: {} } },
    { res: { statusCode: 500, header: {} } },
    { res: { statusCode: 502, header: {} } },
    { err: { errCode: -606001, errMsg: 'request body over 100KB' } },
    { err: { errCode: -501000, errMsg: 'path error' } },
    { err: { errCode: 102002, errMsg: 'timeout' } },
    { err: { errCode: -1, errMsg: 'network' } },
    { err: { errMsg: 'cloud.callContainer:fail Error: errCode: -606002 | errMsg: too large' } },
    { err: { errCode: '102005', errMsg: 'method' } },
    { err: new Error('no code at all') },
    { err: { errCode: '9'.repeat(400), errMsg: 'absurd' } },
  ];
  let i = 0;
  const { client, cloud } = setup({ maxQueue: 100 }, { handler: () => answers[i++] || { res: { statusCode: 200, header: {} } } });
  for (let n = 0; n < answers.length; n++) await request(client).catch(() => {});
  await request(client, {}).catch(() => {}); // one more ok to warm up after the failures
  await client.flush();
  const calls = reportedCalls(cloud);
  const summary = calls.slice(0, answers.length).map((c) => [c.outcome, c.status, c.err_code]);
  assert.deepEqual(summary, [
    ['ok', 200, null],
    ['ok', 404, null],
    ['ok', 499, null],
    ['http_error', 500, null],
    ['http_error', 502, null],
    ['fail', null, -606001],
    ['fail', null, -501000],
    ['fail', null, 102002],
    ['fail', null, -1],
    ['fail', null, -606002],
    ['fail', null, 102005],
    ['fail', null, null],
    ['fail', null, null],
  ]);
  for (const b of cloud.beacons) assert.equal(b.raw, JSON.stringify(b.body), 'valid JSON, as JSON.stringify writes it');
});

test('server timing and trace id from response headers in any case', async () => {
  const traceId = 'ABCDEF0123456789ABCDEF0123456789';
  const { client, cloud } = setup({}, {
    handler: () => ({
      res: { statusCode: 200, header: { 'SERVER-TIMING': 'cache;desc="hit", app;dur=12.3, app;dur=99', 'x-TRACE-id': traceId } },
    }),
  });
  await request(client);
  await client.flush();
  const [call] = reportedCalls(cloud);
  assert.equal(call.server_ms, 12.3);
  assert.equal(call.trace_id, traceId.toLowerCase(), 'the server\'s trace id wins');
  assert.match(call.span_id, /^[0-9a-f]{16}$/);
});

test('Server-Timing parsing', () => {
  const p = _internal.parseServerTiming;
  assert.equal(p('app;dur=12.3'), 12.3);
  assert.equal(p('app;desc="x";dur=7'), 7);
  assert.equal(p('db;dur=5, app;dur=1.5'), 1.5);
  assert.equal(p('App ; DUR = "3.25"'), 3.25);
  assert.equal(p(['total;dur=9', 'app;dur=4']), 4);
  assert.equal(p('app'), null);
  assert.equal(p('app;dur=abc'), null);
  assert.equal(p('app;dur=-1'), null);
  assert.equal(p('application;dur=3'), null);
  assert.equal(p('app;dur=1e308'), null, 'finite after rounding or null');
  assert.equal(p(undefined), null);
  assert.equal(p(''), null);
});

test('unknown status, server timing and error code are null', async () => {
  const { client, cloud } = setup({}, { handler: () => ({ res: { header: { 'x-trace-id': 'not-hex' } } }) });
  await request(client);
  await client.flush();
  const [call] = reportedCalls(cloud);
  assert.equal(call.status, null);
  assert.equal(call.server_ms, null);
  assert.equal(call.err_code, null);
  assert.equal(call.outcome, 'ok');
  assert.equal(call.trace_id, TRACEPARENT.exec(sentTraceparent(cloud))[1]);
});

test('timing: duration from the clock, ts is the start time, method normalised', async () => {
  const { client, cloud, clock } = setup();
  const start = clock.now();
  const p = request(client, { method: 'post' });
  clock.advance(123.46);
  await p;
  await request(client, { method: 'BREW' });
  await request(client, { method: undefined });
  await client.flush();
  const calls = reportedCalls(cloud);
  assert.equal(calls[0].duration_ms, 123.5);
  assert.equal(calls[0].ts, start);
  assert.deepEqual(calls.map((c) => c.method), ['POST', '_OTHER', 'GET']);
});
