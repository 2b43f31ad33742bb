package dev.advantageservice.client;

import static dev.advantageservice.client.ClientTest.check;
import static dev.advantageservice.client.ClientTest.close;
import static dev.advantageservice.client.ClientTest.demo;

import dev.advantageservice.client.Results.AdvantageResult;
import dev.advantageservice.v1.TrajectoryForm;
import java.util.Arrays;

/**
 * The trajectory form a request is sent in (run by ClientTest): Form.AUTO (the default) sends the
 * compact form when the observations chain and the full form otherwise; both give the server's
 * same numbers.
 *
 * <p>The data: two rows of five steps, 4-dim float32 observations. Row 0 terminates after step 1;
 * row 1 is truncated after steps 2 and 4 (done, not terminated). Within an episode
 * next_observation[t] is observation[t + 1]; after a done step it is the episode's final
 * observation, which differs from observation[t + 1] (the next episode's first): that is allowed,
 * the compact form keeps the truncated ones.
 */
final class FormTest {
  static final int ROWS = 2;
  static final int STEPS = 5;
  static final int OBS = 4;
  static final boolean[] DONE = {false, true, false, false, false, false, false, true, false, true};
  static final boolean[] TERMINATED = {false, true, false, false, false, false, false, false, false, false};

  private FormTest() {}

  /**
   * The observation o[row][t] (t = STEPS: after the last step); final ones (the observation an
   * episode ended in) are negative, so they differ from every o.
   */
  static float[] state(int row, int t, boolean last) {
    float[] out = new float[OBS];
    for (int j = 0; j < OBS; j++) {
      out[j] = (100 * row + 10 * t + j) / 8f;
      if (last) {
        out[j] = -out[j] - 1;
      }
    }
    return out;
  }

  static float[] concat(float[]... parts) {
    float[] out = new float[Arrays.stream(parts).mapToInt(p -> p.length).sum()];
    int at = 0;
    for (float[] p : parts) {
      System.arraycopy(p, 0, out, at, p.length);
      at += p.length;
    }
    return out;
  }

  /** observation[r][t] = o[r][t]. */
  static float[] observations() {
    float[] out = new float[0];
    for (int r = 0; r < ROWS; r++) {
      for (int t = 0; t < STEPS; t++) {
        out = concat(out, state(r, t, false));
      }
    }
    return out;
  }

  /** next_observation[r][t] = o[r][t + 1], or the final observation at a done step. */
  static float[] nextObservations() {
    float[] out = new float[0];
    for (int r = 0; r < ROWS; r++) {
      for (int t = 0; t < STEPS; t++) {
        out = concat(out, state(r, t + 1, DONE[r * STEPS + t]));
      }
    }
    return out;
  }

  static Trajectory.Builder trajectory(float[] observation, float[] next, Trajectory.Form form) {
    float[] rewards = new float[ROWS * STEPS];
    for (int i = 0; i < rewards.length; i++) {
      rewards[i] = i % 3 - 0.5f;
    }
    Trajectory.Builder b = Trajectory.builder()
        .reward(Tensor.float32(rewards, ROWS, STEPS))
        .done(Tensor.bools(DONE, ROWS, STEPS))
        .terminated(Tensor.bools(TERMINATED, ROWS, STEPS))
        .observation("observation", Tensor.float32(observation, ROWS, STEPS, OBS))
        .nextObservation("observation", Tensor.float32(next, ROWS, STEPS, OBS));
    return form == null ? b : b.form(form);
  }

  static dev.advantageservice.v1.Trajectory wire(Trajectory.Builder b) {
    return new AdvantageRequest(b.build()).toProto().getTrajectory();
  }

  static void requireTensor(String what, dev.advantageservice.v1.Tensor got, Tensor want) {
    check(got.equals(want.toProto(what)), what + ": got " + got.getDtype() + " " + got.getShapeList()
        + " (" + got.getRawData().size() + " bytes), want " + want);
  }

