'use strict';

// Fakes of the WeChat runtime for the tests and the benchmark: `wx` (storage, getRandomValues,
// onAppHide), timers, a clock and `wx.cloud` with a callContainer that behaves like the real one
// (promise style when no success/fail/complete is given, callbacks otherwise; it needs its own
// receiver, as methods of `new wx.cloud.Cloud({...})` do). Not a test file itself.

const crypto = require('node:crypto');

const BEACON_PATH = '/_wxtelemetry/v1/client';
const OPENID = 'oAbCdEfGhIjKlMnOpQrStUvWxYz0';

function createStorage() {
  const data = new Map();
  return {
    data,
    writes: 0,
    getStorageSync(key) {
      return data.has(key) ? data.get(key) : '';
    },
    setStorageSync(key, value) {
      this.writes++;
      data.set(key, value);
    },
    removeStorageSync(key) {
      data.delete(key);
    },
  };
}

function toArrayBuffer(bytes) {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
}

/**
 * options: storage (a createStorage() or null for none), randomValues (false: no
 * wx.getRandomValues; a function (length) => Uint8Array for chosen bytes), onAppHide (false: none).
 */
function createWx(options = {}) {
  const wx = { randomRequests: 0 };
  const storage = options.storage === null ? null : options.storage || createStorage();
  if (storage) {
    wx.getStorageSync = (key) => storage.getStorageSync(key);
    wx.setStorageSync = (key, value) => storage.setStorageSync(key, value);
    wx.removeStorageSync = (key) => storage.removeStorageSync(key);
  }
  wx.storage = storage;
  if (options.randomValues !== false) {
    // Asynchronous, callback based, like the real API (base library 2.15.0+).
    wx.getRandomValues = ({ length, success }) => {
      wx.randomRequests++;
      const bytes =
        typeof options.randomValues === 'function'
          ? options.randomValues(length)
          : crypto.randomBytes(length);
      queueMicrotask(() => success({ randomValues: toArrayBuffer(bytes) }));
    };
  }
  const hideListeners = [];
  if (options.onAppHide !== false) {
    wx.onAppHide = (fn) => hideListeners.push(fn);
    wx.offAppHide = (fn) => {
      const i = hideListeners.indexOf(fn);
      if (i >= 0) hideListeners.splice(i, 1);
    };
  }
  wx.hideListeners = hideListeners;
  wx.hide = () => hideListeners.slice().forEach((fn) => fn());
  return wx;
}

function createTimers() {
  let nextId = 1;
  const intervals = new Map();
  const timeouts = new Map();
  return {
    intervals,
    timeouts,
    setInterval(fn, ms) {
      const id = nextId++;
      intervals.set(id, { fn, ms });
      return id;
    },
    clearInterval(id) {
      intervals.delete(id);
    },
    setTimeout(fn, ms) {
      const id = nextId++;
      timeouts.set(id, { fn, ms });
      return id;
    },
    clearTimeout(id) {
      timeouts.delete(id);
    },
    /** Runs every interval callback once (one "tick" of the flush timer). */
    tick() {
      for (const { fn } of [...intervals.values()]) fn();
    },
    /** Runs every pending timeout callback. */
    fireTimeouts() {
      const all = [...timeouts.entries()];
      timeouts.clear();
      for (const [, { fn }] of all) fn();
    },
  };
}

function createClock(start = 1733000000000) {
  let t = start;
  return {
    now: () => t,
    advance(ms) {
      t += ms;
    },
  };
}

function header(h, name) {
  if (!h) return undefined;
  const key = Object.keys(h).find((k) => k.toLowerCase() === name.toLowerCase());
  return key === undefined ? undefined : h[key];
}

/** The default service: 200, echoes the trace id of the traceparent, Server-Timing, an openid. */
function okHandler(options) {
  const tp = header(options.header, 'traceparent');
  const traceId = typeof tp === 'string' ? tp.split('-')[1] : undefined;
  const h = { 'Server-Timing': 'app;dur=12.3', 'Content-Type': 'application/json' };
  if (traceId) h['X-Trace-Id'] = traceId;
  return { res: { statusCode: 200, header: h, data: { openid: OPENID, ok: true }, callID: 'cid_1', errMsg: 'cloud.callContainer:ok' } };
}

