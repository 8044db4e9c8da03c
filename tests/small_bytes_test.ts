/**
 * Small byte arrays carved from shared slabs (`protocol/_small_bytes.ts`): each is its own,
 * zeroed, whatever was written to the ones before it; large ones get a buffer of their own.
 *
 * @module
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { copyBytes, SMALL_BYTES, smallBytes, textBytes } from "../protocol/_small_bytes.ts";

describe("smallBytes(), copyBytes() and textBytes()", () => {
  it("carves zeroed arrays that never share a byte, across slabs", () => {
    const made: Uint8Array[] = [];
    for (let i = 0; i < 200; i++) {
      const size = (i * 37) % (SMALL_BYTES + 1);
      const bytes = smallBytes(size);
      assert.equal(bytes.byteLength, size);
      assert.ok(bytes.every((byte) => byte === 0), `array ${i} starts zeroed`);
      bytes.fill(i % 255 + 1);
      made.push(bytes);
    }
    made.forEach((bytes, i) =>
      assert.ok(bytes.every((byte) => byte === i % 255 + 1), `array ${i} kept its bytes`)
    );
  });

  it("gives an array larger than SMALL_BYTES a buffer of its own", () => {
    const bytes = smallBytes(SMALL_BYTES + 1);
    assert.equal(bytes.byteOffset, 0);
    assert.equal(bytes.buffer.byteLength, SMALL_BYTES + 1);
  });

  it("copies: the source can be reused at once", () => {
    for (const size of [0, 1, 100, SMALL_BYTES, SMALL_BYTES + 1, 5000]) {
      const source = new Uint8Array(size).map((_, i) => i % 251);
      const copy = copyBytes(source);
      source.fill(0xff);
      assert.deepEqual([...copy], Array.from({ length: size }, (_, i) => i % 251), `${size} bytes`);
    }
  });

  it("encodes text as TextEncoder does, ASCII or not, short or long", () => {
    const encoder = new TextEncoder();
    for (
      const text of [
        "",
        "{}",
        '{"name":"Rex"}',
        "x".repeat(SMALL_BYTES),
        "x".repeat(SMALL_BYTES + 1),
        "prix: 5 €",
        "ascii then \u{1f600}",
        "é".repeat(SMALL_BYTES),
        "lone \ud800 surrogate",
      ]
    ) {
      assert.deepEqual(
        [...textBytes(text)],
        [...encoder.encode(text)],
        JSON.stringify(text.slice(0, 20)),
      );
    }
  });
});
