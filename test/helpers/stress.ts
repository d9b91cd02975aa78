/**
 * Kill-and-recover and multi-process loops run a few rounds in `npm test`
 * and their full counts under STOWAGE_STRESS=1 (`npm run test:stress`), so
 * the suite stays fast while the long runs keep finding rare failures.
 */
const STRESS = process.env.STOWAGE_STRESS === "1";

/** `normal` in `npm test`, `full` under STOWAGE_STRESS=1. */
export function stressCount(normal: number, full: number): number {
  return STRESS ? full : normal;
}
