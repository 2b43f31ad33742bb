/**
 * advantage-client: TypeScript client of advantage-service (advantage.v1 over gRPC).
 * See README.md and ../../proto/README.md.
 */
export {
  AdvantageClient,
  channelTarget,
  DEFAULT_MAX_MESSAGE_MB,
  DEFAULT_SERVICE_CONFIG,
  MAX_CHUNK_BYTES,
  tlsCredentials,
  type CallOptions,
  type ClientOptions,
  type ComputeAdvantageArgs,
  type ComputeLossArgs,
  type GetParametersOptions,
  type ReadOptions,
  type SetParametersOptions,
  type TlsOptions,
} from "./client";
export { AdvantageServiceError, Status } from "./errors";
export {
  buildOffPolicyLoss,
  OFFPOLICY_LOSSES,
  type ComputeOffPolicyLossArgs,
  type OffPolicyKnobs,
  type OffPolicyLossKind,
  type OffPolicyResult,
} from "./offpolicy";
export {
  compactObservations,
  estimatorFrom,
  ESTIMATORS,
  KNOBS,
  LOSSES,
  LOSS_KNOBS,
  type Estimator,
  type EstimatorKnobs,
  type EstimatorName,
  type Form,
  type LossKind,
  type LossOptions,
  type TrajectoryArgs,
} from "./request";
export {
  decodeTensor,
  DTYPE_CODES,
  dtypeOf,
  encodeTensor,
  isTensor,
  itemsize,
  numel,
  tensor,
  type DType,
  type Tensor,
  type TensorData,
  type WireTensor,
} from "./tensor";
export { findProto, loadProto } from "./proto";
export type {
  ActionSpec,
  AdvantageResult,
  Distribution,
  InputSpec,
  LossResult,
  ModelInfo,
  Parameters,
  SetParametersResult,
  Timing,
} from "./types";
export {
  buildDreamerStepRequest,
  dreamerResultFromWire,
  type DreamerImagination,
  type DreamerReplay,
  type DreamerResult,
  type DreamerStepArgs,
  type DreamerV3ActorKnobs,
  type DreamerV3Knobs,
  type DreamerV3ModelKnobs,
  type DreamerV3ValueKnobs,
} from "./dreamer";
