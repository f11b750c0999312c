// How the data plane connects: text values everywhere, and the same output
// settings on the upstream's walsender and the local applier, so a value's
// text means the same thing on both ends (and full-row matching of tables
// without a primary key can compare text with text).
import pg from "pg";
import { dsnClientConfig } from "../postgres/dsn.js";

/**
 * Per-client type parsers that leave every value as the server's text: the
 * global pg.types would turn numerics and floats into JS numbers and
 * timestamps into millisecond Dates. Per client, so nothing else in the
 * process is affected.
 */
export const TEXT_TYPES: pg.CustomTypesConfig = { getTypeParser: () => (v: string) => v };

/**
 * Output settings for both ends of a replication stream (startup options, so
 * they also reach the walsender that runs pgoutput). extra_float_digits > 0
 * selects the shortest exact float output; ISO dates in UTC are read back
 * exactly whatever the server's defaults are.
 */
export const SESSION_OPTIONS = "-c DateStyle=ISO -c IntervalStyle=postgres -c TimeZone=UTC -c extra_float_digits=1 -c bytea_output=hex";

/** The DSN's parameters win over these, as with pg's connectionString; its password comes from libpq's sources (src/postgres/passfile.ts). */
export function clientConfig(dsn: string, applicationName: string, extra: pg.ClientConfig = {}): pg.ClientConfig {
  return dsnClientConfig(dsn, {
    application_name: applicationName,
    types: TEXT_TYPES,
    options: SESSION_OPTIONS,
    connectionTimeoutMillis: 10_000,
    keepAlive: true,
    ...extra,
  });
}

/** A connected client with text values; a connection lost while idle is reported to `onError` instead of crashing the process. */
export async function connectClient(dsn: string, applicationName: string, onError: (e: Error) => void = () => {}, extra: pg.ClientConfig = {}): Promise<pg.Client> {
  const client = new pg.Client(clientConfig(dsn, applicationName, extra));
  client.on("error", onError);
  try {
    await client.connect();
  } catch (e) {
    await client.end().catch(() => undefined);
    throw e;
  }
  return client;
}

/** Close at once (no goodbye): for aborts, and for a client whose server may be gone. */
export function destroyClient(client: pg.Client | undefined): void {
  if (!client) return;
  try {
    client.connection.stream.destroy();
  } catch {
    // never connected
  }
}

/** The SQLSTATE of a server error, if it is one. */
export function sqlState(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}
