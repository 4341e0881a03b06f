// Webhook work yields to requests when the process is saturated with them.
//
// On a machine that does both, a ticket's webhook deliveries cost several times what creating the
// ticket costs (20 POSTs, their claims and outcomes, for a ticket's two events to 10
// subscriptions: docs/events-performance.md). While requests queue up, every delivery made then
// is a request answered later. Deliveries are asynchronous by contract and can wait; the agent
// at the screen cannot. So while the process is busy with requests, webhook work keeps a share
// of the time (WEBHOOK_SHARE_UNDER_LOAD) and catches up at full speed once the load falls.
// Under saturation the backlog grows; it is never dropped (the deliveries are rows and the feed
// is durable), and it never stops moving (the share is a floor, and a unit never waits longer
// than MAX_WAIT_MS for its turn).

/** Requests this process is answering now. Long-lived streams leave it once they start. */
export class RequestLoad {
  #inFlight = 0;

  get inFlight(): number {
    return this.#inFlight;
  }

  /** Counts a request; the function answered ends it, and may be called any number of times. */
  enter(): () => void {
    this.#inFlight++;
    let left = false;
    return () => {
      if (left) return;
      left = true;
      this.#inFlight--;
    };
  }
}

export interface YieldOptions {
  /** Requests in flight from which the process counts as busy; 0: never yield. */
  requests: number;
  /** The share of time webhook work keeps while the process is busy, in (0, 1]. */
  share: number;
}

const SAMPLE_MS = 50;
/**
 * The window over which "busy" is judged: at or over the threshold for three quarters of it
 * makes the process busy (a stall of a few hundred milliseconds, which piles requests up for a
 * moment, does not). It is calm again once under a quarter of the window had even half the
 * threshold in flight: while webhook work yields, the same demand leaves fewer requests in flight
 * at any moment (they are answered sooner), and a calm judged at the threshold itself let every
 * waiting unit go at once under full load, which made the process busy again a second later
 * (bench:events saw 3 to 4 such turns in 10 s; docs/events-performance.md).
 */
const WINDOW_SAMPLES = 20;
/** The longest rest after a unit (a slow receiver makes a long unit, and little CPU). */
const MAX_PAUSE_MS = 2_000;
/**
 * The longest a unit waits for its turn, counted from when it asked. Jobs are taken from the
 * queue before their handler runs, and a job not finished within its expiry is run again
 * elsewhere: the delivery queue's expiry adds this (src/jobs/start.ts), so waiting never turns
 * into a retry. It is long enough for a full line of units (JOBS_CONCURRENCY of them, and
 * dispatch) with their rests to pass one by one: only a line held up by stuck units (a receiver
 * that answers only at the timeout) lets a unit go early.
 */
export const MAX_WAIT_MS = 20_000;

type Sleep = (ms: number, wake: AbortSignal) => Promise<void>;

const sleep: Sleep = (ms, wake) =>
  new Promise((resolve) => {
    if (wake.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      wake.removeEventListener('abort', done);
      resolve();
    }
    wake.addEventListener('abort', done, { once: true });
  });

/**
 * Runs units of webhook work (a dispatch batch, a delivery batch). While the process is not busy
 * they run at once, side by side. While it is busy they run one at a time, each followed by a
 * rest so that the units' time is at most `share` of the whole: a unit that took 20 ms is
 * followed by 180 ms of rest at a share of 0.1. The next unit waits out the rest (the unit that
 * took it is done); it ends early when the load falls.
 */