/**
 * A wx.cloud / wx.cloud.Cloud instance. `handler(options)` returns { res } or { err } for real
 * calls, `beaconHandler(options)` for beacons (default 204); either may also return
 * { throws: error } or { never: true }. Answers arrive asynchronously
 * (setImmediate). Records every call with its receiver; beacons also with the parsed body.
 */
class FakeCloud {
  constructor(handler) {
    this.handler = handler || okHandler;
    this.beaconHandler = () => ({ res: { statusCode: 204, header: {}, data: '' } });
    this.calls = [];
    this.beacons = [];
    this.inflightBeacons = 0;
    this.maxInflightBeacons = 0;
    this.returned = { requestTask: true };
    this.sync = false; // answer synchronously (benchmark)
  }

  realCalls() {
    return this.calls.filter((c) => c.options.path !== BEACON_PATH);
  }

  callContainer(options) {
    // `this` must be the instance: a lost receiver throws here, as on the real SDK.
    this.calls.push({ options, receiver: this });
    const isBeacon = options.path === BEACON_PATH;
    if (isBeacon) {
      this.beacons.push({ options, body: JSON.parse(options.data), raw: options.data });
      this.inflightBeacons++;
      this.maxInflightBeacons = Math.max(this.maxInflightBeacons, this.inflightBeacons);
    }
    const outcome = isBeacon ? this.beaconHandler(options) : this.handler(options);
    // { throws: e }: throw synchronously; { never: true }: never answer.
    if (outcome.throws) {
      if (isBeacon) this.inflightBeacons--;
      throw outcome.throws;
    }
    if (outcome.never) return this.returned;
    const promiseStyle =
      typeof options.success !== 'function' &&
      typeof options.fail !== 'function' &&
      typeof options.complete !== 'function';
    const later = this.sync ? (fn) => fn() : (fn) => setImmediate(fn);
    const done = () => {
      if (isBeacon) this.inflightBeacons--;
    };
    if (promiseStyle) {
      if (this.sync) {
        done();
        return outcome.err ? Promise.reject(outcome.err) : Promise.resolve(outcome.res);
      }
      return new Promise((resolve, reject) =>
        later(() => {
          done();
          if (outcome.err) reject(outcome.err);
          else resolve(outcome.res);
        }),
      );
    }
    later(() => {
      done();
      if (outcome.err) {
        if (typeof options.fail === 'function') options.fail(outcome.err);
        if (typeof options.complete === 'function') options.complete(outcome.err);
      } else {
        if (typeof options.success === 'function') options.success(outcome.res);
        if (typeof options.complete === 'function') options.complete(outcome.res);
      }
    });
    return this.returned;
  }

  callFunction(options) {
    return { receiver: this, options };
  }
}

/** Lets pending setImmediate/microtask work run (answers, beacons, flush chains). */
async function settle(rounds = 10) {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
}

/**
 * A fresh fake world and an instrumented cloud: `options` go to instrument() (service 'orders',
 * env 'prod-01' unless overridden), `world` may bring its own wx / wxOptions / timers / clock /
 * cloud / handler.
 */
function setup(options = {}, world = {}) {
  const { instrument } = require('../../index.js');
  const wx = world.wx || createWx(world.wxOptions);
  const timers = world.timers || createTimers();
  const clock = world.clock || createClock();
  const cloud = world.cloud || new FakeCloud(world.handler);
  const client = instrument(cloud, {
    service: 'orders',
    env: 'prod-01',
    wx,
    timers,
    now: clock.now,
    ...options,
  });
  return { wx, timers, clock, cloud, client };
}

/** A real call in promise style (the usual request; `extra` overrides fields). */
function request(client, extra = {}) {
  return client.callContainer({
    path: '/api/users/7',
    method: 'GET',
    header: { 'X-WX-SERVICE': 'orders' },
    config: { env: 'prod-01' },
    ...extra,
  });
}

/** Every call of every beacon sent so far. */
function reportedCalls(cloud) {
  return cloud.beacons.flatMap((b) => b.body.calls);
}

module.exports = {
  BEACON_PATH,
  request,
  reportedCalls,
  setup,
  OPENID,
  FakeCloud,
  createClock,
  createStorage,
  createTimers,
  createWx,
  header,
  okHandler,
  settle,
};
