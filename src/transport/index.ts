// The transport's public surface: Raft between sidecars (GrpcPeerTransport and
// the RaftPeer service), credentials, the generic service adapter, and the
// test-only fault hook.
export { GrpcPeerTransport, PEER_CHANNEL_OPTIONS, type GrpcPeerTransportOptions } from "./peer-transport.js";
export { PEER_SERVER_OPTIONS, RaftPeerService, type RaftPeerServiceOptions, type TransportLogger } from "./peer-server.js";
export { newTransportStats, type RefusalReason, type TransportStats } from "./stats.js";
export { TlsConfigError, clientCredentials, loadMtlsFiles, serverCredentials, type MtlsFiles, type TlsConfig } from "./tls.js";
export {
  addService,
  createClient,
  isServiceError,
  methodPath,
  serviceDefinition,
  statusError,
  type CallOptions,
  type ClientOf,
  type HandlersOf,
  type ServiceClient,
  type ServiceHandlers,
  type TypedClient,
} from "./grpc-service.js";
export { FAULTS_DISABLED_MESSAGE, FaultInjector, FaultsDisabledError, faultsEnabled, registerFaultsService, type PeerFaults } from "./faults.js";
export { WireFormatError, messageFromWire, messageToWire } from "./convert.js";
