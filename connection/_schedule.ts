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

function channelScheduler(): (run: Task) => void {
  const channel = new MessageChannel();
  let pending: Task | undefined;
  channel.port1.onmessage = () => pending?.();
  return (run) => {
    pending = run;
    channel.port2.postMessage(0);
  };
}

const schedule: (run: Task) => void = immediate ? (run) => void immediate(run) : channelScheduler();

/**
 * The tasks of the next macrotask, in order. Every connection with output to flush adds
 * one, and they all run in one macrotask: one `setImmediate` a turn rather than one per
 * connection (on Deno each is an object of a few hundred bytes, and a burst of handshakes
 * flushes thousands).
 */
let queue: Task[] = [];
let spare: Task[] = [];

function runQueue(): void {
  const tasks = queue;
  queue = spare;
  spare = tasks;
  for (let i = 0; i < tasks.length; i++) {
    try {
      tasks[i]();
    } catch (error) {
      // Uncaught, as it would be in a macrotask of its own, without losing the others.
      queueMicrotask(() => {
        throw error;
      });
    }
  }
  tasks.length = 0;
}

/** Schedules `task` as a macrotask. Tasks scheduled while the queue runs wait for the next. */
export function nextTask(task: Task): void {
  if (queue.length === 0) schedule(runQueue);
  queue.push(task);
}
