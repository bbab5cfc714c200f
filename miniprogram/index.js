'use strict';

// wxcloudrun-telemetry-miniprogram: client-side telemetry for wx.cloud.callContainer.
//
// Plain CommonJS, ES2017 syntax, no dependencies, so that WeChat's "构建 npm" takes it as is.
// Deliberately avoided (they are later than ES2017 or poorly transpiled by old base libraries):
// optional chaining, nullish coalescing, object spread, class fields, async/await,
// Promise.prototype.finally, regular-expression look-behind and named groups.
//
// The report protocol (the `data` of the beacon call) is the contract with the server side
// (the layer's beacon route); see README.md. Keep it exactly.

var VERSION = '0.1.0';
var SDK = 'wxcloudrun-telemetry-miniprogram/' + VERSION;

var DEFAULTS = {
  service: undefined,
  env: undefined,
  beaconPath: '/_wxtelemetry/v1/client',
  sampleRate: 1,
  maxQueue: 64,
  flushIntervalMs: 10000,
  flushAfterSuccessMs: 60000,
  storageKey: 'wxcloudrun-telemetry-miniprogram:v1',
  enabled: true
};

// Protocol limits (the server rejects more).
var MAX_CALLS_PER_REPORT = 64;
var MAX_REPORT_BYTES = 16384; // the body must stay *under* 16 KiB
// Storage bounds: never more than `maxQueue` calls, never more than this many characters.
var MAX_STORED_CHARS = 32768;
// A beacon that neither succeeds nor fails within this time counts as failed (callContainer's
// own limit is 15 s), so one lost callback can never block the queue for good.
var BEACON_GUARD_MS = 20000;
// Random bytes: 16 (trace id) + 8 (span id) per call, fetched ahead in one asynchronous
// wx.getRandomValues request; refilled when less than POOL_LOW bytes are left.
var ID_BYTES = 24;
var POOL_BYTES = ID_BYTES * 128;
var POOL_LOW = ID_BYTES * 64;
var POOL_RETRY_MS = 30000;
var POOL_MAX_FAILURES = 3;

var KNOWN_METHODS = {
  GET: true, POST: true, PUT: true, DELETE: true, HEAD: true, OPTIONS: true, PATCH: true,
  TRACE: true, CONNECT: true
};
var OUTCOMES = { ok: true, http_error: true, fail: true };
var TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
var ERRCODE_IN_MSG = /errCode:\s*(-?\d+)/;
var INTEGER = /^\s*-?\d+\s*$/;
var MARK = '__wxcloudrunTelemetry';

var HEX = [];
(function () {
  for (var i = 0; i < 256; i++) HEX.push((i + 256).toString(16).slice(1));
})();

var hasOwn = Object.prototype.hasOwnProperty;

function isObject(v) {
  return v !== null && (typeof v === 'object' || typeof v === 'function');
}

function copyOwn(source) {
  var out = {};
  for (var k in source) {
    if (hasOwn.call(source, k)) out[k] = source[k];
  }
  return out;
}

// Rounded to 1 or 3 decimals; NaN when that is not finite.
function round(n, digits) {
  var f = digits === 1 ? 10 : 1000;
  var r = Math.round(n * f) / f;
  return isFinite(r) ? r : NaN;
}

function finiteNumberOr(v, fallback) {
  return typeof v === 'number' && isFinite(v) ? v : fallback;
}

function integerOr(v, fallback) {
  return typeof v === 'number' && isFinite(v) && Math.floor(v) === v ? v : fallback;
}

function resolved(value) {
  return Promise.resolve(value);
}

// ---------------------------------------------------------------------------------------------
// Options

function normalizeOptions(options) {
  var o = isObject(options) ? options : {};
  var out = {};
  out.service = typeof o.service === 'string' && o.service ? o.service : DEFAULTS.service;
  out.env = typeof o.env === 'string' && o.env ? o.env : DEFAULTS.env;
  out.beaconPath = typeof o.beaconPath === 'string' && o.beaconPath.charAt(0) === '/'
    ? o.beaconPath : DEFAULTS.beaconPath;
  var rate = finiteNumberOr(o.sampleRate, DEFAULTS.sampleRate);
  out.sampleRate = rate < 0 ? 0 : rate > 1 ? 1 : rate;
  var maxQueue = finiteNumberOr(o.maxQueue, DEFAULTS.maxQueue);
  out.maxQueue = maxQueue >= 1 ? Math.floor(maxQueue) : DEFAULTS.maxQueue;
  var interval = finiteNumberOr(o.flushIntervalMs, DEFAULTS.flushIntervalMs);
  out.flushIntervalMs = interval >= 0 ? interval : DEFAULTS.flushIntervalMs;
  var warmFor = finiteNumberOr(o.flushAfterSuccessMs, DEFAULTS.flushAfterSuccessMs);
  out.flushAfterSuccessMs = warmFor >= 0 ? warmFor : DEFAULTS.flushAfterSuccessMs;
  if (o.storageKey === null || o.storageKey === false) out.storageKey = null;
  else out.storageKey = typeof o.storageKey === 'string' && o.storageKey
    ? o.storageKey : DEFAULTS.storageKey;
  out.enabled = o.enabled === undefined ? DEFAULTS.enabled : o.enabled !== false;
  // Advanced (tests, other runtimes): the `wx` object, timer functions and the clock.
  out.wx = isObject(o.wx) ? o.wx : (typeof wx !== 'undefined' && isObject(wx) ? wx : null);
  out.timers = isObject(o.timers) ? o.timers : globalTimers();
  out.now = typeof o.now === 'function' ? o.now : Date.now;
  return out;
}

