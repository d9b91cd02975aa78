import type { WatchCallback, WatchEvent, WatchOrigin } from "../../core/types.js";

/** Revisions remembered at most: a feed that never reports some (a chunk's, a key outside the watch) cannot grow this without bound. */
const REMEMBERED = 10_000;

/**
 * Tells this driver instance's writes from other clients' in a change feed
 * whose events carry the revision the write's reply also returns (etcd's
 * revision, a NATS KV sequence). An event can come before the reply of the
 * write that caused it, so each event waits for the writes that were in
 * flight when it came, then looks its revision up; events keep their order.
 * Writes are tracked only while a watch is open (nobody asks otherwise).
 */
export class OwnWrites {
  private readonly revisions = new Set<string>();
  private readonly inFlight = new Set<Promise<void>>();
  private queue: Promise<void> = Promise.resolve();
  private watches = 0;

  /** A watch opened (counted before its feed opens, so that no write of ours can reach it untracked). */
  private opened(): void {
    this.watches++;
  }

  /** Opens a watch's feed, counted as {@link opened} first; a feed that fails to open is uncounted again. */
  async opening<T>(open: () => Promise<T>): Promise<T> {
    this.opened();
    try {
      return await open();
    } catch (error) {
      this.closed();
      throw error;
    }
  }

  /** A watch closed; with none left, nothing is remembered. */
  closed(): void {
    if (--this.watches > 0) return;
    this.revisions.clear();
  }

  /** Remembers the revision a write's reply names; the write's own result and failure pass through unchanged. */
  track<T>(write: Promise<T>, revisionOf: (reply: T) => string | undefined): Promise<T> {
    if (this.watches === 0) return write;
    const settled = write.then(
      (reply) => this.remember(revisionOf(reply)),
      // The write's caller gets its failure; here it only means there is no revision to remember.
      () => undefined,
    );
    this.inFlight.add(settled);
    void settled.then(() => this.inFlight.delete(settled));
    return write;
  }

  /** Calls `deliver` with the event's origin, in the order events came, once the writes in flight now have replied. */
  private origin(revision: string, deliver: (origin: WatchOrigin) => void): void {
    const pending = [...this.inFlight];
    this.queue = this.queue.then(async () => {
      if (pending.length > 0) await Promise.all(pending);
      deliver(this.revisions.has(revision) ? "local" : "remote");
    }).catch((error: unknown) => {
      // A listener called directly (not through a storage, which catches) threw: later events still go out.
      process.emitWarning(`stowage: a watch listener failed: ${String(error)}`);
    });
  }

  /** Reports a feed's event through {@link origin}: its revision is the key's version, and an update's etag. */
  report(callback: WatchCallback, event: WatchEvent, key: string, revision: string): void {
    this.origin(revision, (origin) =>
      callback(event, key, event === "update" ? { origin, etag: revision, version: revision } : { origin, version: revision }),
    );
  }

  private remember(revision: string | undefined): void {
    if (revision === undefined) return;
    this.revisions.add(revision);
    if (this.revisions.size > REMEMBERED) this.revisions.delete(this.revisions.values().next().value!);
  }
}
