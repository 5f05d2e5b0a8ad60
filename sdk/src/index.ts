// The netfence.v1 control-plane SDK (@netfence/control-plane-sdk): implement ControlPlaneHooks, start a ControlPlaneServer.
export { ControlPlaneServer } from "./control-plane-server.js";
export type { ControlPlaneHooks, ControlPlaneServerOptions } from "./control-plane-server.js";
export { DaemonHandle, CommandNotConfirmedError } from "./daemon-handle.js";
export type {
  AttachmentInfo,
  AttachmentStatsInfo,
  RuleHitsInfo,
  CidrSpec,
  Command,
  CommandOutcome,
  DaemonInfo,
  DnsDecision,
  DnsMode,
  DnsQuery,
  DnsSpec,
  DomainSpec,
  EstablishedSpec,
  Mode,
  PolicySpec,
  ScopeSpec,
  UnsubscribeReason,
} from "./policy-spec.js";
export type { SdkLogger } from "./logger.js";
