package dev.advantageservice.client;

import dev.advantageservice.v1.DType;
import java.util.Arrays;
import java.util.Map;
import java.util.TreeMap;

/**
 * The compact observation form (proto/README.md, "the two forms"), built from full-form data.
 *
 * <p>Full form: observation and next_observation both [*B, T, *obs]. Compact form: observation
 * [*B, T + 1, *obs] (the T observations before each step plus next_observation of the last step)
 * and next_observation [K, *obs], the next observations of the K truncated steps (done and not
 * terminated) in row-major order of their [*B, T] index. It drops next_observation[t] of every
 * step that is not done, so it says the same only where those equal observation[t + 1] ("the
 * observations chain"); at a done step the next observation is the episode's last and
 * observation[t + 1] the next episode's first, and the compact form keeps what it needs there.
 * The server answers both forms with the same numbers; the compact one is about half the
 * observation bytes.
 */
final class CompactForm {
  /** Observations in the layout of the form they are sent in. */
  record Observations(Trajectory.Form form, Map<String, Tensor> observation, Map<String, Tensor> next) {}

  private final long[] shape; // done's shape [*B, T]
  private final int rows; // prod(*B)
  private final int steps; // T
  private final boolean[] done; // [rows * steps], row-major

  private CompactForm(Tensor done) {
    this.shape = done.shape();
    this.steps = (int) shape[shape.length - 1];
    this.rows = (int) (done.numElements() / steps);
    byte[] raw = done.raw();
    this.done = new boolean[raw.length];
    for (int i = 0; i < raw.length; i++) {
      this.done[i] = raw[i] != 0;
    }
  }

  /** The grid of a well-formed done (bool, [*B, T] with T >= 1), else null. */
  private static CompactForm grid(Tensor done) {
    if (done == null || done.dtype() != DType.DTYPE_BOOL || done.shape().length == 0) {
      return null;
    }
    try {
      done.check("trajectory.done");
    } catch (IllegalArgumentException e) {
      return null;
    }
    return done.shape()[done.shape().length - 1] == 0 ? null : new CompactForm(done);
  }

  /** Done and not terminated, [rows * steps]; null terminated means terminated = done. */
  private boolean[] truncated(Tensor terminated) {
    boolean[] out = new boolean[done.length];
    if (terminated == null) {
      return out;
    }
    terminated.check("trajectory.terminated");
    if (terminated.dtype() != DType.DTYPE_BOOL || !Arrays.equals(terminated.shape(), shape)) {
      throw new IllegalArgumentException("trajectory.terminated: expected DTYPE_BOOL "
          + Arrays.toString(shape) + " (done's shape), got " + terminated.dtype() + " "
          + Arrays.toString(terminated.shape()));
    }
    byte[] raw = terminated.raw();
    for (int i = 0; i < out.length; i++) {
      out[i] = done[i] && raw[i] == 0;
    }
    return out;
  }

  private static boolean wellFormed(Tensor t) {
    try {
      t.check("");
      return true;
    } catch (IllegalArgumentException e) {
      return false;
    }
  }

  /** Whether observation (well-formed) has the full form's leading [*B, T]. */
  private boolean isFullForm(Tensor observation) {
    long[] s = observation.shape();
    return s.length >= shape.length && Arrays.equals(Arrays.copyOf(s, shape.length), shape);
  }

  private int rowBytes(Tensor observation) {
    return (int) (observation.numElements() / ((long) rows * steps)) * Tensor.itemsize(observation.dtype());
  }

  /** Throws unless next (one key) is a well-formed next observation of observation's shape. */
  private static void checkPair(String key, Tensor observation, Tensor next) {
    String field = "trajectory.next_observation['" + key + "']";
    if (next == null) {
      throw new IllegalArgumentException(
          field + ": the compact form built from full-form observations needs it");
    }
    next.check(field);
    if (next.dtype() != observation.dtype() || !Arrays.equals(next.shape(), observation.shape())) {
      throw new IllegalArgumentException(field + ": expected the observation's " + observation.dtype()
          + " " + Arrays.toString(observation.shape()) + ", got " + next.dtype() + " "
          + Arrays.toString(next.shape()));
    }
  }

  /**
   * The first step [row, t] that is not done and whose next observation differs (bit for bit)
   * from observation[t + 1], or null when the observations chain.
   */
  private int[] brokenChain(Tensor observation, Tensor next) {
    int size = rowBytes(observation);
    byte[] o = observation.raw();
    byte[] n = next.raw();
    for (int r = 0; r < rows; r++) {
      for (int t = 0; t + 1 < steps; t++) {
        int i = r * steps + t;
        if (!done[i] && !Arrays.equals(n, i * size, (i + 1) * size, o, (i + 1) * size, (i + 2) * size)) {
          return new int[] {r, t};
        }
      }
    }
    return null;
  }

