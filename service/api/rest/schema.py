"""OpenAPI description of the REST routes, with a working example for every one.

The compute bodies are parsed by `service.wire.json`, not pydantic, so their schemas are written
here: the trajectory keys with their real shapes, and each estimator's and loss's knobs read from
the proto's `estimator` / `loss` oneofs and the registries (a new estimator or loss appears here
by itself). Model responses are described from their protobuf messages, with enums spelled as
REST writes them (`"float32"`, `"categorical"`).

Examples that depend on the served models (a loss needs observations of the model's shape, a
model name) are filled in by `install_openapi` from the default model when the document is first
asked for; every example in the document is a request this server answers with 200.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI

from service.api.rest.sample import sample_request
from service.dtypes import COMPUTE_DTYPES
from service.errors import ServiceError
from service.estimators.registry import DEFAULT_ESTIMATOR, ESTIMATORS
from service.losses.dreamer.registry import DREAMER_LOSSES
from service.losses.registry import DEFAULT_LOSS, LOSSES
from service.models.model import Model
from service.runtime import Runtime
from service.wire.json_schema import knob_choices, response_schema

PER_STEP = "[*B, T] (with torchrl_shapes: [*B, T, 1])"


def _nested(description: str) -> dict[str, Any]:
    return {"description": description, "type": "array", "items": {}}


NESTED = _nested(f"Nested list {PER_STEP}.")
COEFFICIENT = {
    "description": "A number in [0, 1] for every step, or a per-step nested list "
    f"{PER_STEP}; absent = the model's default (GET /v1/models: defaults).",
    "oneOf": [{"type": "number", "minimum": 0, "maximum": 1}, NESTED],
}
TIMING_FIELDS = ("json_decode_ms", "decode_ms", "network_ms", "estimator_ms", "encode_ms")
ERROR = {
    "type": "object",
    "properties": {
        "code": {"type": "string", "example": "INVALID_ARGUMENT"},
        "message": {
            "type": "string",
            "description": "Names the field as the body wrote it, what it expects and what it got.",
            "example": "trajectory.next.done: expected shape [4] (the reward's [*B, T]), got [3]",
        },
    },
}

TRAJECTORY_PROPERTIES: dict[str, Any] = {
    "observation": _nested(
        "The model's input `observation` (each input key K of GET /v1/models `inputs` is a key "
        "here, with its `shape` as obs_shape and its `dtype`): [*B, T, *obs_shape] in the full "
        "form, the observation before each step; [*B, T + 1, *obs_shape] in the compact form "
        "(index T: the observation after the last step). Not needed when state_value and "
        "next.state_value are given (V-trace: and log_prob)."
    ),
    "next.observation": _nested(
        "The observation after each step, keyed like `observation`: [*B, T, *obs_shape] in the "
        "full form; in the compact form [K, *obs_shape], the true next observations of the K "
        "truncated steps (done and not terminated), in row-major order of their [*B, T] index."
    ),
    "next.reward": _nested(
        f"Reward of each step, {PER_STEP}, numbers (read in the request's dtype). Also accepted "
        "as `reward`."
    ),
    "next.done": _nested(
        f"The episode ended (terminated or truncated) after the step, {PER_STEP}, true/false or "
        "0/1. Also accepted as `done`."
    ),
    "next.terminated": _nested(
        f"The episode reached a terminal state after the step (no bootstrap), {PER_STEP}; must "
        "imply done; absent = done. Also accepted as `terminated`."
    ),
    "state_value": _nested(
        f"V(s_t), {PER_STEP}. Given with next.state_value, the value network is not called; "
        "absent, the server's value network computes both."
    ),
    "next.state_value": _nested(
        f"V(s_(t+1)), {PER_STEP}; null (NaN) is allowed exactly at terminated steps."
    ),
    "action": _nested(
        "The action taken at each step: [*B, T] integers for a categorical actor, "
        "[*B, T, *action_shape] numbers for normal / tanh_normal (GET /v1/models: action). "
        "Needed by the losses and by V-trace with the server's actor."
    ),
    "sample_log_prob": _nested(
        f"Log-probability of `action` under the behaviour policy that collected the data, "
        f"{PER_STEP}. Needed by V-trace, the PPO losses and IMPALA."
    ),
    "log_prob": _nested(
        f"Log-probability of `action` under the current policy, {PER_STEP}; given, V-trace "
        "does not call the actor."
    ),
    "mask": _nested(f"{PER_STEP} bool, false at padded steps (they get 0 and add nothing)."),
    "collector.mask": _nested("TorchRL's name for `mask`."),
}


def _choice_schema(oneof: str, choices: Mapping[str, Any], default: str) -> dict[str, Any]:
    """`estimator` / `loss`: a name, or an object with `name` and that member's knobs."""
    return {
        "description": f"A name, or an object with `name` and its knobs; absent = {default} "
        "with its defaults. A knob left out (or null) takes its default.",
        "oneOf": knob_choices(oneof, choices, COEFFICIENT),
    }


