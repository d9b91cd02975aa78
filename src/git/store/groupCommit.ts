import { isStorageError, type StorageError } from "../../core/errors.js";

/** What a {@link GroupCommit} needs of its store. */
export interface GroupCommitOptions<T> {
  /**
   * Commits `batch` as one (one commit, one ref transaction): resolves with
   * the items that did not land, each with its error (the others landed);
   * throws when the batch failed as a whole.
   */
  commit(batch: readonly T[]): ReadonlyMap<T, StorageError> | Promise<ReadonlyMap<T, StorageError>>;
  /** The positions of the queued items that go into the next batch (the rest wait for the one after); default all. */
  split?(queue: readonly T[]): Iterable<number>;
}

type Entry<T> = { item: T; resolve: () => void; reject: (error: unknown) => void };

/**
 * Group commit: writes queued in the same event-loop turn (a setItems,
 * concurrent callers) land in one commit, each on its own condition; each
 * promise settles once its batch is on the ref. Should a batch fail as a
 * whole for a reason no item was found to cause (a held lock, E_UNAVAILABLE,
 * aside), each item is committed on its own, so a write that cannot land
 * fails alone and its neighbours land. Batches run one at a time, in order.
 */
export class GroupCommit<T> {
  private queue: Entry<T>[] = [];
  private scheduled = false;
  private flushing: Promise<void> | undefined;

  constructor(private readonly options: GroupCommitOptions<T>) {}

  /** Queues `item` (a distinct object per write: failures are told by item) for the next batch; settles when it landed or failed. */
  enqueue(item: T): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.schedule();
    });
  }

  /** Resolves when every queued write has been committed or failed. */
  async drain(): Promise<void> {
    while (this.flushing !== undefined || this.queue.length > 0) {
      if (this.flushing === undefined) this.schedule();
      await this.flushing;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  private schedule(): void {
    if (this.scheduled || this.flushing !== undefined) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flushing = this.flush().finally(() => {
        this.flushing = undefined;
        if (this.queue.length > 0) this.schedule();
      });
    });
  }

  /** Commits the next batch (all of the queue, unless `split` keeps some for later). */
  private async flush(): Promise<void> {
    const queue = this.queue;
    const now = new Set(this.options.split?.(queue.map((entry) => entry.item)) ?? queue.keys());
    this.queue = queue.filter((_, index) => !now.has(index));
    await this.settle(queue.filter((_, index) => now.has(index)));
  }

  private async settle(batch: Entry<T>[]): Promise<void> {
    let failed: ReadonlyMap<T, StorageError>;
    try {
      failed = await this.options.commit(batch.map((entry) => entry.item));
    } catch (error) {
      if (batch.length === 1 || isStorageError(error, "E_UNAVAILABLE")) {
        for (const entry of batch) entry.reject(error);
        return;
      }
      for (const entry of batch) await this.settle([entry]);
      return;
    }
    for (const entry of batch) {
      const failure = failed.get(entry.item);
      if (failure === undefined) entry.resolve();
      else entry.reject(failure);
    }
  }
}

/** A split that holds each name once per batch: a later write of a name waits for the next batch, so writes of a name stay in order. */
export function oncePerName<T>(nameOf: (item: T) => string): (queue: readonly T[]) => number[] {
  return (queue) => {
    const seen = new Set<string>();
    const now: number[] = [];
    queue.forEach((item, index) => {
      if (seen.has(nameOf(item))) return;
      seen.add(nameOf(item));
      now.push(index);
    });
    return now;
  };
}
