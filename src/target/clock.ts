// The target's notion of time: keep-alive timers and nothing else. Tests pass a FakeClock
// (testing/fake-clock.ts) so a keep-alive expiry is a deterministic step, not a sleep.

export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds on a monotonic clock. */
  now(): number;
  /** Calls fn once after ms milliseconds unless cancelled first. */
  setTimer(ms: number, fn: () => void): TimerHandle;
}

/** Node's timers; unref'd so a target with idle controllers does not keep the process alive. */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimer(ms, fn) {
    const t = setTimeout(fn, ms);
    t.unref();
    return { cancel: () => clearTimeout(t) };
  },
};