function globalTimers() {
  return {
    setInterval: typeof setInterval === 'function'
      ? function (fn, ms) { return setInterval(fn, ms); } : null,
    clearInterval: typeof clearInterval === 'function'
      ? function (id) { clearInterval(id); } : null,
    setTimeout: typeof setTimeout === 'function'
      ? function (fn, ms) { return setTimeout(fn, ms); } : null,
    clearTimeout: typeof clearTimeout === 'function'
      ? function (id) { clearTimeout(id); } : null
  };
}

// ---------------------------------------------------------------------------------------------
// Ids

function hexOf(bytes, start, length) {
  var s = '';
  for (var i = start; i < start + length; i++) s += HEX[bytes[i]];
  return s;
}

function zeroBytes(bytes, start, length) {
  var any = 0;
  for (var i = start; i < start + length; i++) any |= bytes[i];
  return any === 0;
}

// Hex from Math.random, never all zeros.
function mathHex(chars) {
  var s = '';
  var any = 0;
  while (s.length < chars) {
    var r = (Math.random() * 4294967296) >>> 0;
    any |= r;
    s += HEX[r >>> 24] + HEX[(r >>> 16) & 255] + HEX[(r >>> 8) & 255] + HEX[r & 255];
  }
  if (s.length !== chars) s = s.slice(0, chars);
  return any === 0 ? s.slice(0, chars - 1) + '1' : s;
}

// Lower-case hex of exactly `length` characters, not all zeros (no regular expression: the
// strings are often concatenations, which a regular expression would first have to flatten).
function isHexId(s, length) {
  if (typeof s !== 'string' || s.length !== length) return false;
  var nonZeroSeen = false;
  for (var i = 0; i < length; i++) {
    var c = s.charCodeAt(i);
    if (c > 48 && c <= 57) nonZeroSeen = true;
    else if (c >= 97 && c <= 102) nonZeroSeen = true;
    else if (c !== 48) return false;
  }
  return nonZeroSeen;
}

function bytesOf(value) {
  if (typeof ArrayBuffer === 'undefined' || !value) return null;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  return null;
}

// Trace and span ids. wx.getRandomValues (base library 2.15.0+) is asynchronous, so a pool of
// bytes is fetched ahead; while the pool is empty (before the first answer, without the API, or
// after it failed) ids come from Math.random, which is not cryptographically strong but is good
// enough for trace ids.
function IdSource(wxObj, now, onError) {
  this.wx = wxObj;
  this.now = now;
  this.onError = onError;
  this.pool = null;
  this.pos = 0;
  this.pendingSince = -1;
  this.failures = 0;
  this.fromPool = 0;
  this.fromMath = 0;
  this.refill();
}

IdSource.prototype.refill = function () {
  var self = this;
  var w = this.wx;
  if (!w || typeof w.getRandomValues !== 'function' || this.failures >= POOL_MAX_FAILURES) return;
  var t = this.now();
  if (this.pendingSince >= 0 && t - this.pendingSince < POOL_RETRY_MS) return;
  this.pendingSince = t;
  var answered = false;
  try {
    w.getRandomValues({
      length: POOL_BYTES,
      success: function (res) {
        if (answered) return;
        answered = true;
        self.pendingSince = -1;
        var bytes = bytesOf(res && res.randomValues);
        if (bytes && bytes.length >= ID_BYTES) {
          self.pool = bytes;
          self.pos = 0;
        } else {
          self.failures++;
        }
      },
      fail: function () {
        if (answered) return;
        answered = true;
        self.pendingSince = -1;
        self.failures++;
      }
    });
  } catch (e) {
    this.pendingSince = -1;
    this.failures++;
    this.onError(e);
  }
};

IdSource.prototype.next = function () {
  var trace, span;
  var pool = this.pool;
  if (pool && pool.length - this.pos >= ID_BYTES) {
    var at = this.pos;
    trace = zeroBytes(pool, at, 16) ? mathHex(32) : hexOf(pool, at, 16);
    span = zeroBytes(pool, at + 16, 8) ? mathHex(16) : hexOf(pool, at + 16, 8);
    this.pos += ID_BYTES;
    this.fromPool++;
    if (pool.length - this.pos < POOL_LOW) this.refill();
  } else {
    this.pool = null;
    trace = mathHex(32);
    span = mathHex(16);
    this.fromMath++;
    this.refill();
  }
  return { traceId: trace, spanId: span };
};

