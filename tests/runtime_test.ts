/**
 * The runtime layer: detected once, and the same answers as the tests' own detection; a
 * mounted server's upgrade with no runtime server to use is refused with a `TypeError`.
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { dialFailure, RUNTIME } from "../runtime/mod.ts";
import { IS_BUN } from "./_helpers.ts";

describe("runtime/mod.ts", () => {
  it("RUNTIME names this runtime; only Deno's client delays mid-size messages, only Bun's sets TCP_NODELAY", () => {
    assert.equal(RUNTIME.name, IS_BUN ? "bun" : "deno");
    assert.equal(RUNTIME.clientDelaysMidSizeMessages, !IS_BUN);
    assert.equal(RUNTIME.clientSetsNoDelay, IS_BUN);
  });

  it("RUNTIME.script() reads this process's arguments and environment", () => {
    const script = RUNTIME.script();
    assert.ok(Array.isArray(script.args));
    assert.equal(script.env("SWAGGERSOCKET_SURELY_UNSET_VARIABLE"), undefined);
  });

  it("RUNTIME.upgrade() on Bun throws a TypeError: only Bun's server upgrades there", () => {
    if (!IS_BUN) return;
    const request = new Request("http://localhost/", { headers: { upgrade: "websocket" } });
    assert.throws(
      () =>
        RUNTIME.upgrade(request, undefined, {
          keepsRequests: false,
          accept: () => {},
          socketOpened: () => {},
          socketClosed: () => {},
        }),
      TypeError,
    );
  });

  it("dialFailure() strips each runtime's preamble and spots an untrusted issuer", () => {
    assert.deepEqual(
      dialFailure(
        "WebSocket connection to 'wss://x/' failed: unable to verify the first certificate",
      ),
      {
        detail: "unable to verify the first certificate",
        untrustedIssuer: true,
        firstAttemptHidden: false,
      },
    );
    assert.deepEqual(
      dialFailure("NetworkError: failed to connect to WebSocket: tcp connect error"),
      { detail: "tcp connect error", untrustedIssuer: false, firstAttemptHidden: false },
    );
    assert.deepEqual(
      dialFailure(
        "NetworkError: failed to connect to WebSocket: received fatal alert: NoApplicationProtocol",
      ),
      {
        detail: "received fatal alert: NoApplicationProtocol",
        untrustedIssuer: false,
        firstAttemptHidden: true,
      },
    );
  });
});