  /**
   * What the server answers for two trajectories: GAE and TD(1) advantages, value targets and the
   * values it computed, and an A2C loss (tolerance 1e-6, as the Python client's
   * compact-equals-full test).
   */
  static void sameAnswers(Trajectory.Builder a, Trajectory.Builder b) {
    try (AdvantageClient client = demo()) {
      for (Estimator estimator : new Estimator[] {Estimator.gae(), Estimator.td1()}) {
        AdvantageResult x = client.computeAdvantage(new AdvantageRequest(a.build()).estimator(estimator));
        AdvantageResult y = client.computeAdvantage(new AdvantageRequest(b.build()).estimator(estimator));
        check(x.stateValue() != null && y.stateValue() != null, "the server computed no values");
        String what = estimator.getClass().getSimpleName() + " ";
        close(what + "advantage", x.advantage().toDoubles(), y.advantage().toDoubles(), 0, 1e-6);
        close(what + "value_target", x.valueTarget().toDoubles(), y.valueTarget().toDoubles(), 0, 1e-6);
        close(what + "state_value", x.stateValue().toDoubles(), y.stateValue().toDoubles(), 0, 1e-6);
        close(what + "next_state_value", x.nextStateValue().toDoubles(),
            y.nextStateValue().toDoubles(), 0, 1e-6);
      }
      long[] actions = new long[ROWS * STEPS];
      float[] logProbs = new float[ROWS * STEPS];
      for (int i = 0; i < actions.length; i++) {
        actions[i] = i % 2;
        logProbs[i] = -0.7f;
      }
      double[] losses = new double[2];
      Trajectory.Builder[] both = {a, b};
      for (int i = 0; i < 2; i++) {
        Trajectory t = both[i].action(Tensor.int64(actions, ROWS, STEPS))
            .sampleLogProb(Tensor.float32(logProbs, ROWS, STEPS)).build();
        losses[i] = client.computeLoss(new LossRequest(t).loss(Loss.a2c())).loss();
      }
      close("a2c loss", new double[] {losses[0]}, new double[] {losses[1]}, 0, 1e-6);
    }
  }

  /**
   * Chained observations: the default form sends the compact form, built here by hand from the
   * layout of proto/README.md (each row's five observations, then its last next observation; the
   * next observations of the two truncated steps), and the answers equal the full form's.
   */
  static void autoFormSendsCompactWhenObservationsChain() {
    float[] observation = observations();
    float[] next = nextObservations();
    dev.advantageservice.v1.Trajectory w = wire(trajectory(observation, next, null));
    check(w.getForm() == TrajectoryForm.TRAJECTORY_FORM_COMPACT, "form " + w.getForm() + ", want compact");
    float[] compact = new float[0];
    for (int r = 0; r < ROWS; r++) {
      compact = concat(compact, Arrays.copyOfRange(observation, r * STEPS * OBS, (r + 1) * STEPS * OBS),
          // the last step's next observation: row 0's step 4 is not done, row 1's is (truncated)
          state(r, STEPS, r == 1));
    }
    float[] truncated = concat(state(1, 3, true), state(1, 5, true)); // steps [1, 2] and [1, 4]
    requireTensor("observation", w.getObservationOrThrow("observation"),
        Tensor.float32(compact, ROWS, STEPS + 1, OBS));
    requireTensor("next_observation", w.getNextObservationOrThrow("observation"),
        Tensor.float32(truncated, 2, OBS));
    check(w.equals(wire(trajectory(observation, next, Trajectory.Form.COMPACT))),
        "Form.AUTO and Form.COMPACT build different requests from chained observations");
    check(w.equals(wire(trajectory(observation, next, Trajectory.Form.AUTO))), "explicit AUTO differs");
    dev.advantageservice.v1.Trajectory full = wire(trajectory(observation, next, Trajectory.Form.FULL));
    check(full.getForm() == TrajectoryForm.TRAJECTORY_FORM_FULL
        && full.getObservationOrThrow("observation").getShapeList().equals(
            java.util.List.of((long) ROWS, (long) STEPS, (long) OBS)), "Form.FULL sent " + full);
    sameAnswers(trajectory(observation, next, null), trajectory(observation, next, Trajectory.Form.FULL));
  }

  /**
   * A step that is not done whose next observation differs from the following observation: the
   * compact form would lose it, so the default form sends the full form, as given; same numbers
   * as an explicit Form.FULL. Without next observations (or with values only) it is full too.
   */
  static void autoFormSendsFullWhenObservationsDoNotChain() {
    float[] observation = observations();
    float[] next = nextObservations();
    next[(0 * STEPS + 2) * OBS + 1] += 0.25f; // row 0, step 2 (not done): o[0][3] differs
    dev.advantageservice.v1.Trajectory w = wire(trajectory(observation, next, null));
    check(w.getForm() == TrajectoryForm.TRAJECTORY_FORM_FULL, "form " + w.getForm() + ", want full");
    requireTensor("observation", w.getObservationOrThrow("observation"),
        Tensor.float32(observation, ROWS, STEPS, OBS));
    requireTensor("next_observation", w.getNextObservationOrThrow("observation"),
        Tensor.float32(next, ROWS, STEPS, OBS));
    check(w.equals(wire(trajectory(observation, next, Trajectory.Form.FULL))),
        "Form.AUTO on unchained observations differs from Form.FULL");
    sameAnswers(trajectory(observation, next, null), trajectory(observation, next, Trajectory.Form.FULL));

    float[] chained = observations();
    Trajectory.Builder withoutNext = Trajectory.builder()
        .reward(Tensor.float32(new float[ROWS * STEPS], ROWS, STEPS))
        .done(Tensor.bools(DONE, ROWS, STEPS))
        .observation("observation", Tensor.float32(chained, ROWS, STEPS, OBS));
    check(wire(withoutNext).getForm() == TrajectoryForm.TRAJECTORY_FORM_FULL, "no next observation: not full");
    check(new AdvantageRequest(ClientTest.small(2, 4)).toProto().getTrajectory().getForm()
        == TrajectoryForm.TRAJECTORY_FORM_FULL, "values only: not full");
  }

