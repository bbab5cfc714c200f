'use strict';

// The Mini Program package driven against a real service, for tests/tests/miniprogram_e2e.rs.
//
//   node tests/node/gateway-client.js http://127.0.0.1:PORT
//
// `wx.cloud.callContainer` is played by a fake gateway that makes real HTTP requests: it adds the
// X-WX-* headers the WeChat gateway adds (the caller's own X-WX-* values are replaced, as the
// gateway does), answers -606001 for a body over 100 KB without calling the service, and 102002
// when the service does not answer within the call's `timeout`. The package instruments that fake
// exactly as it instruments `wx.cloud`; its beacons go through the same fake to the service.
//
// Prints one JSON object on stdout: every request the gateway forwarded (path, traceparent), each
// call's outcome as the caller saw it, the flush result and the package's stats.

const http = require('node:http');
const path = require('node:path');

const { instrument } = require(path.join(__dirname, '../../miniprogram/index.js'));
const { createWx } = require(path.join(__dirname, '../../miniprogram/test/support/fake-wx.js'));

const SERVICE = 'quickstart';
const APPID = 'wxe2e0000000000001';
const OPENID = 'oE2E-openid-must-never-leave-the-phone';
const BODY_LIMIT = 100 * 1024;
const DEFAULT_TIMEOUT_MS = 15000;

const base = new URL(process.argv[2] || 'http://127.0.0.1:8080');
const forwarded = [];
let nextCall = 1;

function gatewayHeaders(header, options) {
  const out = {};
  for (const [name, value] of Object.entries(header || {})) {
    if (!name.toLowerCase().startsWith('x-wx-')) out[name] = String(value);
  }
  const callId = `e2e_${process.pid}_${nextCall++}`;
  Object.assign(out, {
    'X-WX-SOURCE': 'wx_client',
    'X-WX-OPENID': OPENID,
    'X-WX-APPID': APPID,
    'X-WX-ENV': (options.config && options.config.env) || 'prod-e2e',
    'X-WX-SERVICE': SERVICE,
    'X-WX-CALL-ID': callId,
  });
  return { headers: out, callId };
}

function fail(errCode, message) {
  return { errCode, errMsg: `cloud.callContainer:fail ${errCode} ${message}` };
}

/** One call through the fake gateway: resolves { res } or { err }, never rejects. */
function forward(options) {
  const body =
    options.data === undefined
      ? undefined
      : typeof options.data === 'string'
        ? options.data
        : JSON.stringify(options.data);
  if (body !== undefined && Buffer.byteLength(body) > BODY_LIMIT) {
    return Promise.resolve({ err: fail(-606001, 'request body too large') });
  }
  const { headers, callId } = gatewayHeaders(options.header, options);
  if (body !== undefined && !Object.keys(headers).some((k) => k.toLowerCase() === 'content-type')) {
    headers['Content-Type'] = 'application/json';
  }
  const traceparent = Object.entries(headers).find(([k]) => k.toLowerCase() === 'traceparent');
  forwarded.push({ path: options.path, traceparent: traceparent ? traceparent[1] : null });
  const timeout = options.timeout || DEFAULT_TIMEOUT_MS;
  return new Promise((resolve) => {
    const request = http.request(
      new URL(options.path, base),
      { method: options.method || 'GET', headers },
      (response) => {
        const chunks = [];
        response.on('data', (c) => chunks.push(c));
        response.on('end', () => {
          clearTimeout(timer);
          const text = Buffer.concat(chunks).toString('utf8');
          let data = text;
          if (/json/.test(response.headers['content-type'] || '') && text) {
            try {
              data = JSON.parse(text);
            } catch (_) {
              // The gateway hands the text through when it is not JSON.
            }
          }
          resolve({
            res: {
              statusCode: response.statusCode,
              header: response.headers,
              data,
              callID: callId,
              errMsg: 'cloud.callContainer:ok',
            },
          });
        });
      },
    );
    const timer = setTimeout(() => {
      request.destroy();
      resolve({ err: fail(102002, 'request timeout') });
    }, timeout);
    request.on('error', () => {
      clearTimeout(timer);
      resolve({ err: fail(-501000, 'gateway error') });
    });
    if (body !== undefined) request.write(body);
    request.end();
  });
}

/** `wx.cloud` as the package sees it: promise style, or callbacks when any is given. */
const cloud = {
  callContainer(options) {
    const answer = forward(options);
    const callbacks = ['success', 'fail', 'complete'].some((k) => typeof options[k] === 'function');
    if (!callbacks) {
      return answer.then(({ res, err }) => (err ? Promise.reject(err) : res));
    }
    answer.then(({ res, err }) => {
      if (err && options.fail) options.fail(err);
      if (!err && options.success) options.success(res);
      if (options.complete) options.complete(err || res);
    });
    return {};
  },
};

async function main() {
  const client = instrument(cloud, {
    service: SERVICE,
    env: 'prod-e2e',
    wx: createWx(),
    flushIntervalMs: 0,
  });
  const header = { 'X-WX-SERVICE': SERVICE };
  const outcomes = [];
  const call = async (name, options) => {
    try {
      const res = await client.callContainer({ header, ...options });
      outcomes.push({ name, statusCode: res.statusCode });
    } catch (err) {
      outcomes.push({ name, errCode: err.errCode });
    }
  };
  for (const id of [7, 8, 9]) await call(`user ${id}`, { path: `/api/users/${id}`, method: 'GET' });
  await new Promise((resolve) =>
    client.callContainer({
      path: '/api/users/10',
      method: 'GET',
      header,
      success: (res) => outcomes.push({ name: 'user 10 (callbacks)', statusCode: res.statusCode }),
      fail: (err) => outcomes.push({ name: 'user 10 (callbacks)', errCode: err.errCode }),
      complete: resolve,
    }),
  );
  await call('oversized order', {
    path: '/api/orders',
    method: 'POST',
    data: { item: 'x'.repeat(BODY_LIMIT + 1), quantity: 1 },
  });
  await call('cold start timeout', { path: '/api/slow?ms=2000', method: 'GET', timeout: 200 });
  await call('order', { path: '/api/orders', method: 'POST', data: { item: 'tea', quantity: 2 } });
  const flush = await client.flush();
  process.stdout.write(
    JSON.stringify({ forwarded, outcomes, flush, stats: client.stats() }) + '\n',
  );
  client.stop();
}

main().catch((err) => {
  process.stderr.write(`gateway-client failed: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
