// Type definitions for wxcloudrun-telemetry-miniprogram 0.1.0

/** `wxcloudrun-telemetry-miniprogram/<version>`: the `sdk` field of every report. */
export declare const SDK: string;
/** The package version, `0.1.0`. */
export declare const VERSION: string;
/** The default of every option (frozen). */
export declare const DEFAULTS: Readonly<{
  service: undefined;
  env: undefined;
  beaconPath: '/_wxtelemetry/v1/client';
  sampleRate: 1;
  maxQueue: 64;
  flushIntervalMs: 10000;
  flushAfterSuccessMs: 60000;
  storageKey: 'wxcloudrun-telemetry-miniprogram:v1';
  enabled: true;
}>;

/** Options of {@link instrument}. Every one is optional; invalid values fall back to the default. */
export interface InstrumentOptions {
  /**
   * The `X-WX-SERVICE` whose calls are instrumented and whose beacon route receives their
   * reports. Default: unset — every call is instrumented and reported to the service it called
   * (its own `X-WX-SERVICE` header). When set, calls to other services pass through untouched
   * (no `traceparent`, not recorded); calls without the header count as calls to this service.
   */
  service?: string;
  /**
   * `config.env` of the beacons for calls that did not set `config.env` themselves.
   * Default: unset — such beacons carry no `config` either and go, like those calls, to the
   * environment the cloud object was initialised with. A call's own `config.env` always wins.
   */
  env?: string;
  /** The beacon route on the service. Must start with `/`. Default `'/_wxtelemetry/v1/client'`. */
  beaconPath?: string;
  /**
   * Share of successful (`ok`) calls reported, decided per call, in [0, 1]. Failures
   * (`http_error`, `fail`) are always reported. Default `1`.
   */
  sampleRate?: number;
  /**
   * Most calls waiting to be reported (in memory and in storage). Past it the oldest are dropped
   * and counted in the next report's `dropped`. Default `64`.
   */
  maxQueue?: number;
  /** Period of the flush timer in ms; `0` turns the timer off. Default `10000` (10 s). */
  flushIntervalMs?: number;
  /**
   * A flush sends reports to a service only if the last real call to it succeeded (`ok`) no more
   * than this many ms ago, so that a beacon never wakes a service scaled to zero by itself.
   * Default `60000` (60 s).
   */
  flushAfterSuccessMs?: number;
  /**
   * `wx.setStorageSync` key for unsent reports kept for the next launch (a JSON string, at most
   * `maxQueue` calls and 32 768 characters). `null` or `false`: no storage. Use one key per
   * instrumented object. Default `'wxcloudrun-telemetry-miniprogram:v1'`.
   */
  storageKey?: string | null | false;
  /** `false`: a pure pass-through (no header, no timer, no report). Default `true`. */
  enabled?: boolean;

  /** Advanced: the `wx` object (storage, getRandomValues, onAppHide). Default: the global `wx`. */
  wx?: WxLike;
  /** Advanced: timer functions. Default: the global `setInterval`/`setTimeout` and their clears. */
  timers?: TimersLike;
  /** Advanced: the clock in ms since the epoch (durations and `ts`). Default `Date.now`. */
  now?: () => number;
}

/** The parts of `wx` the package uses; each is optional. */
export interface WxLike {
  getRandomValues?(options: {
    length: number;
    success?: (res: { randomValues: ArrayBuffer }) => void;
    fail?: (err: unknown) => void;
  }): unknown;
  getStorageSync?(key: string): unknown;
  setStorageSync?(key: string, value: unknown): void;
  removeStorageSync?(key: string): void;
  onAppHide?(listener: (...args: unknown[]) => void): void;
  offAppHide?(listener: (...args: unknown[]) => void): void;
}

export interface TimersLike {
  setInterval?(fn: () => void, ms: number): unknown;
  clearInterval?(id: unknown): void;
  setTimeout?(fn: () => void, ms: number): unknown;
  clearTimeout?(id: unknown): void;
}