# ---- request and response bodies -----------------------------------------------------------------

REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["trajectory"],
    "additionalProperties": False,
    "properties": {
        "model_name": {"type": "string", "description": "Empty or absent = the default model."},
        "dtype": {
            "enum": list(COMPUTE_DTYPES),
            "default": "float32",
            "description": "The dtype of rewards, values and log-probabilities, and of the "
            "results (observations take their input's dtype, GET /v1/models).",
        },
        "torchrl_shapes": {
            "type": "boolean",
            "default": False,
            "description": "Per-step tensors (reward, done, terminated, values, log-probs) "
            "carry TorchRL's trailing feature dimension [*B, T, 1]; so does the response.",
        },
        "form": {
            "enum": ["full", "compact"],
            "default": "full",
            "description": "How observations are laid out: TorchRL's (observation and "
            "next.observation [*B, T, *obs_shape]) or compact (observations once, "
            "[*B, T + 1, *obs_shape], plus the next observations of truncated steps).",
        },
        "estimator": _choice_schema("estimator", ESTIMATORS, DEFAULT_ESTIMATOR),
        "trajectory": {
            "type": "object",
            "description": "TorchRL's keys, flat ('next.reward') or nested ({'next': "
            "{'reward': ...}}), not both for one key. [*B, T]: any batch dimensions, then "
            "time. Float tensors take numbers (null = NaN, never true/false), bool tensors "
            "true/false or 0/1, integer tensors integers.",
            "properties": TRAJECTORY_PROPERTIES,
            "additionalProperties": {
                **NESTED,
                "description": "A composite actor's heads: `<head>` (its actions) and "
                "`<head>_log_prob` (its behaviour log-probability).",
            },
            "required": ["next.reward", "next.done"],
        },
        "n_agents": {
            "type": "integer",
            "minimum": 0,
            "default": 0,
            "description": "Agents per step: per-agent tensors are [*B, T, n_agents, ...] "
            "(time before agents); done/terminated [*B, T] (shared) or [*B, T, n_agents].",
        },
        "min_parameter_version": {
            "type": "integer",
            "description": "Read-your-writes: compute with this parameter version or a later "
            "one. A learner that has not reached it answers 412; a replica waits up to 5 s, "
            "then answers 503.",
        },
    },
}

#: Values given, so no network runs: works for every model.
GIVEN_VALUES_EXAMPLE = {
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
        "shape": {
            "type": "array",
            "items": {"type": "integer"},
            "description": "[*B, T], the reward's shape",
        },
        "advantage": NESTED,
        "value_target": NESTED,
        "state_value": {**NESTED, "description": f"{PER_STEP}; only when the server computed it."},
        "next.state_value": {**NESTED, "description": f"{PER_STEP}; 0 at terminated steps."},
        "timing": {
            "type": "object",
            "description": "Milliseconds: JSON → protobuf, then the handler's phases.",
            "properties": {name: {"type": "number"} for name in TIMING_FIELDS},
        },
    },
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR}}}


