"""Action distributions built from an actor network's raw output, with TorchRL's semantics.

Five kinds, keyed by :class:`DistributionKind` (or its string value):

* ``"categorical"`` — ``params = {"logits": [*B, K]}``; an action is an integer index ``[*B]``.
  Same as ``torch.distributions.Categorical(logits=...)`` used by TorchRL's ``ProbabilisticActor``.
* ``"normal"`` — ``params = {"loc": [*B, A], "scale": [*B, A]}``; independent over the action
  dim, ``log_prob`` and ``entropy`` summed over it. Same as TorchRL's ``IndependentNormal`` with its
  defaults (``tanh_loc=False``, ``event_dim=1``): ``Independent(Normal(loc, scale), 1)``.
* ``"one_hot_categorical"`` — ``params = {"logits": [*B, K]}``; an action is a one-hot row
  ``[*B, K]`` in the logits' dtype (TorchRL's ``OneHotCategorical``).
* ``"bernoulli"`` — ``params = {"logits": [*B, A]}``; an action is ``[*B, A]`` of 0/1 in the
  logits' dtype, independent over A (``Independent(Bernoulli(logits), 1)``).
* ``"tanh_normal"`` — ``params = {"loc", "scale"}`` as above, optional ``"low"``/``"high"``
  (scalar or ``[A]``; default -1 and 1). Same as TorchRL's ``TanhNormal`` with its defaults
  (``tanh_loc=False``, ``safe_tanh=True``, ``event_dims=1``)::

      u ~ N(loc, scale),  a = (high + low)/2 + (high − low)/2 · tanh(u)
      log p(a) = Σ_A [log N(u; loc, scale) − log|da/du|],
      u = atanh(clamp((2a − high − low)/(high − low)))

  tanh is clamped to ±(1 − finfo(dtype).resolution) (TorchRL's "safe" tanh, with its
  straight-through gradients), so stored actions at the bounds keep a finite log-prob.

Entropy (:func:`entropy`) follows TorchRL's PPO/A2C losses: the analytic entropy when the
distribution has one (categorical, normal), else the Monte-Carlo estimate ``−mean_k log p(a_k)``
over ``samples_mc_entropy`` reparameterised draws, each scored at its own pre-tanh value (TorchRL's
``rsample_and_log_prob``). Only ``tanh_normal`` takes the Monte-Carlo path. The estimate draws its
noise from ``generator`` if one is given (so a seeded generator makes it reproducible), else from
torch's global generator exactly as TorchRL does (so ``torch.manual_seed`` reproduces TorchRL's
number).

KL (:func:`kl_divergence`) is analytic for every pair of the same kind and parameters layout —
including ``tanh_normal`` with equal bounds, where KL is invariant under the shared bijection and
equals the KL of the underlying normals (TorchRL picks the same closed form).

Argument validation raises ``ValueError`` naming the argument, the expected and the actual value;
no broadcasting between parameters is accepted.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import Tensor
from torch import distributions as D
from torch.distributions import constraints
from torch.distributions.utils import _sum_rightmost

from service.composite import CompositeDistribution
from service.errors import ArgumentError

__all__ = [
    "ACTION_DTYPES",
    "PARAMETERS",
    "DistributionKind",
    "TanhNormal",
    "entropy",
    "head_entropies",
    "head_log_probs",
    "kl_divergence",
    "log_prob",
    "make_distribution",
    "rsample_and_log_prob",
]


class DistributionKind(str, enum.Enum):
    """The action distributions the service can build."""

    CATEGORICAL = "categorical"
    ONE_HOT_CATEGORICAL = "one_hot_categorical"
    BERNOULLI = "bernoulli"
    NORMAL = "normal"
    TANH_NORMAL = "tanh_normal"


#: The actor's outputs (and a request's behaviour-distribution keys) for each kind, in order.
PARAMETERS: dict[DistributionKind, tuple[str, ...]] = {
    DistributionKind.CATEGORICAL: ("logits",),
    DistributionKind.ONE_HOT_CATEGORICAL: ("logits",),
    DistributionKind.BERNOULLI: ("logits",),
    DistributionKind.NORMAL: ("loc", "scale"),
    DistributionKind.TANH_NORMAL: ("loc", "scale"),
}
#: The dtype (a `service.dtypes` name) of an action of each kind.
ACTION_DTYPES: dict[DistributionKind, str] = {
    DistributionKind.CATEGORICAL: "int64",
    DistributionKind.ONE_HOT_CATEGORICAL: "float32",
    DistributionKind.BERNOULLI: "float32",
    DistributionKind.NORMAL: "float32",
    DistributionKind.TANH_NORMAL: "float32",
}
_OPTIONAL = {
    DistributionKind.CATEGORICAL: (),
    DistributionKind.ONE_HOT_CATEGORICAL: (),
    DistributionKind.BERNOULLI: (),
    DistributionKind.NORMAL: (),
    DistributionKind.TANH_NORMAL: ("low", "high"),
}


# --- safe tanh (TorchRL's SafeTanhTransform: clamped forward, unclamped-style gradient) -------


class _SafeTanh(torch.autograd.Function):
    @staticmethod
    def forward(x: Tensor) -> Tensor:
        lim = 1.0 - torch.finfo(x.dtype).resolution
        return x.tanh().clamp(-lim, lim)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return grad * (1 - y.pow(2))


class _SafeAtanh(torch.autograd.Function):
    @staticmethod
    def forward(y: Tensor) -> Tensor:
        lim = 1.0 - torch.finfo(y.dtype).resolution
        return y.clamp(-lim, lim).atanh()

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        lim = 1.0 - torch.finfo(y.dtype).resolution
        return grad / (1 - y.clamp(-lim, lim).pow(2))


class _SafeTanhTransform(D.TanhTransform):
    """``tanh`` with the output clamped to ±(1 − resolution) and a matching ``atanh``."""

    def _call(self, x: Tensor) -> Tensor:
        return _SafeTanh.apply(x)

    def _inverse(self, y: Tensor) -> Tensor:
        return _SafeAtanh.apply(y)


class TanhNormal(D.TransformedDistribution):
    """Squashed normal ``a = (high + low)/2 + (high − low)/2 · tanh(u)``, ``u ~ N(loc, scale)``.

    A pure-torch re-statement of ``torchrl.modules.distributions.TanhNormal`` (defaults
    ``tanh_loc=False``, ``safe_tanh=True``, ``event_dims=1``, ``upscale`` unused): same transform
    chain, same log-prob, no closed-form mean, mode or entropy. Build it with
    :func:`make_distribution`.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {
        "loc": constraints.real,
        "scale": constraints.positive,
    }
    has_rsample = True

    def __init__(self, loc: Tensor, scale: Tensor, low: Tensor, high: Tensor) -> None:
        self.loc = loc
        self.scale = scale
        self.low = low
        self.high = high
        transform: D.Transform = _SafeTanhTransform()
        if bool((high != 1.0).any()) or bool((low != -1.0).any()):
            transform = D.ComposeTransform(
                [transform, D.AffineTransform(loc=(high + low) / 2, scale=(high - low) / 2)]
            )
        base = D.Independent(D.Normal(loc, scale, validate_args=False), 1, validate_args=False)
        super().__init__(base, transform, validate_args=False)

    @property
    def support(self):
        return constraints.real

    def _score_preimage(self, preimage: Tensor, sample: Tensor) -> Tensor:
        transform = self.transforms[0]
        return self.base_dist.log_prob(preimage) - _sum_rightmost(
            transform.log_abs_det_jacobian(preimage, sample), len(self.event_shape)
        )

    def rsample_and_log_prob(
        self,
        sample_shape: torch.Size | tuple[int, ...] = (),
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Reparameterised draw and its log-prob, scored at the draw's own pre-tanh value."""
        sample_shape = torch.Size(sample_shape)
        if generator is None:
            preimage = self.base_dist.rsample(sample_shape)
        else:
            shape = self.base_dist._extended_shape(sample_shape)
            eps = torch.empty(shape, dtype=self.loc.dtype, device=self.loc.device)
            eps.normal_(generator=generator)
            preimage = self.loc + eps * self.scale
        sample = self.transforms[0](preimage)
        return sample, self._score_preimage(preimage, sample)

    def sample_and_log_prob(
        self,
        sample_shape: torch.Size | tuple[int, ...] = (),
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Detached draw and its (score-function differentiable) log-prob at its pre-tanh value."""
        sample_shape = torch.Size(sample_shape)
        with torch.no_grad():
            if generator is None:
                preimage = self.base_dist.sample(sample_shape)
            else:
                shape = self.base_dist._extended_shape(sample_shape)
                eps = torch.empty(shape, dtype=self.loc.dtype, device=self.loc.device)
                eps.normal_(generator=generator)
                preimage = self.loc + eps * self.scale
            sample = self.transforms[0](preimage)
        return sample, self._score_preimage(preimage, sample)


# --- validation helpers -------------------------------------------------------------------------


def _kind(kind: str | DistributionKind) -> DistributionKind:
    try:
        return DistributionKind(kind)
    except ValueError:
        allowed = [k.value for k in DistributionKind]
        raise ArgumentError("kind", f"expected one of {allowed}, got {kind!r}") from None


def _float_tensor(name: str, value: object) -> Tensor:
    if not isinstance(value, Tensor):
        raise ArgumentError(name, f"expected a torch.Tensor, got {type(value).__name__}")
    if not value.dtype.is_floating_point:
        raise ArgumentError(name, f"expected a floating-point dtype, got {value.dtype}")
    return value


def _bound(name: str, value: object, like: Tensor, default: float) -> Tensor:
    if value is None:
        return torch.full((), default, dtype=like.dtype, device=like.device)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.full((), float(value), dtype=like.dtype, device=like.device)
    value = _float_tensor(name, value)
    if value.dtype != like.dtype:
        raise ArgumentError(f"params[{name!r}]", f"expected dtype {like.dtype}, got {value.dtype}")
    if value.ndim > 1 or (value.ndim == 1 and value.shape[0] != like.shape[-1]):
        raise ArgumentError(
            f"params[{name!r}]",
            f"expected shape () or ({like.shape[-1]},), got {tuple(value.shape)}",
        )
    if not bool(torch.isfinite(value).all()):
        raise ArgumentError(f"params[{name!r}]", "expected finite values")
    return value


def make_distribution(
    kind: str | DistributionKind, params: Mapping[str, Tensor | float]
) -> D.Distribution:
    """Build the action distribution of ``kind`` from an actor network's output ``params``.

    Args:
        kind: ``"categorical"``, ``"normal"`` or ``"tanh_normal"`` (or a :class:`DistributionKind`).
        params: ``categorical``: ``logits`` ``[*B, K]`` (``-inf`` allowed, NaN refused).
            ``normal``: ``loc``, ``scale`` ``[*B, A]``, same shape, finite, ``scale > 0``.
            ``tanh_normal``: as ``normal`` plus optional ``low``/``high`` (float, ``()`` or ``[A]``
            tensor of the same dtype; default -1 and 1; ``high > low``).

    Returns:
        ``torch.distributions.Categorical`` (batch ``[*B]``), ``Independent(Normal, 1)``
        (batch ``[*B]``, event ``[A]``) or :class:`TanhNormal` (batch ``[*B]``, event ``[A]``).
        Parameters keep their autograd graph.

    Raises:
        ValueError: unknown kind, missing or unexpected keys, wrong dtype/shape, bad values.
    """
    kind = _kind(kind)
    if not isinstance(params, Mapping):
        raise ArgumentError("params", f"expected a mapping, got {type(params).__name__}")
    required, optional = PARAMETERS[kind], _OPTIONAL[kind]
    missing = [k for k in required if k not in params]
    extra = [k for k in params if k not in required + optional]
    if missing or extra:
        raise ArgumentError(
            "params",
            f"{kind.value} expects keys {list(required)} (optional {list(optional)}), "
            f"missing {missing}, unexpected {extra}",
        )

    if kind is DistributionKind.BERNOULLI:
        logits = _float_tensor("params['logits']", params["logits"])
        if logits.ndim < 1 or logits.shape[-1] < 1:
            raise ArgumentError(
                "params['logits']", f"expected shape [*B, A] with A >= 1, got {tuple(logits.shape)}"
            )
        if bool(torch.isnan(logits).any()):
            raise ArgumentError("params['logits']", "expected no NaN values")
        bernoulli = D.Bernoulli(logits=logits, validate_args=False)
        return D.Independent(bernoulli, 1, validate_args=False)

    if kind in (DistributionKind.CATEGORICAL, DistributionKind.ONE_HOT_CATEGORICAL):
        logits = _float_tensor("params['logits']", params["logits"])
        if logits.ndim < 1 or logits.shape[-1] < 1:
            raise ArgumentError(
                "params['logits']", f"expected shape [*B, K] with K >= 1, got {tuple(logits.shape)}"
            )
        if bool(torch.isnan(logits).any()) or bool((logits == math.inf).any()):
            raise ArgumentError("params['logits']", "expected no NaN or +inf values")
        if bool(torch.isneginf(logits).all(-1).any()):
            raise ArgumentError("params['logits']", "every action of some row is -inf")
        if kind is DistributionKind.ONE_HOT_CATEGORICAL:
            return D.OneHotCategorical(logits=logits, validate_args=False)
        return D.Categorical(logits=logits, validate_args=False)

    loc = _float_tensor("params['loc']", params["loc"])
    scale = _float_tensor("params['scale']", params["scale"])
    if loc.ndim < 1:
        raise ArgumentError("params['loc']", f"expected shape [*B, A], got {tuple(loc.shape)}")
    if scale.shape != loc.shape:
        raise ArgumentError(
            "params['scale']",
            f"expected shape {tuple(loc.shape)} (as loc), got {tuple(scale.shape)}",
        )
    if scale.dtype != loc.dtype:
        raise ArgumentError(
            "params['scale']", f"expected dtype {loc.dtype} (as loc), got {scale.dtype}"
        )
    if not bool(torch.isfinite(loc).all()):
        raise ArgumentError("params['loc']", "expected finite values")
    if not bool((torch.isfinite(scale) & (scale > 0)).all()):
        raise ArgumentError("params['scale']", "expected finite values > 0")

    if kind is DistributionKind.NORMAL:
        return D.Independent(D.Normal(loc, scale, validate_args=False), 1, validate_args=False)

    low = _bound("low", params.get("low"), loc, -1.0)
    high = _bound("high", params.get("high"), loc, 1.0)
    if not bool((high > low).all()):
        raise ArgumentError(
            "params['high']",
            f"expected high > low elementwise, got low={low.tolist()}, high={high.tolist()}",
        )
    return TanhNormal(loc, scale, low, high)


def _check_distribution(dist: object) -> D.Distribution:
    if isinstance(dist, CompositeDistribution):
        return dist
    independent = type(dist.base_dist) if isinstance(dist, D.Independent) else None
    known = (D.Categorical, D.OneHotCategorical, TanhNormal)
    if independent not in (D.Normal, D.Bernoulli) and not isinstance(dist, known):
        raise ArgumentError(
            "dist",
            "expected a distribution from make_distribution (Categorical, OneHotCategorical, "
            f"Independent(Normal), Independent(Bernoulli), TanhNormal), got {type(dist).__name__}",
        )
    return dist


def _is_discrete(dist: D.Distribution) -> bool:
    """Categorical, one-hot categorical or Bernoulli: no reparameterised sample."""
    bernoulli = isinstance(dist, D.Independent) and type(dist.base_dist) is D.Bernoulli
    return bernoulli or isinstance(dist, (D.Categorical, D.OneHotCategorical))


def log_prob(dist: D.Distribution, action: Tensor) -> Tensor:
    """``log π(a)`` with TorchRL's conventions: summed over the action dim, shape ``[*B]``.

    Args:
        dist: a distribution from :func:`make_distribution`, batch ``[*B]``.
        action: ``categorical``: integer indices ``[*B]`` in ``[0, K)``; ``normal`` /
            ``tanh_normal``: ``[*B, A]`` in the dtype of ``loc`` (tanh-normal actions at or beyond
            the bounds are clamped, as in TorchRL).

    Returns:
        Log-probabilities ``[*B]``, differentiable w.r.t. the distribution's parameters.
    """
    dist = _check_distribution(dist)
    if isinstance(dist, CompositeDistribution):
        return _sum(head_log_probs(dist, action).values())
    if not isinstance(action, Tensor):
        raise ArgumentError("action", f"expected a torch.Tensor, got {type(action).__name__}")
    expected = dist.batch_shape + dist.event_shape
    if action.shape != expected:
        raise ArgumentError(
            "action", f"expected shape {tuple(expected)}, got {tuple(action.shape)}"
        )
    if isinstance(dist, D.Categorical):
        if action.dtype.is_floating_point or action.dtype == torch.bool:
            raise ArgumentError(
                "action", f"expected an integer dtype for categorical, got {action.dtype}"
            )
        k = dist.logits.shape[-1]
        if action.numel() and bool(((action < 0) | (action >= k)).any()):
            raise ArgumentError("action", f"expected indices in [0, {k}), got values outside")
    elif _is_discrete(dist):  # one-hot rows or {0, 1} per element, in the logits' dtype
        dtype = dist.logits.dtype if hasattr(dist, "logits") else dist.base_dist.logits.dtype
        if action.dtype != dtype:
            raise ArgumentError("action", f"expected dtype {dtype}, got {action.dtype}")
        if action.numel() and bool(((action != 0) & (action != 1)).any()):
            raise ArgumentError("action", "expected values 0 or 1")
        if isinstance(dist, D.OneHotCategorical) and bool((action.sum(-1) != 1).any()):
            raise ArgumentError("action", "expected one-hot rows (exactly one 1 each)")
    else:
        dtype = dist.base_dist.loc.dtype if isinstance(dist, D.Independent) else dist.loc.dtype
        if action.dtype != dtype:
            raise ArgumentError("action", f"expected dtype {dtype}, got {action.dtype}")
    return dist.log_prob(action)


def _sum(parts) -> Tensor:
    total: Tensor | None = None
    for part in parts:
        total = part if total is None else total + part
    assert total is not None
    return total


def head_log_probs(dist: CompositeDistribution, action: object) -> dict[str, Tensor]:
    """Each head's ``log π_h(a_h)`` ``[*B]`` of a composite action ``{head: action}``; the
    action must name every head exactly once (errors name ``action[<head>]``)."""
    if not isinstance(action, Mapping):
        raise ArgumentError(
            "action", f"expected a mapping head → action for a composite policy, got "
            f"{type(action).__name__}",
        )  # fmt: skip
    missing = [name for name in dist.names if name not in action]
    extra = sorted(name for name in action if name not in dist.heads)
    if missing or extra:
        raise ArgumentError(
            "action", f"expected the heads {list(dist.names)}, missing {missing}, extra {extra}"
        )
    parts = {}
    for name, head in dist.heads.items():
        try:
            parts[name] = log_prob(head, action[name])
        except ArgumentError as error:
            raise ArgumentError(f"action[{name!r}]", error.detail) from error
    return parts


def head_entropies(
    dist: CompositeDistribution,
    *,
    samples_mc_entropy: int = 1,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Each head's entropy ``[*B]`` (see :func:`entropy`), in the heads' order (the order in
    which Monte-Carlo heads draw their noise, as TorchRL's ``composite_entropy``)."""
    return {
        name: entropy(head, samples_mc_entropy=samples_mc_entropy, generator=generator)
        for name, head in dist.heads.items()
    }


def rsample_and_log_prob(
    dist: D.Distribution,
    sample_shape: torch.Size | tuple[int, ...] = (),
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Reparameterised sample and its log-prob (tanh-normal: scored at the pre-tanh draw)."""
    dist = _check_distribution(dist)
    if isinstance(dist, TanhNormal):
        return dist.rsample_and_log_prob(sample_shape, generator=generator)
    if _is_discrete(dist):
        raise ArgumentError("dist", "a discrete distribution has no reparameterised sample")
    if generator is None:
        sample = dist.rsample(sample_shape)
    else:
        normal = dist.base_dist
        shape = dist._extended_shape(torch.Size(sample_shape))
        eps = torch.empty(shape, dtype=normal.loc.dtype, device=normal.loc.device)
        eps.normal_(generator=generator)
        sample = normal.loc + eps * normal.scale
    return sample, dist.log_prob(sample)


def entropy(
    dist: D.Distribution,
    *,
    samples_mc_entropy: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Entropy per sample ``[*B]``, TorchRL's choice: analytic if available, else Monte-Carlo.

    categorical: ``−Σ_k p_k log p_k``; normal: ``Σ_A (½ + ½ log 2π + log σ)``; tanh-normal:
    ``H ≈ −(1/K) Σ_k log p(a_k)``, ``a_k = f(loc + scale·ε_k)``, ``ε_k ~ N(0, I)``,
    ``K = samples_mc_entropy``, with pathwise gradients (an unbiased estimate of a quantity with
    no closed form). ``generator`` (if given) supplies ``ε``; otherwise the global generator is
    used exactly as in TorchRL's losses.
    """
    dist = _check_distribution(dist)
    if isinstance(dist, CompositeDistribution):
        parts = head_entropies(
            dist, samples_mc_entropy=samples_mc_entropy, generator=generator
        ).values()
        return _sum(parts)
    if isinstance(dist, TanhNormal):
        if not isinstance(samples_mc_entropy, int) or samples_mc_entropy < 1:
            raise ArgumentError(
                "samples_mc_entropy", f"expected an int >= 1, got {samples_mc_entropy!r}"
            )
        _, lp = dist.rsample_and_log_prob((samples_mc_entropy,), generator=generator)
        return -lp.mean(0)
    return dist.entropy()


def kl_divergence(
    p: D.Distribution,
    q: D.Distribution,
    *,
    samples_mc_kl: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``KL(p ‖ q)`` per sample ``[*B]``: analytic when torch has a closed form, else Monte-Carlo.

    The Monte-Carlo branch (only reachable for tanh-normals with different bounds) follows
    TorchRL's ``KLPENPPOLoss``: ``(1/K) Σ_k [log p(x_k) − log q(x_k)]`` with detached draws
    ``x_k ~ p`` scored at their pre-tanh values under ``p``.
    """
    p, q = _check_distribution(p), _check_distribution(q)
    if isinstance(p, CompositeDistribution) and isinstance(q, CompositeDistribution):
        if p.names != q.names:
            raise ArgumentError("q", f"expected the heads {list(p.names)}, got {list(q.names)}")
        return _sum(
            kl_divergence(p.heads[name], q.heads[name], samples_mc_kl=samples_mc_kl,
                          generator=generator)
            for name in p.names
        )  # fmt: skip
    if type(p) is not type(q):
        raise ArgumentError("q", f"expected a {type(p).__name__} like p, got {type(q).__name__}")
    if p.batch_shape != q.batch_shape or p.event_shape != q.event_shape:
        raise ArgumentError(
            "q",
            f"expected batch/event shape {tuple(p.batch_shape)}/{tuple(p.event_shape)} (as p), "
            f"got {tuple(q.batch_shape)}/{tuple(q.event_shape)}",
        )
    if not isinstance(p, TanhNormal) or p.transforms == q.transforms:
        return D.kl_divergence(p, q)
    if not isinstance(samples_mc_kl, int) or samples_mc_kl < 1:
        raise ArgumentError("samples_mc_kl", f"expected an int >= 1, got {samples_mc_kl!r}")
    x, lp = p.sample_and_log_prob((samples_mc_kl,), generator=generator)
    return (lp - q.log_prob(x)).mean(0)