function parseTraceparent(value) {
  if (typeof value !== 'string') return null;
  var m = TRACEPARENT.exec(value.trim().toLowerCase());
  if (!m || m[1] === 'ff' || (m[1] === '00' && m[5] !== undefined)) return null;
  if (!isHexId(m[2], 32) || !isHexId(m[3], 16)) return null;
  return { traceId: m[2], spanId: m[3] };
}

// ---------------------------------------------------------------------------------------------
// Response parsing

// `Server-Timing: cache;desc=hit, app;dur=12.3`: the `dur` of the first metric named `app`.
function parseServerTiming(value) {
  if (Array.isArray(value)) value = value.join(',');
  if (typeof value !== 'string') return null;
  // Fast path: exactly what the layer sends.
  if (value.lastIndexOf('app;dur=', 0) === 0 && value.indexOf(',') < 0 && value.indexOf(';', 8) < 0) {
    var fast = Number(value.slice(8));
    if (value.length > 8 && isFinite(fast) && fast >= 0) return finiteNumberOr(round(fast, 3), null);
  }
  var metrics = value.split(',');
  for (var i = 0; i < metrics.length; i++) {
    var params = metrics[i].split(';');
    if (params[0].trim().toLowerCase() !== 'app') continue;
    for (var j = 1; j < params.length; j++) {
      var p = params[j];
      var eq = p.indexOf('=');
      if (eq < 0 || p.slice(0, eq).trim().toLowerCase() !== 'dur') continue;
      var raw = p.slice(eq + 1).trim();
      if (raw.length >= 2 && raw.charAt(0) === '"' && raw.charAt(raw.length - 1) === '"') {
        raw = raw.slice(1, -1).trim();
      }
      var n = raw === '' ? NaN : Number(raw);
      return isFinite(n) && n >= 0 ? finiteNumberOr(round(n, 3), null) : null;
    }
    return null;
  }
  return null;
}

function parseTraceIdHeader(value) {
  if (Array.isArray(value)) value = value[0];
  if (typeof value !== 'string') return null;
  if (isHexId(value, 32)) return value;
  var v = value.trim().toLowerCase();
  return isHexId(v, 32) ? v : null;
}

function errCodeOf(err) {
  if (!isObject(err)) return null;
  var c = err.errCode;
  if (typeof c === 'number') return integerOr(c, null);
  if (typeof c === 'string' && INTEGER.test(c)) return integerOr(parseInt(c, 10), null);
  var m = typeof err.errMsg === 'string' ? ERRCODE_IN_MSG.exec(err.errMsg) : null;
  return m ? integerOr(parseInt(m[1], 10), null) : null;
}

// ---------------------------------------------------------------------------------------------
// Stored reports

function validCall(c) {
  if (!isObject(c)) return null;
  if (!isHexId(c.trace_id, 32) || !isHexId(c.span_id, 16)) return null;
  if (typeof c.method !== 'string' || !(KNOWN_METHODS[c.method] === true || c.method === '_OTHER')) return null;
  if (typeof c.outcome !== 'string' || OUTCOMES[c.outcome] !== true) return null;
  var duration = finiteNumberOr(c.duration_ms, -1);
  var ts = finiteNumberOr(c.ts, -1);
  if (duration < 0 || ts < 0) return null;
  var status = c.status === null ? null : integerOr(c.status, undefined);
  var errCode = c.err_code === null ? null : integerOr(c.err_code, undefined);
  var serverMs = c.server_ms === null ? null : finiteNumberOr(c.server_ms, undefined);
  if (status === undefined || errCode === undefined || serverMs === undefined) return null;
  return makeCall(c.trace_id, c.span_id, c.method, duration, c.outcome, status, errCode, serverMs, ts);
}

// One call of the report, with its fields in protocol order; every number finite.
function makeCall(traceId, spanId, method, durationMs, outcome, status, errCode, serverMs, ts) {
  return {
    trace_id: traceId,
    span_id: spanId,
    method: method,
    duration_ms: finiteNumberOr(durationMs, 0),
    outcome: outcome,
    status: finiteNumberOr(status, null),
    err_code: finiteNumberOr(errCode, null),
    server_ms: finiteNumberOr(serverMs, null),
    ts: finiteNumberOr(ts, 0)
  };
}

function jsonNumber(n) {
  return n === null ? 'null' : String(n);
}

// JSON.stringify(call), byte for byte, without its generic machinery: every string field is
// lower-case hex or one of a fixed set of words, every number finite (checked where made).
function callJson(c) {
  return '{"trace_id":"' + c.trace_id + '","span_id":"' + c.span_id + '","method":"' + c.method +
    '","duration_ms":' + jsonNumber(c.duration_ms) + ',"outcome":"' + c.outcome +
    '","status":' + jsonNumber(c.status) + ',"err_code":' + jsonNumber(c.err_code) +
    ',"server_ms":' + jsonNumber(c.server_ms) + ',"ts":' + jsonNumber(c.ts) + '}';
}