ERRORS: dict[str, Any] = {
    "400": _error(
        "A malformed field (INVALID_ARGUMENT); the message names it as the body wrote it. Also "
        "JSON nested deeper than 64 levels (`body`)."
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
}

ADVANTAGE_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": REQUEST_SCHEMA,
                "examples": {
                    "given_values": {
                        "summary": "GAE on values given in the body (no network runs)",
                        "value": GIVEN_VALUES_EXAMPLE,
                    }
                },
            }
        },
    },
    "responses": {
        "200": {
            "description": f"Advantage and value target, nested lists {PER_STEP}.",
            "content": {"application/json": {"schema": RESPONSE_SCHEMA}},
        },
        **ERRORS,
    },
}

LOSS_REQUEST_SCHEMA: dict[str, Any] = {
    **REQUEST_SCHEMA,
    "properties": {
        **REQUEST_SCHEMA["properties"],
        "loss": _choice_schema("loss", LOSSES, DEFAULT_LOSS),
        "advantage": _nested(
            f"Precomputed advantage, {PER_STEP}, with value_target (skips the estimator)."
        ),
        "value_target": _nested(f"Precomputed value target, {PER_STEP}."),
        "behaviour_distribution": {
            "type": "object",
            "description": "ppo_kl: the behaviour policy's parameters, keyed like the actor's "
            "outputs ('logits', or 'loc' and 'scale'), each [*B, T, *param_shape].",
            "additionalProperties": _nested("[*B, T, *param_shape]"),
        },
        "apply_update": {
            "type": "boolean",
            "default": False,
            "description": "Also take one optimizer step on the server's networks (needs the "
            "write scope when the server has tokens).",
        },
        "expected_parameter_version": {
            "type": "integer",
            "description": "Refuse (412) unless the model is at this version.",
        },
        "composite_lp_aggregate": {
            "type": ["boolean", "null"],
            "description": "Composite actors: false reports each head's entropy "
            "(TorchRL's non-aggregate mode); null = from the log-probabilities sent.",
        },
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

_LATENTS = {
    "type": "object",
    "description": "The latents by name (GET /v1/models: world_model.latents): `state` "
    "[*B, C·K] and `belief` [*B, D].",
    "additionalProperties": NESTED,
}

DREAMER_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "DreamerV3",
    "description": "A DreamerV3 loss on a model with a world model (README: DreamerV3).",
    "required": ["loss"],
    "additionalProperties": False,
    "properties": {
        "model_name": {"type": "string", "description": "Empty or absent = the default model."},
        "loss": {
            "description": "A name, or an object with `name` and the knobs of the proto's "
            "DreamerV3 messages (`actor`, `value`, `model`, `imagination`, …; enums by their "
            'lower-case value, e.g. "two_hot"); a knob left out takes TorchRL\'s default.',
            "oneOf": [
                {"enum": list(DREAMER_LOSSES)},
                {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"enum": list(DREAMER_LOSSES)}},
                },
            ],
        },
        "replay": {
            "type": "object",
            "description": "dreamer_v3_model, dreamer_v3: replay sequences [*B, T]: "
            "`observation` (by input name, [*B, T, *shape]), `action` [*B, T, action_size] "
            "(the action before each observation), `reward` [*B, T], `is_first` and optional "
            "`terminated` [*B, T] booleans.",
            "additionalProperties": NESTED,
        },
        "starting_latents": {
            **_LATENTS,
            "description": "dreamer_v3_actor, dreamer_v3_value: where the server's imagination "
            "starts. " + _LATENTS["description"],
        },
        "imagined": {
            "type": "object",
            "description": "dreamer_v3_actor, dreamer_v3_value, instead of starting_latents: "
            "the client's own rollout, latents [*B, H+1, …], `action` [*B, H, action_size], "
            "`reward` [*B, H], `continuation` [*B, H+1].",
            "additionalProperties": NESTED,
        },
        "return_posterior": {
            "type": "boolean",
            "default": False,
            "description": "Return the replay's posterior latents as `posterior_latents`.",
        },
        "apply_update": {
            "type": "boolean",
            "default": False,
            "description": "Also step the actor's, critic's and world model's optimizers "
            "(needs the write scope when the server has tokens); the version increases once.",
        },
        "expected_parameter_version": {
            "type": "integer",
            "description": "Refuse (412) unless the model is at this version.",
        },
        "min_parameter_version": {"type": "integer"},
    },
}

