// Throughput over a sliding time window, for progress reports: bytes per second between the
// oldest sample still inside the window and the newest one, and the ETA that rate gives.

export interface ThroughputSample {
  /** Milliseconds on the meter's clock. */
  readonly t: number;
  /** Running byte count at that time. */
  readonly bytes: number;
}

export class ThroughputMeter {
  readonly windowMs: number;
  #samples: ThroughputSample[] = [];

  constructor(windowMs: number) {
    if (!(windowMs > 0)) throw new RangeError(`ThroughputMeter: window ${windowMs} ms must be positive`);
    this.windowMs = windowMs;
  }

  /** Records the running byte count at time t (ms, non-decreasing). */
  record(t: number, bytes: number): void {
    const s = this.#samples;
    const last = s[s.length - 1];
    if (last && last.t === t) s[s.length - 1] = { t, bytes };
    else s.push({ t, bytes });
    // Keep one sample at or before the window's start, so the rate spans the whole window.
    while (s.length > 2 && s[1]!.t <= t - this.windowMs) s.shift();
  }

  /** Bytes per second over the window; 0 until two samples are apart in time. */
  get bytesPerSecond(): number {
    const s = this.#samples;
    const first = s[0];
    const last = s[s.length - 1];
    if (!first || !last || last.t <= first.t) return 0;
    return ((last.bytes - first.bytes) * 1000) / (last.t - first.t);
  }

  /** Seconds until `remaining` more bytes at the current rate; undefined while the rate is 0. */
  etaSeconds(remaining: number): number | undefined {
    if (remaining <= 0) return 0;
    const rate = this.bytesPerSecond;
    return rate > 0 ? remaining / rate : undefined;
  }
}
