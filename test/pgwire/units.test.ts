// Pure pieces: SCRAM against RFC 7677's worked example, verifier format,
// SASLprep, placeholder finding and literal binding, SET client_encoding.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import pino from "pino";
import { PgWireError, makeScramVerifier, parseScramVerifier, type PgWireLogger } from "../../src/pgwire/index.js";
import { ScramExchange, saslprep, scramVerifierWithSalt } from "../../src/pgwire/scram.js";
import { bindTemplate, clientEncodingCommand, parsePlaceholders, placeholderCount, quoteLiteral } from "../../src/pgwire/sql.js";

describe("SCRAM-SHA-256", () => {
  // RFC 7677 section 3: user "user", password "pencil".
  const clientFirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
  const serverNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
  const nonce = `rOprNGfwEbeRWgbNEkqO${serverNonce}`;
  const verifier = () => parseScramVerifier(scramVerifierWithSalt("pencil", Buffer.from("W22ZaJ0SNY7soEsUEjb6gQ==", "base64"), 4096))!;
  const clientFinal = `c=biws,r=${nonce},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=`;

  test("RFC 7677's exchange, byte for byte", () => {
    const ex = new ScramExchange("user", verifier(), serverNonce);
    assert.equal(ex.start(clientFirst), `r=${nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`);
    assert.equal(ex.finish(clientFinal), "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
  });

  test("a wrong proof, an unknown user (mock verifier), a tampered nonce or channel-binding attribute", () => {
    const wrong = new ScramExchange("user", verifier(), serverNonce);
    wrong.start(clientFirst);
    assert.equal(wrong.finish(clientFinal.replace("p=dH", "p=eH")), undefined);

    const unknown = new ScramExchange("ghost", undefined, serverNonce);
    const first = unknown.start(clientFirst);
    // The mock salt is stable per user name, so probing cannot tell users apart by it.
    assert.equal(first, new ScramExchange("ghost", undefined, serverNonce).start(clientFirst));
    assert.match(first, /,s=[A-Za-z0-9+/=]+,i=4096$/);
    assert.equal(unknown.finish(clientFinal), undefined);

    const nonceEx = new ScramExchange("user", verifier(), serverNonce);
    nonceEx.start(clientFirst);
    assert.throws(() => nonceEx.finish(clientFinal.replace(",r=rOpr", ",r=xOpr")), /malformed SCRAM message/);

    const cb = new ScramExchange("user", verifier(), serverNonce);
    cb.start(clientFirst);
    assert.throws(() => cb.finish(clientFinal.replace("c=biws", "c=eSws")), (e: PgWireError) => e.code === "08P01");
  });

  test("gs2 header: n and y accepted, p refused with a hint, authzid refused", () => {
    assert.doesNotThrow(() => new ScramExchange("u", verifier()).start("y,,n=,r=abc"));
    assert.throws(() => new ScramExchange("u", verifier()).start("p=tls-server-end-point,,n=,r=abc"), (e: PgWireError) => /channel_binding/.test(e.hint ?? ""));
    assert.throws(() => new ScramExchange("u", verifier()).start("n,a=admin,n=,r=abc"), /authorization identity/);
    assert.throws(() => new ScramExchange("u", verifier()).start("n,,n=,r="), /malformed/);
    assert.throws(() => new ScramExchange("u", verifier()).start("n,,r=abc"), /malformed/);
  });

  test("makeScramVerifier produces PostgreSQL's format; parse rejects others", () => {
    const v = makeScramVerifier("x", 1234);
    assert.match(v, /^SCRAM-SHA-256\$1234:[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=$/);
    assert.notEqual(makeScramVerifier("x"), makeScramVerifier("x"), "salted");
    assert.equal(parseScramVerifier(v)?.iterations, 1234);
    for (const bad of ["md5abcdef", "plain", "SCRAM-SHA-256$0:AAAA$AAAA:AAAA", v.replace(/:[^:]+$/, ":short")]) assert.equal(parseScramVerifier(bad), undefined, bad);
    assert.throws(() => makeScramVerifier("x", 0), RangeError);
  });

  test("SASLprep: ASCII as is, mapping and NFKC for the rest, raw when prohibited", () => {
    assert.equal(saslprep("pa ss\tword"), "pa ss\tword");
    assert.equal(saslprep("I\u00ADX"), "IX");
    assert.equal(saslprep("\u00AA"), "a");
    assert.equal(saslprep("\u2168"), "IX");
    assert.equal(saslprep("a\u00A0b"), "a b");
    assert.equal(saslprep("\u00E9\u0007"), "\u00E9\u0007");
  });
});

describe("parameter placeholders and literals", () => {
  test("$n outside literals, identifiers, comments and dollar quotes", () => {
    const sql = `select $1, '$2', "$3", $$ $4 $$, $t$ $5 $t$, a$6, E'\\' $7', '' || $8 -- $9\n, /* $10 /* $11 */ */ $12, ''''$13`;
    const t = parsePlaceholders(sql);
    assert.deepEqual(t.filter((p) => typeof p === "number"), [1, 8, 12, 13]);
    assert.equal(placeholderCount(t), 13);
    assert.equal(t.map((p) => (typeof p === "number" ? `$${p}` : p)).join(""), sql);
  });

  test("binding quotes values, NULL for null; NUL bytes are refused", () => {
    const t = parsePlaceholders("select $2, $1, $1");
    assert.equal(bindTemplate(t, ["it's", null]), "select NULL, 'it''s', 'it''s'");
    assert.equal(quoteLiteral("a\\b"), "'a\\b'");
    assert.throws(() => quoteLiteral("a\0b"), (e: PgWireError) => e.code === "22021");
    assert.throws(() => bindTemplate(t, ["x"]), (e: PgWireError) => e.code === "42P02");
  });

  test("SET client_encoding is answered by the wire layer", () => {
    for (const ok of ["set client_encoding to 'UTF8'", "SET client_encoding = 'utf-8';", "set names 'unicode'", "reset client_encoding", "SET SESSION client_encoding TO DEFAULT"]) {
      assert.ok(clientEncodingCommand(ok), ok);
    }
    assert.throws(() => clientEncodingCommand("set client_encoding to 'LATIN1'"), (e: PgWireError) => e.code === "22023");
    assert.equal(clientEncodingCommand("set search_path = x"), undefined);
    assert.equal(clientEncodingCommand("set client_encoding to 'UTF8'; select 1"), undefined);
  });
});

test("a pino logger fits PgWireLogger", () => {
  const logger: PgWireLogger = pino({ level: "silent" });
  logger.warn({ user: "x" }, "typed");
});