function targetKey(service, env) {
  return service + '\n' + (env || '');
}

function makeItem(service, env, call) {
  return { k: targetKey(service, env), s: service, e: env || '', c: call, j: null };
}

// ---------------------------------------------------------------------------------------------
// The telemetry state of one instrumented object

function Telemetry(cloud, original, options) {
  var self = this;
  this.cloud = cloud;
  this.original = original;
  this.o = options;
  this.queue = [];
  this.inflight = null;
  this.dropped = 0; // to report in the next beacon
  this.warm = {}; // target key -> { ok: boolean, at: ms }
  this.disabledTargets = {};
  this.restoredPending = false;
  this.flushScheduled = false;
  this.dirty = false;
  this.running = null;
  this.rerun = null;
  this.timer = null;
  this.hideListener = null;
  this.stopped = false;
  this.counters = {
    calls: 0, recorded: 0, sampledOut: 0, dropped: 0, beacons: 0, beaconFailures: 0,
    reportedCalls: 0, internalErrors: 0
  };
  this.onError = function () { self.counters.internalErrors++; };
  this.ids = new IdSource(options.wx, function () { return self.safeNow(); }, this.onError);
  this.restore();
  this.startTriggers();
}

Telemetry.prototype.safeNow = function () {
  try {
    var t = this.o.now();
    return typeof t === 'number' && isFinite(t) ? t : Date.now();
  } catch (e) {
    this.onError(e);
    return Date.now();
  }
};

Telemetry.prototype.startTriggers = function () {
  var self = this;
  var timers = this.o.timers;
  try {
    if (this.o.flushIntervalMs > 0 && timers && typeof timers.setInterval === 'function') {
      this.timer = timers.setInterval(function () { self.tick(); }, this.o.flushIntervalMs);
      if (this.timer && typeof this.timer.unref === 'function') this.timer.unref();
    }
  } catch (e) {
    this.onError(e);
  }
  var w = this.o.wx;
  try {
    if (w && typeof w.onAppHide === 'function') {
      this.hideListener = function () { self.onHide(); };
      w.onAppHide(this.hideListener);
    }
  } catch (e) {
    this.hideListener = null;
    this.onError(e);
  }
};

Telemetry.prototype.tick = function () {
  try {
    if (this.queue.length > 0) this.flush();
    else this.persist();
  } catch (e) {
    this.onError(e);
  }
};

Telemetry.prototype.onHide = function () {
  try {
    this.persist();
    if (this.queue.length > 0) this.flush();
  } catch (e) {
    this.onError(e);
  }
};

Telemetry.prototype.stop = function () {
  if (this.stopped) return;
  this.stopped = true;
  var timers = this.o.timers;
  try {
    if (this.timer !== null && timers && typeof timers.clearInterval === 'function') {
      timers.clearInterval(this.timer);
    }
  } catch (e) {
    this.onError(e);
  }
  this.timer = null;
  var w = this.o.wx;
  try {
    if (this.hideListener && w && typeof w.offAppHide === 'function') w.offAppHide(this.hideListener);
  } catch (e) {
    this.onError(e);
  }
  this.hideListener = null;
  this.dirty = true;
  this.persist();
};

// --- the per-call path ---------------------------------------------------------------------