LOSS_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"oneOf": [LOSS_REQUEST_SCHEMA, DREAMER_REQUEST_SCHEMA]},
            }
        },
    },
    "responses": {
        "200": {
            "description": "The loss, its parts (metrics, TorchRL's names), parameter versions, "
            "timing.",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "loss": {"type": "number"},
                            "metrics": {
                                "type": "object",
                                "additionalProperties": {"type": "number"},
                            },
                            "model_name": {"type": "string"},
                            "parameter_version": {"type": "integer"},
                            "updated": {"type": "boolean"},
                            "new_parameter_version": {"type": "integer"},
                            "grad_norm": {"type": "number"},
                            "timing": {"type": "object"},
                            "td_error": {
                                **NESTED,
                                "type": ["array", "null"],
                                "description": "Off-policy losses with return_td_error: "
                                "the per-sample TD error; null otherwise.",
                            },
                            "targets_updated": {"type": "boolean"},
                        },
                    }
                }
            },
        },
        **ERRORS,
    },
}


# ---- model responses, from their messages --------------------------------------------------------

#: What a model response's fields mean for a request (the messages' own comments say the rest).
FIELD_NOTES = {
    "TensorSpec.name": "A key of the request's trajectory (and next.<name>).",
    "TensorSpec.shape": "obs_shape: this input is [*B, T, *obs_shape] in a trajectory.",
    "TensorSpec.dtype": "The dtype of this input's numbers in a request.",
    "ActionSpec.shape": "action_shape: actions are [*B, T, *action_shape] ([] for categorical).",
    "ModelInfo.action": "null when the model has no actor network.",
    "ModelInfo.defaults": "The γ and λ an estimator uses when the request leaves them out.",
}


def models_openapi(rpc: str) -> dict[str, Any]:
    """The 200 response of GET /v1/models (ListModels) or /v1/models/{name} (GetModel)."""
    return {
        "responses": {
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": response_schema(rpc, FIELD_NOTES)}},
            },
            "404": ERRORS["404"],
        }
    }


# ---- examples from the served models -------------------------------------------------------------


def _rounded(value: Any) -> Any:
    """A sample's floats to three decimals, so the example reads (ints and bools as they are)."""
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, float) and math.isfinite(value):
        return round(value, 3)
    return value


def model_examples(model: Model) -> dict[str, dict[str, Any]]:
    """{route: {example name: example}} for the routes whose examples need a model's shapes."""
    sample = _rounded(sample_request(model, steps=6, seed=0))
    network = "its value network runs" if model.value_network is not None else "values given"
    examples: dict[str, dict[str, Any]] = {
        "/v1/advantage": {
            "sample": {
                "summary": f"A generated trajectory for model {model.name!r} ({network})",
                "value": {**sample, "estimator": {"name": "td_lambda", "lmbda": 0.9}},
            }
        }
    }
    if model.actor_network is not None:  # every loss scores actions with the actor
        loss = {"name": DEFAULT_LOSS, "clip_epsilon": 0.2, "options": {"entropy_coeff": 0.01}}
        examples["/v1/loss"] = {
            "ppo_clip": {
                "summary": f"PPO (clip) on a generated trajectory for model {model.name!r}; "
                "no update",
                "value": {**sample, "loss": loss},
            }
        }
    return examples


def _add_examples(spec: dict[str, Any], model: Model) -> None:
    paths = spec["paths"]
    for path, examples in model_examples(model).items():
        content = paths[path]["post"]["requestBody"]["content"]["application/json"]
        content["examples"] = {**content.get("examples", {}), **examples}
    for parameter in paths["/v1/models/{name}"]["get"].get("parameters", []):
        if parameter["name"] == "name":
            parameter["example"] = model.name
    for parameter in paths["/debug/sample"]["get"].get("parameters", []):
        if parameter["name"] == "model_name":
            parameter["example"] = model.name


def install_openapi(app: FastAPI, runtime: Runtime) -> None:
    """Serve the OpenAPI document with the examples built from the default model (built once,
    on the first request for it; without a model yet, e.g. on a replica still copying, the
    document is served without them and built again next time)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = build()
        try:
            model = runtime.model("")
        except ServiceError:
            app.openapi_schema = None  # try again when a model is there
            return spec
        _add_examples(spec, model)
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
