package dev.advantageservice.client;

import dev.advantageservice.v1.ModelVersion;
import io.grpc.Context;
import io.grpc.StatusRuntimeException;
import java.util.Iterator;

/**
 * An open WatchModels stream ({@link AdvantageClient#watchModels}): {@link #next} blocks for the
 * next version. Close it when done (try-with-resources).
 */
public final class Watch implements AutoCloseable {
  /** A model's parameter version now. */
  public record Version(String modelName, long parameterVersion) {}

  private final Context.CancellableContext context;
  private final Iterator<ModelVersion> stream;

  Watch(Context.CancellableContext context, Iterator<ModelVersion> stream) {
    this.context = context;
    this.stream = stream;
  }

  /**
   * The next version (blocking). Throws AdvantageException when the stream fails: CANCELLED after
   * {@link #close}, NOT_FOUND for an unknown model.
   */
  public Version next() {
    try {
      ModelVersion message = stream.next();
      return new Version(message.getModelName(), message.getParameterVersion());
    } catch (StatusRuntimeException e) {
      throw AdvantageException.of(e);
    }
  }

  /** Cancels the stream. */
  @Override
  public void close() {
    context.cancel(null);
  }
}