// Prepares one call; returns null to leave the call untouched (passed through as is).
Telemetry.prototype.begin = function (callOpts) {
  if (!isObject(callOpts) || this.stopped) return null;
  var o = this.o;
  var header = callOpts.header;
  var service = null;
  var callerTraceparent;
  var hasCallerTraceparent = false;
  if (isObject(header)) {
    var keys = Object.keys(header);
    for (var i = 0; i < keys.length; i++) {
      var n = keys[i].length; // lower-case only the candidates
      if (n === 12 && keys[i].toLowerCase() === 'x-wx-service') service = header[keys[i]];
      else if (n === 11 && keys[i].toLowerCase() === 'traceparent') {
        hasCallerTraceparent = true;
        callerTraceparent = header[keys[i]];
      }
    }
  }
  if (typeof service !== 'string' || !service) service = o.service || null;
  // Without a service there is no beacon route to report to; with `service` set, calls to other
  // services are not instrumented at all.
  if (!service || (o.service && service !== o.service)) return null;
  var path = typeof callOpts.path === 'string' ? callOpts.path : '';
  var q = path.indexOf('?');
  if ((q < 0 ? path : path.slice(0, q)) === o.beaconPath) return null;

  var config = callOpts.config;
  var env = isObject(config) && typeof config.env === 'string' && config.env ? config.env : (o.env || '');
  var method = typeof callOpts.method === 'string' ? callOpts.method.toUpperCase() : 'GET';
  if (KNOWN_METHODS[method] !== true) method = '_OTHER';

  var ids = hasCallerTraceparent ? parseTraceparent(callerTraceparent) : null;
  if (!ids) ids = this.ids.next();

  var actual = Object.assign ? Object.assign({}, callOpts) : copyOwn(callOpts);
  if (!hasCallerTraceparent) {
    var newHeader = isObject(header) ? (Object.assign ? Object.assign({}, header) : copyOwn(header)) : {};
    newHeader.traceparent = '00-' + ids.traceId + '-' + ids.spanId + '-01';
    actual.header = newHeader;
  }

  var promiseStyle = typeof callOpts.success !== 'function' && typeof callOpts.fail !== 'function' &&
    typeof callOpts.complete !== 'function';
  var rec = {
    service: service,
    env: env,
    traceId: ids.traceId,
    spanId: ids.spanId,
    method: method,
    start: this.safeNow(),
    done: false,
    promiseStyle: promiseStyle,
    opts: actual
  };
  if (!promiseStyle) {
    var self = this;
    var userSuccess = callOpts.success;
    var userFail = callOpts.fail;
    actual.success = function (res) {
      self.finishSafely(rec, res, false);
      if (typeof userSuccess === 'function') return userSuccess.apply(this, arguments);
    };
    actual.fail = function (err) {
      self.finishSafely(rec, err, true);
      if (typeof userFail === 'function') return userFail.apply(this, arguments);
    };
    // `complete` is the caller's own function, passed through: the original calls it once.
  }
  this.counters.calls++;
  return rec;
};

Telemetry.prototype.attach = function (ret, rec) {
  if (!ret || typeof ret.then !== 'function') return ret;
  var self = this;
  return ret.then(function (res) {
    self.finishSafely(rec, res, false);
    return res;
  }, function (err) {
    self.finishSafely(rec, err, true);
    throw err;
  });
};

Telemetry.prototype.finishSafely = function (rec, value, failed) {
  try {
    this.finish(rec, value, failed);
  } catch (e) {
    this.onError(e);
  }
};

Telemetry.prototype.finish = function (rec, value, failed) {
  if (rec.done) return;
  rec.done = true;
  rec.opts = null; // the request (and its body) is not kept past the answer
  var end = this.safeNow();
  var duration = end - rec.start;
  if (!(duration >= 0)) duration = 0;
  var outcome, status = null, errCode = null, serverMs = null, traceId = rec.traceId;
  if (failed) {
    outcome = 'fail';
    errCode = errCodeOf(value);
  } else {
    status = isObject(value) ? finiteNumberOr(value.statusCode, null) : null;
    outcome = status !== null && status >= 500 ? 'http_error' : 'ok';
    var header = isObject(value) ? value.header : null;
    if (isObject(header)) {
      var keys = Object.keys(header);
      for (var i = 0; i < keys.length; i++) {
        var n = keys[i].length; // lower-case only the candidates
        if (n === 13 && keys[i].toLowerCase() === 'server-timing') {
          if (serverMs === null) serverMs = parseServerTiming(header[keys[i]]);
        } else if (n === 10 && keys[i].toLowerCase() === 'x-trace-id') {
          var t = parseTraceIdHeader(header[keys[i]]);
          if (t) traceId = t;
        }
      }
    }
  }
  var key = targetKey(rec.service, rec.env);
  this.warm[key] = { ok: outcome === 'ok', at: end };
  if (this.disabledTargets[key] === true) return;
  if (outcome === 'ok' && this.o.sampleRate < 1 && !(Math.random() < this.o.sampleRate)) {
    this.counters.sampledOut++;
  } else {
    var call = makeCall(traceId, rec.spanId, rec.method, round(duration, 1), outcome, status, errCode,
      serverMs, rec.start);
    this.enqueue(makeItem(rec.service, rec.env, call));
    this.counters.recorded++;
  }
  if (outcome !== 'ok') {
    // Failures are what matters most and often come just before the user gives up: store now.
    this.persist();
  } else if (this.restoredPending || this.pendingFor(key) >= Math.min(MAX_CALLS_PER_REPORT, this.o.maxQueue)) {
    // The first success of a launch sends what the last launch left; a full batch goes at once.
    this.restoredPending = false;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      var self = this;
      resolved().then(function () {
        self.flushScheduled = false;
        return self.flush();
      });
    }
  }
};

Telemetry.prototype.pendingFor = function (key) {
  var n = 0;
  for (var i = 0; i < this.queue.length; i++) if (this.queue[i].k === key) n++;
  return n;
};

Telemetry.prototype.enqueue = function (item) {
  this.queue.push(item);
  this.trim();
  this.dirty = true;
};

