/** The one constant-time comparison of secrets: strings (as UTF-8) and bytes alike. */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { timingSafeEqual } from "../_timing_safe_equal.ts";

describe("timingSafeEqual()", () => {
  it("timingSafeEqual() compares strings of any length", () => {
    assert.equal(timingSafeEqual("abc", "abc"), true);
    assert.equal(timingSafeEqual("abc", "abd"), false);
    assert.equal(timingSafeEqual("abc", "ab"), false);
    assert.equal(timingSafeEqual("ab", "abc"), false);
    assert.equal(timingSafeEqual("", ""), true);
    assert.equal(timingSafeEqual("é", "e\u0301"), false);
  });

  it("timingSafeEqual() compares bytes, and a string with its UTF-8 bytes", () => {
    assert.equal(timingSafeEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2])), true);
    assert.equal(timingSafeEqual(new Uint8Array([1, 2]), new Uint8Array([1, 3])), false);
    assert.equal(timingSafeEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2, 0])), false);
    assert.equal(timingSafeEqual("hé", new Uint8Array([0x68, 0xc3, 0xa9])), true);
  });
});
