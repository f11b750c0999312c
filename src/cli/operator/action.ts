// The life of one operator command: resolve the common options, let the
// command check its arguments and make its calls, print, and map whatever
// failed to one line on stderr and an exit code. Every error is handled here
// (nothing reaches the program's own catch), and the gRPC client is closed
// before the action returns, so the process exits by itself.
import type { DescMessage, JsonValue, MessageShape } from "@bufbuild/protobuf";
import type { Command } from "commander";
import type { CallOptions } from "../../transport/grpc-service.js";
import { connect, type ClusterConnection, type ClusterMethods } from "./client.js";
import { commandPath } from "./commander-setup.js";
import { resolveCommonOptions, type CommonSettings } from "./common-options.js";
import { EXIT_REQUEST_FAILED, EXIT_USAGE, RequestError, UsageError, describeRequestError } from "./errors.js";
import { jsonDocument, messageJson } from "./output.js";

export interface ActionContext {
  readonly settings: CommonSettings;
  readonly clusterId: string;
  /** --json was given: print one JSON document and nothing else on stdout. */
  readonly json: boolean;
  /** One call to the sidecar; a failure becomes a RequestError named `what` ("add node 4"). */
  request<T>(what: string, call: (client: ClusterMethods, options: CallOptions) => Promise<T>): Promise<T>;
  /** A response: as JSON with --json, else the lines `human` renders. */
  show<D extends DescMessage>(schema: D, message: MessageShape<D>, human: () => string[]): void;
  /** Like show, for a document assembled by the command. */
  showJson(document: JsonValue, human: () => string[]): void;
  /** An outcome that is no error of the call but not what was asked (key not found, compare failed): stderr, exit 1. */
  fail(message: string): number;
  /** Something the operator should know though the command did what was asked: "pgraft: warning: ..." on stderr (with --json too), exit code unchanged. */
  warn(message: string): void;
}

/** The command's own part: check its arguments, call, print. Returns the exit code (default 0). */
export type ActionBody = (ctx: ActionContext, args: readonly (string | undefined)[], options: Record<string, unknown>) => Promise<number | void>;

const writeOut = (text: string): void => {
  process.stdout.write(text);
};
const writeErr = (line: string): void => {
  process.stderr.write(`pgraft: ${line}\n`);
};

/** A commander action handler running `body` (commander passes the command last). */
export function operatorAction(body: ActionBody): (...actionArgs: unknown[]) => Promise<void> {
  return async (...actionArgs: unknown[]) => {
    const cmd = actionArgs[actionArgs.length - 1] as Command;
    const label = commandPath(cmd);
    const options = cmd.opts<Record<string, unknown>>();
    let settings: CommonSettings | undefined;
    let connection: ClusterConnection | undefined;
    let code = 0;
    try {
      settings = resolveCommonOptions(options, process.env);
      const s = settings;
      const print = (lines: string[]): void => {
        if (lines.length) writeOut(`${lines.join("\n")}\n`);
      };
      const ctx: ActionContext = {
        settings: s,
        clusterId: s.clusterId,
        json: s.json,
        request: async (what, call) => {
          connection ??= connect(s);
          try {
            return await call(connection.methods, { timeoutMs: s.timeoutMs });
          } catch (e) {
            throw new RequestError(what, e);
          }
        },
        show: (schema, message, human) => (s.json ? writeOut(jsonDocument(messageJson(schema, message))) : print(human())),
        showJson: (document, human) => (s.json ? writeOut(jsonDocument(document)) : print(human())),
        fail: (message) => {
          writeErr(message);
          return EXIT_REQUEST_FAILED;
        },
        warn: (message) => writeErr(`warning: ${message}`),
      };
      const args = (cmd.processedArgs as unknown[]).map((a) => (typeof a === "string" ? a : undefined));
      code = (await body(ctx, args, options)) ?? 0;
    } catch (e) {
      if (e instanceof UsageError) {
        writeErr(`${label}: ${e.message}`);
        code = EXIT_USAGE;
      } else if (e instanceof RequestError && settings) {
        writeErr(describeRequestError(e, { endpoint: settings.endpoint, clusterId: settings.clusterId, timeout: settings.timeoutText }));
        code = EXIT_REQUEST_FAILED;
      } else {
        writeErr(`${label}: ${e instanceof Error ? e.message : String(e)}`);
        code = EXIT_REQUEST_FAILED;
      }
    } finally {
      connection?.close();
    }
    if (code !== 0) process.exitCode = code;
  };
}