// Oldest first out; every call lost is counted in the next report's `dropped`.
Telemetry.prototype.trim = function () {
  var excess = this.queue.length - this.o.maxQueue;
  if (excess > 0) {
    this.queue.splice(0, excess);
    this.dropped += excess;
    this.counters.dropped += excess;
  }
};

// --- flushing ------------------------------------------------------------------------------

Telemetry.prototype.isWarm = function (key, now) {
  var w = this.warm[key];
  return !!w && w.ok && now - w.at <= this.o.flushAfterSuccessMs && this.disabledTargets[key] !== true;
};

// At most one flush (hence one beacon) at a time; a flush asked for meanwhile runs once after.
Telemetry.prototype.flush = function () {
  var self = this;
  if (!this.o.enabled || this.stopped) {
    return resolved({ status: 'disabled', sent: 0, pending: this.queue.length });
  }
  if (this.running) {
    if (!this.rerun) {
      this.rerun = this.running.then(function () {
        self.rerun = null;
        return self.flush();
      });
    }
    return this.rerun;
  }
  var p = this.runFlush().then(function (result) {
    self.running = null;
    return result;
  }, function (e) {
    self.running = null;
    self.onError(e);
    return { status: 'failed', sent: 0, pending: self.queue.length };
  });
  this.running = p;
  return p;
};

Telemetry.prototype.runFlush = function () {
  var self = this;
  var sent = 0;
  var failed = false;
  if (this.queue.length === 0) {
    this.persist();
    return resolved({ status: 'empty', sent: 0, pending: 0 });
  }
  function step() {
    var batch = null;
    try {
      batch = self.stopped ? null : self.takeBatch(self.safeNow());
    } catch (e) {
      self.onError(e);
    }
    if (!batch) {
      self.persist();
      var pending = self.queue.length;
      var status = failed ? 'failed' : sent > 0 ? 'sent' : pending > 0 ? 'cold' : 'empty';
      return resolved({ status: status, sent: sent, pending: pending });
    }
    return self.send(batch).then(function (verdict) {
      self.inflight = null;
      self.dirty = true;
      if (verdict === 'ok') {
        sent += batch.items.length;
        self.counters.beacons++;
        self.counters.reportedCalls += batch.items.length;
        self.dropped = Math.max(0, self.dropped - batch.dropped);
        return step();
      }
      self.counters.beaconFailures++;
      if (verdict === 'disable') {
        // The service does not serve the beacon route: stop reporting to it for this launch.
        self.disabledTargets[batch.key] = true;
        self.queue = self.queue.filter(function (item) { return item.k !== batch.key; });
        return step();
      }
      failed = true;
      if (verdict === 'drop') {
        // Refused for good (4xx): these calls are lost, say so in the next report.
        self.dropped += batch.items.length;
        self.counters.dropped += batch.items.length;
      } else {
        self.queue = batch.items.concat(self.queue);
        self.trim();
      }
      self.persist();
      return resolved({ status: 'failed', sent: sent, pending: self.queue.length });
    });
  }
  return step();
};

// The oldest calls of the first warm target: at most 64, the body under 16 KiB.
Telemetry.prototype.takeBatch = function (now) {
  var queue = this.queue;
  var key = null;
  var i;
  for (i = 0; i < queue.length; i++) {
    if (this.isWarm(queue[i].k, now)) {
      key = queue[i].k;
      break;
    }
  }
  if (key === null) return null;
  var dropped = this.dropped;
  var head = '{"v":1,"sdk":' + JSON.stringify(SDK) + ',"dropped":' + dropped + ',"calls":[';
  var tail = ']}';
  var size = head.length + tail.length;
  var items = [];
  var parts = [];
  var rest = [];
  var full = false;
  for (i = 0; i < queue.length; i++) {
    var item = queue[i];
    if (!full && item.k === key) {
      if (item.j === null) item.j = callJson(item.c);
      var add = item.j.length + (parts.length > 0 ? 1 : 0);
      if (items.length < MAX_CALLS_PER_REPORT && size + add < MAX_REPORT_BYTES) {
        items.push(item);
        parts.push(item.j);
        size += add;
        continue;
      }
      full = true;
    }
    rest.push(item);
  }
  this.queue = rest;
  this.inflight = items;
  var first = items[0];
  return {
    key: key,
    service: first.s,
    env: first.e,
    items: items,
    dropped: dropped,
    body: head + parts.join(',') + tail
  };
};