export class YieldGate {
  readonly #load: RequestLoad;
  readonly #options: YieldOptions;
  readonly #sleep: Sleep;
  readonly #now: () => number;
  /** The last WINDOW_SAMPLES samples: how many requests were in flight, against the threshold. */
  readonly #samples: { over: boolean; half: boolean }[] = [];
  /** Samples of the window at or over the threshold, and at or over half of it. */
  #over = 0;
  #half = 0;
  #timer: NodeJS.Timeout | undefined;
  /** The turn of the last unit queued while busy: the next one starts after it. */
  #turn: Promise<void> = Promise.resolve();
  /** Units queued or running one at a time (while busy). */
  #queued = 0;
  /** The next unit may not start before this (the rest after the last unit, while busy). */
  #restUntil = Number.NEGATIVE_INFINITY;
  /** Aborted when the process stops being busy, to end pauses and waits early. */
  #calm = new AbortController();
  #onChange: ((busy: boolean, inFlight: number) => void) | undefined;
  #busy = false;

  constructor(
    load: RequestLoad,
    options: YieldOptions,
    hooks: { sleep?: Sleep; now?: () => number; onChange?: (busy: boolean, inFlight: number) => void } = {},
  ) {
    this.#load = load;
    this.#options = options;
    this.#sleep = hooks.sleep ?? sleep;
    this.#now = hooks.now ?? (() => performance.now());
    this.#onChange = hooks.onChange;
  }

  /** Starts sampling the load (nothing is sampled, and nothing yields, with `requests` 0). */
  start(): void {
    if (this.#options.requests === 0 || this.#timer) return;
    this.#timer = setInterval(() => this.sample(), SAMPLE_MS);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#setBusy(false);
  }

  get busy(): boolean {
    return this.#busy;
  }

  /** One sample of the load (the timer takes one every SAMPLE_MS). */
  sample(): void {
    const { requests } = this.#options;
    const inFlight = this.#load.inFlight;
    const sample = {
      over: requests > 0 && inFlight >= requests,
      half: requests > 0 && inFlight * 2 >= requests,
    };
    this.#samples.push(sample);
    this.#over += Number(sample.over);
    this.#half += Number(sample.half);
    const gone = this.#samples.length > WINDOW_SAMPLES ? this.#samples.shift() : undefined;
    if (gone) {
      this.#over -= Number(gone.over);
      this.#half -= Number(gone.half);
    }
    // Busy from three quarters of the window at the threshold; calm again under a quarter at
    // half of it (WINDOW_SAMPLES): no flapping.
    this.#setBusy(this.#busy ? this.#half * 4 > WINDOW_SAMPLES : this.#over * 4 >= WINDOW_SAMPLES * 3);
  }

  #setBusy(busy: boolean): void {
    if (busy === this.#busy) return;
    this.#busy = busy;
    if (!busy) {
      this.#calm.abort();
      this.#calm = new AbortController();
    }
    this.#onChange?.(busy, this.#load.inFlight);
  }

  async run<T>(unit: () => Promise<T>): Promise<T> {
    if (!this.#busy || this.#options.share >= 1) return unit();
    const before = this.#queued > 0 ? this.#turn : null;
    this.#queued++;
    let release!: () => void;
    this.#turn = new Promise((resolve) => (release = resolve));
    try {
      // Our turn comes when the unit before has run and its rest is over; the load falling
      // ends the wait, and so does MAX_WAIT_MS from now.
      const waited = new AbortController();
      const calm = this.#calm.signal;
      const stopWaiting = () => waited.abort();
      calm.addEventListener('abort', stopWaiting, { once: true });
      const longest = this.#sleep(MAX_WAIT_MS, waited.signal);
      try {
        if (before) await Promise.race([before, longest]);
        const rest = this.#restUntil - this.#now();
        if (rest > 0 && !waited.signal.aborted)
          await Promise.race([this.#sleep(rest, waited.signal), longest]);
      } finally {
        calm.removeEventListener('abort', stopWaiting);
        waited.abort();
      }
      const started = this.#now();
      try {
        return await unit();
      } finally {
        // The rest is the next unit's wait, not this one's: its job is done and may complete.
        const took = this.#now() - started;
        const share = this.#options.share;
        this.#restUntil = this.#now() + Math.min(MAX_PAUSE_MS, (took * (1 - share)) / share);
      }
    } finally {
      this.#queued--;
      release();
    }
  }
}
