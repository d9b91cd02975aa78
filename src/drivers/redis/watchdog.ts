import { Cluster, type Redis } from "ioredis";
import { deadlineTick } from "../support/deadlines.js";
import type { RedisClient } from "./connection.js";

/**
 * Fails the commands of a connection that keeps one waiting past the timeout, with one interval
 * for all of a driver's connections. ioredis's own `commandTimeout` arms and clears a timer for
 * every command, about 5% of a GET's client CPU. Each tick marks the newest command queued on a
 * connection with the time; Redis answers a connection's commands in order, so the oldest mark
 * still queued bounds from below how long every command ahead of it has waited. Once that passes
 * the timeout the connection is cut, which fails every command on it (E_UNAVAILABLE) and lets
 * ioredis reconnect. That holds for a hung server and for one that answers, but too slowly for
 * what is queued behind: a command fails at most two ticks (a tick is a quarter of the timeout,
 * 100 ms at most) after its timeout.
 */
export function replyWatchdog(timeout: number) {
  // Per connection, commands seen queued at a tick and when, oldest first (a Map keeps insertion order).
  const watched = new Map<Redis, Map<unknown, number>>();
  const tick = deadlineTick(timeout);
  let timer: NodeJS.Timeout | undefined;
  const check = (): void => {
    const now = Date.now();
    for (const [connection, marks] of watched) {
      // Closed for good (disposed, or a watch connection replaced): nothing more to watch.
      if (connection.status === "end") {
        watched.delete(connection);
        continue;
      }
      const queue = connection.commandQueue;
      const oldest = oldestWaiting(queue, marks);
      if (oldest !== undefined && now - oldest >= timeout) {
        marks.clear();
        connection.stream.destroy(new Error(`No reply within ${timeout} ms`));
        continue;
      }
      const newest = queue.peekBack();
      if (newest !== undefined) marks.set(newest, marks.get(newest) ?? now);
    }
  };
  return {
    watch(connection: RedisClient): void {
      if (connection instanceof Cluster) return;
      watched.set(connection, new Map());
      // unref: the watchdog never keeps a process alive on its own (the connections do, while open).
      timer ??= setInterval(check, tick).unref();
    },
    stop(): void {
      clearInterval(timer);
      timer = undefined;
      watched.clear();
    },
  };
}

/**
 * When the oldest marked command still queued was marked, after dropping the marks of commands
 * no longer queued (answered, or failed with their connection). The queue runs in mark order, so
 * the first marked command met walking it from the front is the oldest still waiting.
 */
function oldestWaiting(queue: Redis["commandQueue"], marks: Map<unknown, number>): number | undefined {
  if (marks.size === 0) return undefined;
  let oldest: unknown;
  for (let index = 0; index < queue.length; index++) {
    const command = queue.peekAt(index);
    if (marks.has(command)) {
      oldest = command;
      break;
    }
  }
  for (const command of marks.keys()) {
    if (command === oldest) return marks.get(command);
    marks.delete(command);
  }
  return undefined;
}

export type ReplyWatchdog = ReturnType<typeof replyWatchdog>;
