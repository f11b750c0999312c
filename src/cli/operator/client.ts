// One gRPC client of the sidecar's Cluster service per command invocation.
// Credentials are built (and the TLS files read) here, so a bad file is a
// usage error before any call; the caller closes the client when done.
import { Cluster } from "../../gen/pgraft/v1/client_pb.js";
import { createClient, type ClientOf } from "../../transport/grpc-service.js";
import { TlsConfigError, clientCredentials } from "../../transport/tls.js";
import type { CommonSettings } from "./common-options.js";
import { UsageError } from "./errors.js";

export type ClusterMethods = ClientOf<typeof Cluster>;

export interface ClusterConnection {
  readonly methods: ClusterMethods;
  close(): void;
}

export function connect(settings: Pick<CommonSettings, "endpoint" | "tls">): ClusterConnection {
  let credentials;
  try {
    credentials = clientCredentials(settings.tls);
  } catch (e) {
    if (e instanceof TlsConfigError) throw new UsageError([e.message]);
    throw e;
  }
  const client = createClient(Cluster, settings.endpoint, credentials);
  return { methods: client.methods, close: () => client.close() };
}