  /**
   * One key's compact pair: observation [*B, T + 1, *obs] (each row's T observations, then its
   * last step's next observation) and next_observation [K, *obs] (the truncated steps').
   */
  private Tensor[] compact(Tensor observation, Tensor next, boolean[] truncated) {
    int size = rowBytes(observation);
    byte[] o = observation.raw();
    byte[] n = next.raw();
    byte[] raw = new byte[rows * (steps + 1) * size];
    for (int r = 0; r < rows; r++) {
      int from = r * steps * size;
      int to = r * (steps + 1) * size;
      System.arraycopy(o, from, raw, to, steps * size);
      System.arraycopy(n, from + (steps - 1) * size, raw, to + steps * size, size);
    }
    long[] full = observation.shape();
    long[] compactShape = full.clone();
    compactShape[shape.length - 1]++;
    int k = 0;
    for (boolean cut : truncated) {
      k += cut ? 1 : 0;
    }
    byte[] kept = new byte[k * size];
    int j = 0;
    for (int i = 0; i < truncated.length; i++) {
      if (truncated[i]) {
        System.arraycopy(n, i * size, kept, j++ * size, size);
      }
    }
    long[] nextShape = new long[full.length - shape.length + 1];
    nextShape[0] = k;
    System.arraycopy(full, shape.length, nextShape, 1, full.length - shape.length);
    return new Tensor[] {
      new Tensor(observation.dtype(), compactShape, raw), new Tensor(observation.dtype(), nextShape, kept)
    };
  }

  /**
   * Whether Form.AUTO may send the compact form: no agent layout, at least one observation, every
   * observation key full-form with a next observation of the same key, shape and dtype, a
   * well-formed done (and terminated), and observations that chain.
   */
  private static boolean chains(
      Map<String, Tensor> observation, Map<String, Tensor> next, Tensor done, Tensor terminated, int nAgents) {
    if (nAgents != 0 || observation.isEmpty() || !observation.keySet().equals(next.keySet())) {
      return false;
    }
    CompactForm g = grid(done);
    if (g == null) {
      return false;
    }
    try {
      g.truncated(terminated);
      for (Map.Entry<String, Tensor> e : observation.entrySet()) {
        Tensor o = e.getValue();
        Tensor n = next.get(e.getKey());
        if (!wellFormed(o) || !g.isFullForm(o)) {
          return false;
        }
        checkPair(e.getKey(), o, n);
        if (g.brokenChain(o, n) != null) {
          return false;
        }
      }
    } catch (IllegalArgumentException e) {
      return false;
    }
    return true;
  }

  /**
   * The compact form of every full-form observation key (checked: IllegalArgumentException names
   * the key and the first step that does not chain); keys already compact (or of any other shape,
   * which the server judges) are sent as given, as is everything with an agent layout.
   */
  private static Observations toCompact(
      Map<String, Tensor> observation, Map<String, Tensor> next, Tensor done, Tensor terminated, int nAgents) {
    CompactForm g = nAgents != 0 || observation.isEmpty() ? null : grid(done);
    if (g == null) { // agents, no observation, a malformed done (the server names it) or T = 0
      return new Observations(Trajectory.Form.COMPACT, observation, next);
    }
    Map<String, Tensor> observations = new TreeMap<>(observation);
    Map<String, Tensor> nexts = new TreeMap<>(next);
    boolean[] truncated = null;
    for (Map.Entry<String, Tensor> e : observation.entrySet()) {
      String key = e.getKey();
      Tensor o = e.getValue();
      if (!wellFormed(o) || !g.isFullForm(o)) {
        continue; // compact already, or malformed: sent as given
      }
      Tensor n = next.get(key);
      checkPair(key, o, n);
      int[] step = g.brokenChain(o, n);
      if (step != null) {
        throw new IllegalArgumentException("trajectory.next_observation['" + key + "']: the compact "
            + "form needs next_observation[t] == observation[t + 1] wherever step t is not done; "
            + "they differ at step " + Arrays.toString(step) + " ([*B, T] index). Send Form.FULL "
            + "(or Form.AUTO) for such data");
      }
      if (truncated == null) {
        truncated = g.truncated(terminated);
      }
      Tensor[] pair = g.compact(o, n, truncated);
      observations.put(key, pair[0]);
      nexts.put(key, pair[1]);
    }
    return new Observations(Trajectory.Form.COMPACT, observations, nexts);
  }

  /**
   * The form a trajectory is sent in and its observations in that form's layout: AUTO becomes
   * COMPACT when the observations chain, else FULL; COMPACT converts full-form observations;
   * FULL sends them as given.
   */
  static Observations resolve(
      Trajectory.Form form,
      Map<String, Tensor> observation,
      Map<String, Tensor> next,
      Tensor done,
      Tensor terminated,
      int nAgents) {
    return switch (form) {
      case FULL -> new Observations(Trajectory.Form.FULL, observation, next);
      case COMPACT -> toCompact(observation, next, done, terminated, nAgents);
      case AUTO -> chains(observation, next, done, terminated, nAgents)
          ? toCompact(observation, next, done, terminated, nAgents)
          : new Observations(Trajectory.Form.FULL, observation, next);
    };
  }
}
