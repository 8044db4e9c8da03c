/**
 * Runs a callback as a macrotask, soon: after every pending microtask, before timers.
 *
 * Frames queued while a handler's promise chain runs must leave as one WebSocket
 * message, so flushing waits for the microtask queue to empty. `setTimeout(0)` is
 * clamped to about a millisecond on Deno and Bun; `setImmediate` (a global on both)
 * takes about a microsecond. Elsewhere (browsers) a `MessageChannel` does the same.
 *
 * @module
 */

type Task = () => void;

const immediate = (globalThis as { setImmediate?: (task: Task) => unknown }).setImmediate;

function channelScheduler(): (task: Task) => void {
  const queue: Task[] = [];
  const channel = new MessageChannel();
  channel.port1.onmessage = () => queue.shift()?.();
  return (task) => {
    queue.push(task);
    channel.port2.postMessage(0);
  };
}

/** Schedules `task` as a macrotask. */
export const nextTask: (task: Task) => void = immediate
  ? (task) => void immediate(task)
  : channelScheduler();
