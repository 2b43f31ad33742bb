package dev.advantageservice.client;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;

/**
 * A failed RPC: the gRPC status code and the server's message, which names the offending field
 * (e.g. {@code trajectory.reward}; see proto/README.md, "Errors").
 */
public final class AdvantageException extends RuntimeException {
  private final Status.Code code;
  private final String details;

  public AdvantageException(Status.Code code, String details, Throwable cause) {
    super(code + ": " + details, cause);
    this.code = code;
    this.details = details;
  }

  static AdvantageException of(StatusRuntimeException e) {
    Status status = e.getStatus();
    String details = status.getDescription() == null ? "" : status.getDescription();
    return new AdvantageException(status.getCode(), details, e);
  }

  /** The status code, e.g. {@code Status.Code.INVALID_ARGUMENT}. */
  public Status.Code code() {
    return code;
  }

  /** The canonical name, e.g. "INVALID_ARGUMENT". */
  public String codeName() {
    return code.name();
  }

  /** The server's message. */
  public String details() {
    return details;
  }
}
