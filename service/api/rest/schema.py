"""OpenAPI description of POST /v1/advantage (the body is parsed by `convert`, not pydantic)."""

from __future__ import annotations

from typing import Any

from service.dtypes import COMPUTE_DTYPES
from service.estimators.registry import ESTIMATORS
from service.losses.registry import LOSSES

NESTED = {
    "description": "Nested list [*B, T] (or [*B, T, 1] with torchrl_shapes).",
    "type": "array",
    "items": {},
}
COEFFICIENT = {
    "description": "A number in [0, 1] for every step, or a per-step nested list [*B, T].",
    "oneOf": [{"type": "number", "minimum": 0, "maximum": 1}, NESTED],
}
TIMING_FIELDS = ("json_decode_ms", "decode_ms", "network_ms", "estimator_ms", "encode_ms")
ERROR = {
    "type": "object",
    "properties": {
        "code": {"type": "string", "example": "INVALID_ARGUMENT"},
        "message": {
            "type": "string",
            "example": "trajectory.done: expected shape [4] (the reward's [*B, T]), got [3]",
        },
    },
}

REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["trajectory"],
    "additionalProperties": False,
    "properties": {
        "model_name": {"type": "string", "description": "Empty or absent = the default model."},
        "dtype": {"enum": list(COMPUTE_DTYPES), "default": "float32"},
        "torchrl_shapes": {
            "type": "boolean",
            "default": False,
            "description": "Per-step tensors (reward, done, terminated, values, log-probs) "
            "carry TorchRL's trailing feature dimension [*B, T, 1]; so does the response.",
        },
        "form": {"enum": ["full", "compact"], "default": "full"},
        "estimator": {
            "description": "A name, or an object with `name` and knobs; absent = GAE with "
            "the model's defaults. A knob left out (or null) takes the model's default.",
            "oneOf": [
                {"enum": list(ESTIMATORS)},
                {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"enum": list(ESTIMATORS)},
                        "gamma": COEFFICIENT,
                        "lmbda": COEFFICIENT,
                        "average_rewards": {"type": "boolean"},
                        "average_gae": {"type": "boolean"},
                        "average_adv": {"type": "boolean"},
                        "rho_thresh": {"type": "number"},
                        "c_thresh": {"type": "number"},
                        "rho_pg_thresh": {"type": "number"},
                    },
                },
            ],
        },
        "trajectory": {
            "type": "object",
            "description": "TorchRL keys, flat ('next.reward') or nested ({'next': "
            "{'reward': ...}}), not both for one key. Every model input key K appears as K and "
            "next.K ([*B, T, *shape]). `reward`/`done`/`terminated` are accepted without "
            "`next.`. Float tensors take numbers (null = NaN, never true/false), bool tensors "
            "true/false or 0/1, integer tensors integers.",
            "properties": {
                "observation": NESTED,
                "next.observation": NESTED,
                "next.reward": NESTED,
                "next.done": NESTED,
                "next.terminated": NESTED,
                "state_value": NESTED,
                "next.state_value": NESTED,
                "action": NESTED,
                "sample_log_prob": NESTED,
                "log_prob": NESTED,
            },
            "required": ["next.reward", "next.done"],
        },
        "min_parameter_version": {
            "type": "integer",
            "description": "Read-your-writes: compute with this parameter version or a later "
            "one. A learner that has not reached it answers 412; a replica waits up to 5 s, "
            "then answers 503.",
        },
    },
}

EXAMPLE = {
    "estimator": {"name": "gae", "gamma": 0.99, "lmbda": 0.95},
    "trajectory": {
        "next.reward": [[1.0, 0.0, 1.0, 0.5]],
        "next.done": [[False, True, False, False]],
        "next.terminated": [[False, True, False, False]],
        "state_value": [[0.5, 0.4, 0.3, 0.2]],
        "next.state_value": [[0.4, 0.0, 0.2, 0.1]],
    },
}

RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "model_name": {"type": "string"},
        "parameter_version": {"type": "integer"},
        "dtype": {"enum": list(COMPUTE_DTYPES)},
        "shape": {"type": "array", "items": {"type": "integer"}, "description": "[*B, T]"},
        "advantage": NESTED,
        "value_target": NESTED,
        "state_value": {**NESTED, "description": "Only when the server computed the values."},
        "next.state_value": {**NESTED, "description": "0 at terminated steps."},
        "timing": {
            "type": "object",
            "description": "Milliseconds: JSON → protobuf, then the handler's phases.",
            "properties": {name: {"type": "number"} for name in TIMING_FIELDS},
        },
    },
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR}}}


ADVANTAGE_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": REQUEST_SCHEMA, "example": EXAMPLE}},
    },
    "responses": {
        "200": {
            "description": "Advantage and value target, [*B, T] nested lists.",
            "content": {"application/json": {"schema": RESPONSE_SCHEMA}},
        },
        "400": _error(
            "A malformed field (INVALID_ARGUMENT); the message names it. Also JSON nested "
            "deeper than 64 levels (`body`)."
        ),
        "403": _error(
            "Host not on --rest-allowed-hosts, or an Origin other than this server's own "
            "(PERMISSION_DENIED)."
        ),
        "404": _error("Unknown model (NOT_FOUND)."),
        "412": _error(
            "The model lacks something the request needs, a write reached a replica, or the "
            "learner has not reached min_parameter_version (FAILED_PRECONDITION)."
        ),
        "413": _error("Body over the server's --max-message-mb (RESOURCE_EXHAUSTED)."),
        "415": _error("Content-Type is not application/json (INVALID_ARGUMENT)."),
        "503": _error(
            "Server draining, or a replica without the model or min_parameter_version yet "
            "(UNAVAILABLE)."
        ),
    },
}


LOSS_REQUEST_SCHEMA: dict[str, Any] = {
    **REQUEST_SCHEMA,
    "properties": {
        **REQUEST_SCHEMA["properties"],
        "loss": {
            "description": "A name, or an object with `name` and the loss message's knobs "
            '(PolicyLossOptions under `options`; enums by name, e.g. "smooth_l1"); '
            "absent = ppo_clip.",
            "oneOf": [
                {"enum": list(LOSSES)},
                {"type": "object", "required": ["name"]},
            ],
        },
        "advantage": {**NESTED, "description": "Precomputed advantage (skips the estimator)."},
        "value_target": NESTED,
        "behaviour_distribution": {
            "type": "object",
            "description": "ppo_kl: behaviour policy parameters ('logits' or 'loc'/'scale').",
            "additionalProperties": NESTED,
        },
        "apply_update": {"type": "boolean", "default": False},
        "expected_parameter_version": {"type": "integer"},
        "return_td_error": {
            "type": "boolean",
            "default": False,
            "description": "Off-policy losses: return the per-sample TD error.",
        },
        "target_update": {
            "type": "object",
            "description": 'Off-policy losses: this update\'s target rule, {"tau": τ} or '
            '{"hard_interval": N} (absent = the model\'s).',
        },
    },
}

LOSS_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": LOSS_REQUEST_SCHEMA}},
    },
    "responses": {
        "200": {
            "description": "Loss, its parts (metrics), parameter versions, timing.",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "loss": {"type": "number"},
                            "metrics": {"type": "object"},
                            "model_name": {"type": "string"},
                            "parameter_version": {"type": "integer"},
                            "updated": {"type": "boolean"},
                            "new_parameter_version": {"type": "integer"},
                            "grad_norm": {"type": "number"},
                            "timing": {"type": "object"},
                            "td_error": {**NESTED, "description": "Off-policy, on request."},
                            "targets_updated": {"type": "boolean"},
                        },
                    }
                }
            },
        },
        **{
            code: ADVANTAGE_OPENAPI["responses"][code]
            for code in ("400", "403", "404", "412", "413", "415")
        },
        "503": ADVANTAGE_OPENAPI["responses"]["503"],
    },
}
