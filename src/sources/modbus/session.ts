/**
 * One connection's lifetime as the poll groups see it: requests of all groups
 * go one at a time (`exclusive`), and `end()` (connection lost, or stop)
 * wakes every group sleeping until its next tick.
 */
export class Session {
  #over = false;
  #wakers = new Set<() => void>();
  #queue: Promise<unknown> = Promise.resolve();
  #queued = 0;
  /** Name of the group that saw the connection fail, if one did. */
  lostBy: string | undefined;

  /** True once the session ended. */
  get over(): boolean {
    return this.#over;
  }

  /** Ends the session (`by`: the group that saw the connection fail) and wakes all sleepers. */
  end(by?: string): void {
    if (this.#over) return;
    this.#over = true;
    this.lostBy = by;
    for (const w of this.#wakers) w();
    this.#wakers.clear();
  }

  /** Sleeps `ms`, or less when the session ends first. */
  sleep(ms: number): Promise<void> {
    if (this.#over || ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#wakers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wakers.add(done);
    });
  }

  /**
   * Runs `fn` after every request queued before it finished: one request at a
   * time. When none is queued `fn` starts at once (its request is on the wire
   * before the caller goes on, so the caller can decode the previous answer
   * meanwhile).
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const counted = async () => {
      try {
        return await fn();
      } finally {
        this.#queued--;
      }
    };
    const run = this.#queued === 0 ? counted() : this.#queue.then(counted, counted);
    this.#queued++;
    this.#queue = run.catch(() => {});
    return run;
  }
}