  /**
   * The agent layout (nAgents 2: observations [B, T, 2, 4], rewards [B, T, 2], a shared done):
   * chained observations, yet the default form sends the full form, with n_agents; the server
   * answers it as it answers an explicit Form.FULL.
   */
  static void autoFormWithAgentsSendsFull() {
    int agents = 2;
    float[] observation = new float[0];
    float[] next = new float[0];
    float[] rewards = new float[ROWS * STEPS * agents];
    for (int r = 0; r < ROWS; r++) {
      for (int s = 0; s < STEPS; s++) {
        for (int a = 0; a < agents; a++) {
          observation = concat(observation, state(r + 2 * a, s, false));
          next = concat(next, state(r + 2 * a, s + 1, DONE[r * STEPS + s]));
          rewards[(r * STEPS + s) * agents + a] = a - (s % 2) / 2f;
        }
      }
    }
    Trajectory.Form[] forms = {Trajectory.Form.AUTO, Trajectory.Form.FULL};
    double[][] answers = new double[2][];
    try (AdvantageClient client = demo()) {
      for (int i = 0; i < 2; i++) {
        Trajectory t = Trajectory.builder()
            .reward(Tensor.float32(rewards, ROWS, STEPS, agents))
            .done(Tensor.bools(DONE, ROWS, STEPS))
            .observation("observation", Tensor.float32(observation, ROWS, STEPS, agents, OBS))
            .nextObservation("observation", Tensor.float32(next, ROWS, STEPS, agents, OBS))
            .nAgents(agents)
            .form(forms[i])
            .build();
        dev.advantageservice.v1.Trajectory w = new AdvantageRequest(t).toProto().getTrajectory();
        check(w.getForm() == TrajectoryForm.TRAJECTORY_FORM_FULL && w.getNAgents() == agents,
            forms[i] + ": form " + w.getForm() + ", n_agents " + w.getNAgents() + "; want full, 2");
        requireTensor("observation", w.getObservationOrThrow("observation"),
            Tensor.float32(observation, ROWS, STEPS, agents, OBS));
        AdvantageResult result = client.computeAdvantage(new AdvantageRequest(t));
        check(Arrays.equals(result.advantage().shape(), new long[] {ROWS, STEPS, agents}),
            "advantage shape " + Arrays.toString(result.advantage().shape()));
        answers[i] = concatDoubles(result.advantage().toDoubles(), result.valueTarget().toDoubles());
      }
    }
    close("advantage and value_target", answers[0], answers[1], 0, 0);
  }

  static double[] concatDoubles(double[] a, double[] b) {
    double[] out = Arrays.copyOf(a, a.length + b.length);
    System.arraycopy(b, 0, out, a.length, b.length);
    return out;
  }

  /**
   * An explicit Form.COMPACT on observations that do not chain is refused before anything is sent,
   * naming the key and the step; on chained full-form ones it builds the compact form (above).
   */
  static void compactFormRefusesObservationsThatDoNotChain() {
    float[] observation = observations();
    float[] next = nextObservations();
    next[(1 * STEPS + 3) * OBS] = 42; // row 1, step 3 (not done)
    Trajectory t = trajectory(observation, next, Trajectory.Form.COMPACT).build();
    String[] want = {"trajectory.next_observation['observation']", "step [1, 3]", "Form.FULL"};
    Runnable[] attempts = {
      () -> new AdvantageRequest(t).toProto(),
      () -> new LossRequest(t).toProto(),
      () -> {
        try (AdvantageClient client = demo()) {
          client.computeAdvantage(new AdvantageRequest(t));
        }
      },
    };
    for (Runnable attempt : attempts) {
      try {
        attempt.run();
        throw new ClientTest.Failure("unchained observations were sent in the compact form");
      } catch (IllegalArgumentException e) {
        for (String fragment : want) {
          check(e.getMessage().contains(fragment), "error \"" + e.getMessage() + "\" lacks \"" + fragment + "\"");
        }
      }
    }
    // A next observation of another shape is named too.
    Trajectory other = trajectory(observation, next, Trajectory.Form.COMPACT)
        .nextObservation("observation", Tensor.float32(Arrays.copyOf(next, OBS), 1, OBS)).build();
    try {
      new AdvantageRequest(other).toProto();
      throw new ClientTest.Failure("a mismatched next observation was accepted");
    } catch (IllegalArgumentException e) {
      check(e.getMessage().contains("trajectory.next_observation['observation']: expected"), e.getMessage());
    }
  }
}
