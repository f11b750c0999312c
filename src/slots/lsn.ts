// WAL positions and commit times as exact integers.
//
// LSNs are 64-bit: kept as bigint (a JS number loses the low bits past 2^53).
// Commit times arrive from pgoutput as microseconds since the Unix epoch
// (bigint); a JS Date has only milliseconds, so they are written back to
// PostgreSQL as text with all six fractional digits.

/** `X/Y` (hex halves, as PostgreSQL prints a pg_lsn) → bigint. */
export function parseLsn(s: string): bigint {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(s.trim());
  if (!m) throw new Error(`not an LSN: ${JSON.stringify(s)}`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

/** bigint → `X/Y` (upper-case hex, as PostgreSQL prints it). */
export function formatLsn(lsn: bigint): string {
  if (lsn < 0n) throw new Error(`negative LSN ${lsn}`);
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** The larger of two LSNs. */
export function maxLsn(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

/**
 * Microseconds since the Unix epoch → `YYYY-MM-DD HH:MM:SS.ffffff+00`, a
 * timestamptz literal PostgreSQL reads exactly whatever the session's TimeZone.
 */
export function microsToTimestamptz(us: bigint): string {
  const ms = us / 1000n;
  let frac = us % 1_000_000n;
  let secMs = ms - (ms % 1000n);
  if (frac < 0n) {
    // before 1970: the fraction counts up from the previous whole second
    frac += 1_000_000n;
    secMs -= 1000n;
  }
  const iso = new Date(Number(secMs)).toISOString(); // 2024-01-02T03:04:05.000Z
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)}.${frac.toString().padStart(6, "0")}+00`;
}