// One beacon through the *original* callContainer: never recorded, never traced.
// Resolves with 'ok', 'retry' (kept), 'drop' (refused for good) or 'disable' (no route).
Telemetry.prototype.send = function (batch) {
  var self = this;
  return new Promise(function (resolve) {
    var settled = false;
    var guard = null;
    var timers = self.o.timers;
    function done(verdict) {
      if (settled) return;
      settled = true;
      try {
        if (guard !== null && timers && typeof timers.clearTimeout === 'function') timers.clearTimeout(guard);
      } catch (e) {
        self.onError(e);
      }
      resolve(verdict);
    }
    var beacon = {
      path: self.o.beaconPath,
      method: 'POST',
      header: { 'X-WX-SERVICE': batch.service, 'content-type': 'application/json' },
      data: batch.body,
      success: function (res) {
        var status = isObject(res) ? res.statusCode : undefined;
        if (typeof status !== 'number') done('retry');
        else if (status >= 200 && status < 300) done('ok');
        else if (status === 404 || status === 405 || status === 501) done('disable');
        else if (status === 429 || status === 408 || status >= 500) done('retry');
        else done('drop');
      },
      fail: function () { done('retry'); }
    };
    if (batch.env) beacon.config = { env: batch.env };
    try {
      if (timers && typeof timers.setTimeout === 'function') {
        guard = timers.setTimeout(function () { done('retry'); }, BEACON_GUARD_MS);
        if (guard && typeof guard.unref === 'function') guard.unref();
      }
      var ret = self.original.call(self.cloud, beacon);
      // Callback style was asked for; should a runtime still hand back a promise, watch it too.
      if (ret && typeof ret.then === 'function') {
        ret.then(function (res) { beacon.success(res); }, function () { done('retry'); });
      }
    } catch (e) {
      self.onError(e);
      done('retry');
    }
  });
};

// --- storage -------------------------------------------------------------------------------

Telemetry.prototype.storage = function () {
  var w = this.o.wx;
  if (!this.o.storageKey || !w || typeof w.getStorageSync !== 'function' ||
      typeof w.setStorageSync !== 'function') return null;
  return w;
};

Telemetry.prototype.restore = function () {
  var w = this.storage();
  if (!w) return;
  var raw;
  try {
    raw = w.getStorageSync(this.o.storageKey);
  } catch (e) {
    this.onError(e);
    return;
  }
  if (!raw) return;
  var saved;
  try {
    saved = typeof raw === 'string' ? JSON.parse(raw) : raw;
  } catch (e) {
    saved = null; // not ours, or damaged: ignored and overwritten on the next write
  }
  if (!isObject(saved) || saved.v !== 1 || !Array.isArray(saved.items)) return;
  var items = [];
  for (var i = 0; i < saved.items.length; i++) {
    var it = saved.items[i];
    if (!isObject(it) || typeof it.s !== 'string' || !it.s || typeof it.e !== 'string') continue;
    var call = validCall(it.c);
    if (call) items.push(makeItem(it.s, it.e, call));
  }
  var dropped = finiteNumberOr(saved.dropped, 0);
  this.dropped += dropped > 0 ? Math.floor(dropped) : 0;
  this.queue = items.concat(this.queue);
  this.trim();
  this.restoredPending = this.queue.length > 0;
};

// Writes the unsent calls (queued and in flight) when something changed since the last write.
Telemetry.prototype.persist = function () {
  if (!this.dirty) return;
  var w = this.storage();
  if (!w) {
    this.dirty = false;
    return;
  }
  try {
    var all = this.inflight ? this.inflight.concat(this.queue) : this.queue;
    if (all.length > this.o.maxQueue) all = all.slice(all.length - this.o.maxQueue);
    if (all.length === 0 && this.dropped === 0) {
      if (typeof w.removeStorageSync === 'function') w.removeStorageSync(this.o.storageKey);
      else w.setStorageSync(this.o.storageKey, '');
    } else {
      var parts = [];
      var size = 0;
      for (var i = all.length - 1; i >= 0; i--) {
        var it = all[i];
        if (it.j === null) it.j = callJson(it.c);
        var s = '{"s":' + JSON.stringify(it.s) + ',"e":' + JSON.stringify(it.e) + ',"c":' + it.j + '}';
        if (size + s.length + 1 > MAX_STORED_CHARS) break; // newest kept
        parts.push(s);
        size += s.length + 1;
      }
      parts.reverse();
      var lost = all.length - parts.length;
      w.setStorageSync(this.o.storageKey,
        '{"v":1,"dropped":' + (this.dropped + lost) + ',"items":[' + parts.join(',') + ']}');
    }
    this.dirty = false;
  } catch (e) {
    this.onError(e);
  }
};

Telemetry.prototype.stats = function () {
  var c = this.counters;
  return {
    calls: c.calls,
    recorded: c.recorded,
    sampledOut: c.sampledOut,
    queued: this.queue.length + (this.inflight ? this.inflight.length : 0),
    dropped: c.dropped,
    beacons: c.beacons,
    beaconFailures: c.beaconFailures,
    reportedCalls: c.reportedCalls,
    internalErrors: c.internalErrors,
    idsFromRandomValues: this.ids.fromPool,
    idsFromMathRandom: this.ids.fromMath
  };
};

// ---------------------------------------------------------------------------------------------
// instrument()

function forwarder(cloud, name) {
  return function () {
    return cloud[name].apply(cloud, arguments);
  };
}

function define(obj, name, value) {
  Object.defineProperty(obj, name, { value: value, writable: true, configurable: true, enumerable: false });
}

