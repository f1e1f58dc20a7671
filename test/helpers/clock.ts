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
