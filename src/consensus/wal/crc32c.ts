// CRC32C (Castagnoli, reflected polynomial 0x82F63B78): the checksum of iSCSI,
// ext4 and etcd's WAL. Chosen over CRC32 for its better error detection on
// the short, bursty corruptions disks produce. Slicing-by-8 tables because
// recovery checksums whole 64 MiB segments and a byte-at-a-time loop is ~4x slower.

const POLY = 0x82f63b78;

// TABLE[k * 256 + b]: the CRC contribution of byte b followed by k zero bytes.
const TABLE = (() => {
  const t = new Uint32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    let c = t[n]!;
    for (let k = 1; k < 8; k++) {
      c = (c >>> 8) ^ t[c & 0xff]!;
      t[k * 256 + n] = c >>> 0;
    }
  }
  return t;
})();

/**
 * CRC32C of `data`. `seed` is the CRC of the bytes before `data`, so
 * crc32c(b, crc32c(a)) === crc32c(a ++ b).
 */
export function crc32c(data: Uint8Array, seed = 0): number {
  const t = TABLE;
  let crc = ~seed >>> 0;
  let i = 0;
  const n = data.byteLength;
  const end8 = n - (n % 8);
  for (; i < end8; i += 8) {
    const lo = (crc ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24))) >>> 0;
    crc =
      t[7 * 256 + (lo & 0xff)]! ^
      t[6 * 256 + ((lo >>> 8) & 0xff)]! ^
      t[5 * 256 + ((lo >>> 16) & 0xff)]! ^
      t[4 * 256 + (lo >>> 24)]! ^
      t[3 * 256 + data[i + 4]!]! ^
      t[2 * 256 + data[i + 5]!]! ^
      t[256 + data[i + 6]!]! ^
      t[data[i + 7]!]!;
  }
  for (; i < n; i++) crc = (crc >>> 8) ^ t[(crc ^ data[i]!) & 0xff]!;
  return ~crc >>> 0;
}
