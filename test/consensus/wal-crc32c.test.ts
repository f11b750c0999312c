import { test } from "node:test";
import assert from "node:assert/strict";
import { crc32c } from "../../src/consensus/wal/crc32c.js";
import { seededRandom } from "../../src/consensus/random.js";

// Bit-at-a-time reference: obviously right, slow; the fast tables must agree with it.
function reference(data: Uint8Array, seed = 0): number {
  let c = ~seed >>> 0;
  for (const b of data) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return ~c >>> 0;
}

test("crc32c matches published check values", () => {
  assert.equal(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(0)), 0);
  // RFC 3720 (iSCSI) appendix B.4 vectors.
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e);
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c);
});

test("crc32c agrees with a bitwise reference at every length and alignment, and chains through seed", () => {
  const rnd = seededRandom(7);
  const buf = Uint8Array.from({ length: 300 }, () => Math.floor(rnd() * 256));
  for (let start = 0; start < 9; start++) {
    for (let len = 0; start + len <= buf.length; len += 1 + (len >> 3)) {
      const part = buf.subarray(start, start + len);
      assert.equal(crc32c(part), reference(part), `start ${start} len ${len}`);
    }
  }
  for (let cut = 0; cut <= buf.length; cut += 13) {
    assert.equal(crc32c(buf.subarray(cut), crc32c(buf.subarray(0, cut))), crc32c(buf), `cut ${cut}`);
  }
});