// The returned object inherits from `cloud` (its data is read through the prototype) and owns
// `callContainer`, `flush`, `stats`, `stop`, plus a forwarder for every other method that calls it
// on `cloud` itself, so that `init()`, `callFunction()`… keep their receiver. Names starting with a
// capital letter (constructors such as `Cloud`) are left to the prototype, untouched.
function makeWrapper(cloud, reserved) {
  var base = isObject(cloud) ? cloud : Object.prototype;
  var wrapper = Object.create(base);
  if (!isObject(cloud)) return wrapper;
  var seen = {};
  for (var r = 0; r < reserved.length; r++) seen[reserved[r]] = true;
  seen.constructor = true;
  var o = cloud;
  while (o && o !== Object.prototype && o !== Function.prototype) {
    var names = Object.getOwnPropertyNames(o);
    for (var i = 0; i < names.length; i++) {
      var name = names[i];
      if (seen[name] === true) continue;
      seen[name] = true;
      var c = name.charAt(0);
      if (c >= 'A' && c <= 'Z') continue;
      var d = Object.getOwnPropertyDescriptor(o, name);
      if (d && typeof d.value === 'function') define(wrapper, name, forwarder(cloud, name));
    }
    o = Object.getPrototypeOf(o);
  }
  return wrapper;
}

/**
 * Wraps `cloud` (`wx.cloud` or a `new wx.cloud.Cloud({...})` instance): the returned object's
 * `callContainer` has the original's contract and adds tracing and client reports; `flush()`
 * sends pending reports now. Never throws; see README.md for the options and the protocol.
 */
function instrument(cloud, options) {
  var o;
  try {
    o = normalizeOptions(options);
  } catch (e) {
    o = normalizeOptions(null);
  }
  var original = isObject(cloud) && typeof cloud.callContainer === 'function' ? cloud.callContainer : null;
  var reserved = ['callContainer', 'flush', 'stats', 'stop'];
  var wrapper;
  try {
    wrapper = makeWrapper(cloud, reserved);
  } catch (e) {
    wrapper = Object.create(isObject(cloud) ? cloud : Object.prototype);
  }
  var t = null;
  var setupErrors = 0;
  if (o.enabled && original) {
    try {
      t = new Telemetry(cloud, original, o);
    } catch (e) {
      t = null;
      setupErrors++;
    }
  }
  if (!original) {
    // Not something with a callContainer: behave like the object itself would (fail the same way).
    original = function () {
      return cloud.callContainer.apply(cloud, arguments);
    };
  }

  function callContainer(callOpts) {
    var rec = null;
    if (t !== null) {
      try {
        rec = t.begin(callOpts);
      } catch (e) {
        t.onError(e);
        rec = null;
      }
    }
    var ret;
    if (rec === null) {
      ret = original.apply(cloud, arguments);
    } else if (arguments.length <= 1) {
      ret = original.call(cloud, rec.opts);
    } else {
      var args = Array.prototype.slice.call(arguments);
      args[0] = rec.opts;
      ret = original.apply(cloud, args);
    }
    if (rec !== null && rec.promiseStyle) {
      try {
        return t.attach(ret, rec);
      } catch (e) {
        t.onError(e);
        return ret;
      }
    }
    return ret;
  }
  define(callContainer, MARK, true);

  define(wrapper, 'callContainer', callContainer);
  define(wrapper, 'flush', function flush() {
    if (t === null) return resolved({ status: 'disabled', sent: 0, pending: 0 });
    try {
      return t.flush();
    } catch (e) {
      t.onError(e);
      return resolved({ status: 'failed', sent: 0, pending: t.queue.length });
    }
  });
  define(wrapper, 'stats', function stats() {
    if (t === null) {
      return {
        calls: 0, recorded: 0, sampledOut: 0, queued: 0, dropped: 0, beacons: 0, beaconFailures: 0,
        reportedCalls: 0, internalErrors: setupErrors, idsFromRandomValues: 0, idsFromMathRandom: 0
      };
    }
    return t.stats();
  });
  define(wrapper, 'stop', function stop() {
    if (t !== null) {
      try {
        t.stop();
      } catch (e) {
        t.onError(e);
      }
    }
  });
  return wrapper;
}

module.exports = {
  instrument: instrument,
  SDK: SDK,
  VERSION: VERSION,
  DEFAULTS: Object.freeze(copyOwn(DEFAULTS)),
  // Exposed for tests and for the server side's fixtures; not needed to use the package.
  _internal: {
    parseServerTiming: parseServerTiming,
    parseTraceparent: parseTraceparent,
    errCodeOf: errCodeOf,
    MAX_CALLS_PER_REPORT: MAX_CALLS_PER_REPORT,
    MAX_REPORT_BYTES: MAX_REPORT_BYTES,
    MAX_STORED_CHARS: MAX_STORED_CHARS
  }
};
