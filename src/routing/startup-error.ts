// Answering a client the proxy cannot forward (no target, upstream down, too
// many connections) with a PostgreSQL error it can read, instead of a dropped
// socket: the proxy plays the server's part of the startup handshake itself.
//
// A client opens with one of the untyped startup packets (Int32 length,
// Int32 code, body): an SSLRequest or GSSENCRequest is answered 'N' (no
// encryption, as a server without TLS does; libpq's sslmode=prefer then goes on
// in plaintext), a StartupMessage gets a FATAL ErrorResponse and the
// connection ends, a CancelRequest expects no answer and is just closed.
// Nothing is read from a client that can be forwarded: this runs only once
// the proxy has decided to answer with an error.
import type { Socket } from "node:net";
import type { PgWireErrorFields } from "../pgwire/errors.js";
import { CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, SSL_REQUEST_CODE, errorResponse } from "../pgwire/messages.js";

/** PostgreSQL's MAX_STARTUP_PACKET_LENGTH: a longer length word is not a PostgreSQL client. */
export const MAX_STARTUP_PACKET = 10_000;

/**
 * How the exchange ended:
 * - answered: the client sent its StartupMessage and got the ErrorResponse
 * - cancel-request: a CancelRequest (nothing to answer), closed
 * - closed: the client left before sending a whole startup packet
 * - timeout: the client sent no whole startup packet within the time allowed
 * - invalid: not PostgreSQL's protocol (a length out of range), closed
 */
export type StartupOutcome = "answered" | "cancel-request" | "closed" | "timeout" | "invalid";

const NO_ENCRYPTION = Buffer.from("N");
/** More encryption requests than this on one connection is not a real client. */
const MAX_NEGOTIATIONS = 2;

/**
 * Read the client's startup packets from `socket` (which must not have been
 * read from yet, or only into its own buffer), answer encryption requests
 * 'N', and answer the StartupMessage with `error` as a FATAL ErrorResponse;
 * the socket is then ended and destroyed once the answer is flushed. Resolves
 * with the outcome; never rejects. The socket is always destroyed in the end
 * (at once, or after the answer is flushed).
 */
export function answerStartupWithError(socket: Socket, error: PgWireErrorFields, opts: { timeoutMs: number }): Promise<StartupOutcome> {
  return new Promise<StartupOutcome>((resolve) => {
    let buffered: Buffer = Buffer.alloc(0);
    let negotiations = 0;
    let settled = false;

    const settle = (outcome: StartupOutcome, answer?: Buffer): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("end", onGone);
      socket.off("close", onGone);
      if (answer && !socket.destroyed && socket.writable) {
        // Flushed, then closed: the client reads the error before it sees the end.
        socket.end(answer, () => socket.destroy());
      } else {
        socket.destroy();
      }
      resolve(outcome);
    };

    const onData = (chunk: Buffer): void => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      while (!settled && buffered.length >= 4) {
        const len = buffered.readInt32BE(0);
        if (len < 8 || len > MAX_STARTUP_PACKET) return settle("invalid");
        if (buffered.length < len) return;
        const code = buffered.readInt32BE(4);
        buffered = buffered.subarray(len);
        if (code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE) {
          if (++negotiations > MAX_NEGOTIATIONS) return settle("invalid");
          socket.write(NO_ENCRYPTION);
          continue;
        }
        if (code === CANCEL_REQUEST_CODE) return settle("cancel-request");
        return settle("answered", errorResponse({ ...error, severity: error.severity ?? "FATAL" }));
      }
    };
    const onGone = (): void => settle("closed");
    const timer = setTimeout(() => settle("timeout"), opts.timeoutMs);

    if (socket.destroyed || !socket.readable) return settle("closed");
    socket.on("data", onData);
    socket.once("end", onGone);
    socket.once("close", onGone);
    socket.resume();
  });
}
