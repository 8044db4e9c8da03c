/**
 * `limits.stalledReaderTimeout`, over a real socket: a client fetches a dozen large bodies
 * from its server and reads none of them, so their waiting bytes spend the connection's
 * receive window and the server can send nothing more on any exchange. With the limit, the
 * client cuts the bodies that took nothing for its timeout, and its next fetch is answered;
 * a cut body errors with `ExchangeResetError`. Without it, the next fetch waits.
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ExchangeResetError } from "../mod.ts";
import { startPair, withTimeout } from "./_helpers.ts";

const GUARD = 30_000;
const STALLED = 12;
/** Longer than any body the server makes in the test: it never ends on its own. */
const BODY_BYTES = 256 * 1024 * 1024;
const CHUNK = new Uint8Array(64 * 1024);

/** A body that needs the window: no head carries it whole. */
const NEXT_BYTES = 256 * 1024;

/** Answers `/next` with `NEXT_BYTES`, and anything else with a body streamed as it is pulled. */
function handler(request: Request): Response {
  if (new URL(request.url).pathname === "/next") return new Response(new Uint8Array(NEXT_BYTES));
  let sent = 0;
  return new Response(
    new ReadableStream<Uint8Array>({
      pull(controller) {
        sent += CHUNK.byteLength;
        controller.enqueue(CHUNK.slice());
        if (sent >= BODY_BYTES) controller.close();
      },
    }, { highWaterMark: 0 }),
  );
}

/** Starts `STALLED` fetches whose bodies are never read, and one more of `/next`, read whole. */
async function stallThenFetch(stalledReaderTimeout?: number): Promise<{
  stalled: Response[];
  next: Promise<number>;
  close(): Promise<void>;
}> {
  const pair = await startPair(
    { handler },
    stalledReaderTimeout === undefined ? {} : { limits: { stalledReaderTimeout } },
  );
  const fetch = pair.clientSide.fetch;
  const stalled = await withTimeout(
    Promise.all(Array.from({ length: STALLED }, (_, i) => fetch(`http://agent/big/${i}`))),
    GUARD,
    "the large answers' heads",
  );
  // The window is spent once the client holds as much unread as its window; a body's head
  // comes with its first chunks, so waiting for the unread bytes to stop growing is the sign.
  let last = -1;
  await withTimeout(
    (async () => {
      while (pair.clientSide.bufferedBytes !== last) {
        last = pair.clientSide.bufferedBytes;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    })(),
    GUARD,
    "the client's receive window to fill",
  );
  const next = fetch("http://agent/next").then(async (response) =>
    (await response.arrayBuffer()).byteLength
  );
  return { stalled, next, close: () => pair.close() };
}

describe("limits.stalledReaderTimeout", () => {
  it(
    "cuts bodies that took nothing while their bytes held the connection, so the next fetch is answered",
    { timeout: 60_000 },
    async () => {
      const run = await stallThenFetch(300);
      try {
        assert.equal(await withTimeout(run.next, GUARD, "the next fetch"), NEXT_BYTES);
        const cut = await Promise.allSettled(run.stalled.map((response) => response.text()));
        assert.ok(
          cut.every((result) =>
            result.status === "rejected" && result.reason instanceof ExchangeResetError
          ),
          JSON.stringify(cut.map((result) => result.status)),
        );
      } finally {
        await run.close();
      }
    },
  );

  it("without it, the next fetch waits while the bodies hold the window", {
    timeout: 60_000,
  }, async () => {
    const run = await stallThenFetch();
    try {
      // A window of observation, not a wait for an event: nothing may arrive in it.
      const early = await Promise.race([
        run.next.then(() => "answered"),
        new Promise((resolve) => setTimeout(() => resolve("waiting"), 1_500)),
      ]);
      assert.equal(early, "waiting");
      // Dropping the stalled bodies frees the window: the next fetch goes through. (Dropping
      // one is not enough: the others' exchanges still have window of their own, and take
      // the credit it frees.)
      for (const response of run.stalled) await response.body?.cancel();
      assert.equal(await withTimeout(run.next, GUARD, "the next fetch"), NEXT_BYTES);
    } finally {
      for (const response of run.stalled) await response.body?.cancel().catch(() => {});
      await run.close();
    }
  });
});
