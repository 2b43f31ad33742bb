import { Metadata, status, type ServiceError } from "@grpc/grpc-js";

/** gRPC status codes (re-exported from @grpc/grpc-js), e.g. `Status.INVALID_ARGUMENT`. */
export const Status = status;
export type Status = status;

/**
 * A failed RPC. `code` is the gRPC status (compare with `Status.*`), `codeName` its name
 * (e.g. "INVALID_ARGUMENT"), `details` the server's message (it names the offending field, e.g.
 * `trajectory.reward`; see proto/README.md, "Errors").
 */
export class AdvantageServiceError extends Error {
  readonly code: status;
  readonly codeName: string;
  readonly details: string;
  readonly metadata: Metadata;

  constructor(code: status, details: string, metadata: Metadata = new Metadata()) {
    const codeName = status[code] ?? `STATUS_${code}`;
    super(`${codeName}: ${details}`);
    this.name = "AdvantageServiceError";
    this.code = code;
    this.codeName = codeName;
    this.details = details;
    this.metadata = metadata;
  }

  /** Wrap a grpc-js error (anything with a numeric `code`); other errors are returned as they are. */
  static from(err: unknown): unknown {
    if (err instanceof AdvantageServiceError) return err;
    const e = err as Partial<ServiceError> | null;
    if (e && typeof e === "object" && typeof e.code === "number") {
      const wrapped = new AdvantageServiceError(
        e.code,
        e.details ?? e.message ?? "",
        e.metadata instanceof Metadata ? e.metadata : new Metadata(),
      );
      (wrapped as { cause?: unknown }).cause = err;
      return wrapped;
    }
    return err;
  }
}