/** What {@link Instrumented.flush} did. */
export interface FlushResult {
  /**
   * `sent`: at least one report was accepted and none failed; `empty`: nothing to send; `cold`:
   * nothing sent because no service had a recent successful call (reports kept, and stored);
   * `failed`: a beacon failed (reports kept for a later flush, except those refused for good with
   * a 4xx, which are counted in `dropped`); `disabled`: `enabled: false`, or after `stop()`.
   */
  status: 'sent' | 'empty' | 'cold' | 'failed' | 'disabled';
  /** Calls reported by this flush. */
  sent: number;
  /** Calls still waiting after it. */
  pending: number;
}

/** Counters of this instrumented object since instrument(). */
export interface TelemetryStats {
  /** Calls instrumented (traceparent added or respected, timed). */
  calls: number;
  /** Calls queued for a report. */
  recorded: number;
  /** Successful calls left out by `sampleRate`. */
  sampledOut: number;
  /** Calls waiting now (queued or in flight). */
  queued: number;
  /** Calls dropped (queue bound, refused by the server). */
  dropped: number;
  /** Beacons accepted. */
  beacons: number;
  /** Beacons that failed or were refused. */
  beaconFailures: number;
  /** Calls delivered in accepted beacons. */
  reportedCalls: number;
  /** Errors inside the package, caught and counted (the calls themselves went through). */
  internalErrors: number;
  /** Ids made from wx.getRandomValues bytes / from Math.random (pool empty or no API). */
  idsFromRandomValues: number;
  idsFromMathRandom: number;
}

export interface Instrumentation {
  /**
   * Sends pending reports now — only to services whose last real call succeeded within
   * `flushAfterSuccessMs`; otherwise they stay queued and stored. One beacon at a time. Never
   * rejects. Also run by the timer and on `wx.onAppHide`.
   */
  flush(): Promise<FlushResult>;
  /** Counters, for debugging. */
  stats(): TelemetryStats;
  /** Stops the timer, removes the onAppHide listener, stores what is unsent. Calls then pass through. */
  stop(): void;
}

/**
 * The instrumented object: the cloud's own members (methods are called on the cloud itself), a
 * `callContainer` with exactly the original's contract, and {@link Instrumentation}.
 */
export type Instrumented<C> = C & Instrumentation;

/** Anything with a callContainer: `wx.cloud`, a `new wx.cloud.Cloud({...})` instance. */
export interface CallContainerHost {
  callContainer(...args: any[]): any;
}

/**
 * Wraps `cloud` (`wx.cloud` or a `new wx.cloud.Cloud({...})` instance; instrument each one once).
 * Patches nothing: use the returned object. Never throws.
 */
export declare function instrument<C extends CallContainerHost>(cloud: C, options?: InstrumentOptions): Instrumented<C>;

// ---- The report protocol (the JSON `data` of the beacon call) --------------------------------

/** One call in a report. Field order as listed. */
export interface ClientCall {
  /** 32 lowercase hex: the server's `x-trace-id` when the response carried one, else the id sent in `traceparent`. */
  trace_id: string;
  /** 16 lowercase hex: the client span id sent in `traceparent` (the server span's parent). */
  span_id: string;
  /** Upper-case HTTP method; `_OTHER` for anything outside the standard nine. */
  method: string;
  /** Client-side duration in ms (0.1 ms resolution, Date.now based). */
  duration_ms: number;
  /** `ok` (any response below 500), `http_error` (status >= 500), `fail` (callContainer failed). */
  outcome: 'ok' | 'http_error' | 'fail';
  /** HTTP status; null when the call failed or no status came back. */
  status: number | null;
  /** callContainer's errCode (`-606001`, `-501000`, `102002`, `-1`, …) when it failed; else null. */
  err_code: number | null;
  /** `dur` of the first `app` metric of the response's `Server-Timing`, in ms; null when absent. */
  server_ms: number | null;
  /** Start of the call, ms since the epoch. */
  ts: number;
}

/** A report: at most 64 calls, the JSON text under 16 KiB. */
export interface ClientReport {
  v: 1;
  /** `wxcloudrun-telemetry-miniprogram/0.1.0` */
  sdk: string;
  /** Calls lost (queue bound, refused) since the last accepted report. */
  dropped: number;
  calls: ClientCall[];
}
