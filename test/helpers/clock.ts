/** A clock the test moves by hand, for code that takes `now: () => number` (ms). */
export interface FakeClock {
  /** The current time; pass `clock.now` where the code takes its clock. */
  readonly now: () => number;
  /** Moves the clock forward by `ms`. */
  advance(ms: number): void;
}

/**
 * A fake clock starting at `startMs`. The default is a fixed instant (reproducible runs) later
 * than any real file time, so files the test writes lie in the clock's past.
 */
export function fakeClock(startMs = Date.UTC(2030, 0, 1)): FakeClock {
  let t = startMs;
  return {
    now: () => t,
    advance: (ms: number) => {
      t += ms;
    },
  };
}

/** A clock whose timer moves it by what each wait asks for: for code polling with a timer and a deadline clock. */
export interface FastTimer {
  /** The clock (ms), advanced only by the waits. */
  readonly now: () => number;
  /** A timer that fires on the next turn of the event loop (no real wait), moving the clock by `ms` first. */
  readonly timer: (ms: number, fire: () => void) => () => void;
  /** How many waits were asked for so far. */
  readonly armed: () => number;
}

/** A FastTimer starting at 0. */
export function fastTimer(): FastTimer {
  let now = 0;
  let armed = 0;
  return {
    now: () => now,
    armed: () => armed,
    timer: (ms, fire) => {
      armed++;
      const t = setImmediate(() => {
        now += ms;
        fire();
      });
      return () => clearImmediate(t);
    },
  };
}
